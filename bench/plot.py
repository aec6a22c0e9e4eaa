"""results.png: latency percentiles and throughput against offered concurrency."""

from __future__ import annotations

from pathlib import Path

from bench.results import Results


def plot(r: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conns = sorted(r.service)
    fig, (lat, thr) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    for key, style in (("p50", "o-"), ("p99", "s-"), ("max", "^:")):
        lat.plot(conns, [r.service[c].latency_ms[key] for c in conns], style, label=key)
    lat.set_xscale("log", base=2)
    lat.set_yscale("log")
    lat.set_xticks(conns, [str(c) for c in conns])
    lat.set_xlabel("connections (closed loop)")
    lat.set_ylabel("latency, ms")
    lat.set_title("POST /prediction latency")
    lat.grid(True, which="both", alpha=0.3)
    lat.legend()

    thr.plot(conns, [r.service[c].ok_rps for c in conns], "o-", label="service, WORKERS=2 (2xx/s)")
    lines = [("model-only ceiling", r.model_ceiling.docs_per_second if r.model_ceiling else None, "--")]
    lines.append(("HTTP-only ceiling", r.http_ceiling.ok_rps if r.http_ceiling else None, ":"))
    lines.append(("ideal 1/(1/model+1/http)", r.ideal_rps, "-."))
    for label, value, style in lines:
        if value is not None:
            thr.axhline(value, linestyle=style, color="grey", label=f"{label}: {value:.0f}/s")
    thr.set_xscale("log", base=2)
    thr.set_xticks(conns, [str(c) for c in conns])
    thr.set_ylim(bottom=0)
    thr.set_xlabel("connections (closed loop)")
    thr.set_ylabel("requests/s")
    thr.set_title("Throughput")
    thr.grid(True, alpha=0.3)
    thr.legend(fontsize=8, loc="best")
    fig.suptitle(f"{r.machine.split(';')[0]}; wrk shares the cores", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
