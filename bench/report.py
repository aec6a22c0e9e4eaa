"""RESULTS.md: one run's tables, targets and notes, in Markdown (also what the terminal shows)."""

from __future__ import annotations

from bench.procs import ProcessMemory, mb, role, total_pss_mb, total_rss_mb
from bench.results import BATCH_SIZE, QUIET_SECONDS, TARGET_CONNECTIONS, Results
from bench.stats import median, percentile_ms
from bench.steps import NOISY_SHARE, V2_INFER
from bench.tables import markdown_table
from bench.targets import Target
from bench.wrk import TIMEOUT_SECONDS, WrkResult
from function.settings import Settings

SOAK_HEADING = "## Soak"
#: Scaling efficiency from which the cores count as scaling.
SCALES = 0.85


def _ms(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _sockets(w: WrkResult) -> str:
    e = w.errors
    if not w.socket_errors:
        return "0"
    return f"{w.socket_errors} (connect {e['connect']}, read {e['read']}, write {e['write']}, timeout {e['timeout']})"


def load_row(label: str, w: WrkResult) -> list[str]:
    lat = w.latency_ms
    return [
        label,
        f"{w.ok_rps:.0f}",
        _ms(lat["p50"]),
        _ms(lat["p90"]),
        _ms(lat["p99"]),
        _ms(lat["max"]),
        str(w.non_2xx),
        str(w.overloaded),
        _sockets(w),
    ]


LOAD_HEADER = ["load", "2xx/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "non-2xx", "of which 503", "socket errors"]


def targets_table(targets: list[Target]) -> str:
    return markdown_table(
        ["target", "goal", "measured", "verdict"], [[t.name, t.goal, t.measured, t.verdict] for t in targets]
    )


def ceilings(r: Results) -> list[str]:
    rows: list[list[str]] = []
    if r.model_ceiling is not None:
        rows.append(
            [
                f"model-only: {r.model_ceiling.processes} processes at once, no HTTP",
                f"{r.model_ceiling.docs_per_second:.0f} docs/s",
                "`function.parallel.worker.predict` on one test text a call, one onnxruntime thread per process",
            ]
        )
    if r.floor is not None:
        f = r.floor
        rows.append(
            [
                f"floor: the least aiohttp server, {f.connections} conns",
                f"{f.ok_rps:.0f} req/s",
                "`python -m bench.floor_server`: aiohttp + uvloop, orjson decode, `text` checked, a constant "
                f"label; p50 {_ms(f.latency_ms['p50'])} ms, p99 {_ms(f.latency_ms['p99'])} ms",
            ]
        )
    if r.http_ceiling is not None:
        h = r.http_ceiling
        rows.append(
            [
                f"HTTP-only: constant classifier, {h.connections} conns",
                f"{h.ok_rps:.0f} req/s",
                f"`python -m bench.constant` (the service's whole HTTP stack); p50 {_ms(h.latency_ms['p50'])} "
                f"ms, p99 {_ms(h.latency_ms['p99'])} ms",
            ]
        )
    ideal, http_ideal = r.floor_ideal_rps, r.ideal_rps
    if ideal is not None:
        rows.append(
            [
                "**ideal = 1 / (1/floor + 1/model)** (the target's)",
                f"{ideal:.0f} req/s",
                "the least HTTP cost and the model's, paid in turn on the same cores",
            ]
        )
    if http_ideal is not None:
        rows.append(
            [
                "ideal of the service's own HTTP stack = 1 / (1/HTTP-only + 1/model)",
                f"{http_ideal:.0f} req/s",
                "what batching and the hand-off to workers may cost at most",
            ]
        )
    at64 = r.service.get(TARGET_CONNECTIONS)
    if at64 is not None:
        shares = [
            f"{at64.ok_rps / x:.2f} x {name}" for x, name in ((ideal, "ideal"), (http_ideal, "HTTP-only ideal")) if x
        ]
        rows.append(
            [
                f"service, WORKERS=2, {TARGET_CONNECTIONS} conns",
                f"{at64.ok_rps:.0f} req/s",
                "measured = " + ", ".join(shares),
            ]
        )
    return [
        "## Ceilings and the ideal",
        "",
        markdown_table(["what", "throughput", "how"], rows),
        "",
        *rounds_section(r),
    ]


def rounds_section(r: Results) -> list[str]:
    rounds = r.ratio_rounds()
    if len(rounds) < 2:
        return []
    rows = [
        [
            str(i),
            f"{x.model_docs_per_second:.0f}",
            f"{x.floor_rps:.0f}",
            f"{x.http_rps:.0f}",
            f"{x.ideal_rps:.0f}",
            f"{x.service.ok_rps:.0f}",
            f"**{x.ratio:.2f}**",
            f"{x.http_ratio:.2f}",
            _ms(x.service.latency_ms["p50"]),
            _ms(x.service.latency_ms["p99"]),
        ]
        for i, x in enumerate(rounds, start=1)
    ]
    header = ["round", "model docs/s", "floor req/s", "HTTP-only req/s", "ideal req/s", "service req/s", "x ideal",
              "x HTTP-only ideal", "p50 ms", "p99 ms"]  # fmt: skip
    return [
        f"The model-only, floor, HTTP-only and {TARGET_CONNECTIONS}-connection figures, measured again back to back "
        f"after the main steps (round 1 is the main steps' own). The machine's speed drifts over minutes, "
        "so the throughput and p99 targets are judged on the median of the rounds; the target's ratio is "
        '"x ideal" (of the floor and the model), "x HTTP-only ideal" leaves the cost of the service\'s own '
        "HTTP stack (middleware, metrics, access log, validation) out:",
        "",
        markdown_table(header, rows),
        "",
    ]


def load_tables(r: Results) -> list[str]:
    lines = [
        "## Service under load (`python -m function`, WORKERS=2)",
        "",
        f"POST /prediction with the test texts in turn, {r.seconds_per_step:.0f} s per step after a warm-up.",
        "",
    ]
    rows = [load_row(f"{c} conns", w) for c, w in sorted(r.service.items())]
    if r.v2 is not None:
        rows.append(load_row(f"POST {V2_INFER} (Open Inference Protocol), {TARGET_CONNECTIONS} conns", r.v2))
    for connections, batch in r.batch.items():
        rows.append(load_row(f"POST /predictions, {connections} conns x {BATCH_SIZE} texts", batch))
    lines += [markdown_table(LOAD_HEADER, rows), ""]
    if r.batch:
        pending = int(r.settings.get("MAX_PENDING", "0") or 0)
        texts = "; ".join(
            f"{c} conns: **{b.ok_rps * BATCH_SIZE:.0f} texts/s** ({b.ok_rps:.0f} requests/s of {BATCH_SIZE}"
            + (f", {b.overloaded} refused with 503" if b.overloaded else "")
            + ")"
            for c, b in r.batch.items()
        )
        lines += [
            f"Batch endpoint, in 2xx answers: {texts}. "
            + "; ".join(
                f"{c} x {BATCH_SIZE} = {c * BATCH_SIZE} texts in flight "
                + ("exceed" if c * BATCH_SIZE > pending else "fit within")
                + f" MAX_PENDING={pending}"
                for c in r.batch
            )
            + ": a request that would take the queue past the bound is refused whole, at once.",
            "",
        ]
    if r.service:
        lines += ["![latency and throughput against connections](results.png)", ""]
    return lines


def overload_section(r: Results) -> list[str]:
    if r.overload is None:
        return []
    o = r.overload
    rows = []
    for status, seconds in sorted(o.probe_seconds.items()):
        rows.append(
            [
                str(status) if status else "no answer",
                str(len(seconds)),
                _ms(percentile_ms(seconds, 50)),
                _ms(percentile_ms(seconds, 99)),
                _ms(max(seconds) * 1e3),
            ]
        )
    return [
        "## Load shedding beyond the queue bound",
        "",
        f"The service restarted with MAX_PENDING={o.max_pending} and driven at {o.load.connections} connections, "
        "so that the queue bound is really exceeded. wrk's view:",
        "",
        markdown_table(LOAD_HEADER, [load_row(f"{o.load.connections} conns, MAX_PENDING={o.max_pending}", o.load)]),
        "",
        "A side probe (one keep-alive connection, one request every 50 ms during the step) timed each answer "
        "by status:",
        "",
        markdown_table(["status", "answers", "p50 ms", "p99 ms", "max ms"], rows) if rows else "(no probe answers)",
        "",
    ]


def cold_start_section(r: Results) -> list[str]:
    if not r.cold_starts:
        return []
    samples = ", ".join(f"{s:.2f}" for s in r.cold_starts)
    return [
        "## Cold start",
        "",
        f"From creating the `python -m function` process (WORKERS=2) to its first 200 answer to POST /prediction, "
        f"polled every 5 ms: **median {median(r.cold_starts):.2f} s** of {len(r.cold_starts)} fresh starts "
        f"({samples} s).",
        "",
    ]


def memory_section(r: Results) -> list[str]:
    if not r.memory:
        return []
    root = r.memory[0].pid
    at_end = {p.pid: p for p in r.memory_at_end}

    def pss(kib: int | None) -> str:
        return f"{mb(kib):.1f}" if kib is not None else "n/a"

    def ended(p: ProcessMemory) -> list[str]:
        then = at_end.get(p.pid)
        return [f"{mb(then.rss_kib):.1f}", pss(then.pss_kib)] if then is not None else ["n/a", "n/a"]

    rows = [[role(p, root), str(p.pid), *ended(p), f"{mb(p.rss_kib):.1f}", pss(p.pss_kib)] for p in r.memory]
    pss_end, pss_quiet = total_pss_mb(r.memory_at_end) if r.memory_at_end else None, total_pss_mb(r.memory)
    rows.append(
        [
            "**total**",
            "",
            f"**{total_rss_mb(r.memory_at_end):.1f}**" if r.memory_at_end else "n/a",
            f"**{pss_end:.1f}**" if pss_end is not None else "n/a",
            f"**{total_rss_mb(r.memory):.1f}**",
            f"**{pss_quiet:.1f}**" if pss_quiet is not None else "n/a",
        ]
    )
    quiet = f"{QUIET_SECONDS:.0f} s later"
    header = ["process", "pid", "RSS MB as the load ended", "PSS MB as the load ended", f"RSS MB {quiet}",
              f"PSS MB {quiet}"]  # fmt: skip
    return [
        "## Memory after the load (WORKERS=2)",
        "",
        "The server and every descendant (the forkserver, the workers it forked, multiprocessing's resource "
        "tracker), from /proc: once as the last load step ended, and again after "
        f"{QUIET_SECONDS:.0f} s without requests, by when each process has handed the heap the burst grew back "
        "to the OS (`function/heap.py`, due 1 to 1.5 s into a quiet spell). Size a container from the first "
        "column, which holds what the load grew. RSS counts shared pages in every process that maps them "
        "(the forkserver's preloaded onnxruntime, copy-on-write in the workers); PSS divides them among the "
        "sharers, so the PSS total is what the tree really occupies (the memory target's figure). "
        "MB = 10^6 bytes.",
        "",
        markdown_table(header, rows),
        "",
    ]


def cpu_section(r: Results) -> list[str]:
    if not r.costs:
        return []
    rows = []
    for step in r.costs:
        c, n, b = step.cpu, max(1, step.requests), step.batching
        rows.append(
            [
                step.label,
                f"{c.server / n * 1e6:.0f}",
                f"{c.workers / n * 1e6:.0f}",
                f"{c.load_generator / n * 1e6:.0f}",
                f"{c.server / c.wall:.0%}",
                f"{c.workers / c.wall:.0%}",
                f"{c.load_generator / c.wall:.0%}",
                f"{c.others / c.wall:.0%}",
                f"{b.mean_size:.1f}" if b else "",
                f"{b.inference_ms:.2f}" if b else "",
                f"{b.queue_wait_ms:.2f}" if b else "",
            ]
        )
    header = ["step", "event loop µs/req", "workers µs/req", "wrk µs/req", "event loop", "workers", "wrk",
              "others", "mean batch", "onnxruntime ms/batch", "queue wait ms"]  # fmt: skip
    return [
        "## Where the time goes",
        "",
        "CPU time (user + system, from /proc and wrk's rusage) during each load step, per request answered "
        'and as a share of one core (the machine has 2 cores: 200% is everything). "event loop" is the '
        'whole server process: the event loop and the threads of its process-pool executors. "others" is '
        "every other process on the machine, this benchmark's own included: interference when it is "
        "large. The last three columns come from the service's Prometheus histograms (deltas over the "
        "step): texts per onnxruntime call, time inside onnxruntime per call, and each text's wait from "
        "arrival until its batch starts.",
        "",
        markdown_table(header, rows),
        "",
    ]


def scaling_section(r: Results) -> list[str]:
    if not r.scaling:
        return []
    base = r.scaling.get(1)
    model_base = base.model if base is not None else None
    rows = []
    for workers, point in sorted(r.scaling.items()):
        w, cpu, model = point.service, point.cost.cpu, point.model
        rows.append(
            [
                str(workers),
                str(Settings(workers=workers).short_text_worker_count),
                f"{w.ok_rps:.0f}",
                f"{w.ok_rps / (workers * base.service.ok_rps):.2f}" if base else "n/a",
                _ms(w.latency_ms["p50"]),
                _ms(w.latency_ms["p99"]),
                f"{model.docs_per_second:.0f}" if model else "n/a",
                f"{model.docs_per_second / (workers * model_base.docs_per_second):.2f}"
                if model and model_base
                else "n/a",
                f"{cpu.server / cpu.wall:.0%}",
                f"{cpu.workers / cpu.wall:.0%}",
                f"{cpu.load_generator / cpu.wall:.0%}",
                f"{cpu.others / cpu.wall:.0%}",
                f"{cpu.machine / cpu.wall / max(1, r.cpus):.0%}",
            ]
        )
    header = ["WORKERS", "short texts on", "2xx/s", "efficiency", "p50 ms", "p99 ms", "model-only docs/s",
              "model efficiency", "event loop", "workers", "wrk", "others", "CPUs busy"]  # fmt: skip
    return [
        f"## Worker scaling ({TARGET_CONNECTIONS} conns, {r.cpus} CPUs available)",
        "",
        f"A fresh `python -m function` for each worker count from 1 to the CPUs available to the benchmark "
        f"(affinity mask and cgroup quota, `function.cgroup.available_cpus`), each after the model alone in "
        f"as many processes ({min(r.seconds_per_step, 6):.0f} s). Efficiency = throughput(n) / (n x "
        "throughput(1)); model efficiency likewise for the model-only docs/s. Short texts on: the workers that "
        "may classify short texts at once (`SHORT_TEXT_WORKERS`, by default CPUs − 1, at least 1; without a "
        "memory limit every test text is short). CPU columns: share of one core "
        "during the service's step (the server process, all workers, wrk, every other process); CPUs busy: "
        "the whole machine's share of all its CPUs.",
        "",
        markdown_table(header, rows),
        "",
        *limits_paragraph(r),
    ]


def limits_paragraph(r: Results) -> list[str]:
    """What limits throughput on this machine, read from the scaling step's own figures."""
    if not r.scaling:
        return []
    top = r.scaling[max(r.scaling)]
    n, w, cpu, b = top.workers, top.service, top.cost.cpu, top.cost.batching
    requests = max(1, w.requests)
    per_request = {
        "event loop": cpu.server / requests * 1e6,
        "workers": cpu.workers / requests * 1e6,
        "wrk": cpu.load_generator / requests * 1e6,
    }
    spent = sum(per_request.values())
    loop_share, busy = cpu.server / cpu.wall, cpu.machine / cpu.wall / max(1, r.cpus)
    sentences = []
    base = r.scaling.get(1)
    if base is not None and n > 1:
        efficiency = w.ok_rps / (n * base.service.ok_rps)
        sentence = (
            f"From 1 to {n} workers throughput went from {base.service.ok_rps:.0f} to {w.ok_rps:.0f} req/s, "
            f"{efficiency:.2f} of linear"
        )
        if top.model is not None and base.model is not None:
            model_efficiency = top.model.docs_per_second / (n * base.model.docs_per_second)
            sentence += (
                f"; the model alone in as many processes went from {base.model.docs_per_second:.0f} to "
                f"{top.model.docs_per_second:.0f} docs/s, {model_efficiency:.2f} of linear"
                + (
                    ": the cores themselves scale."
                    if model_efficiency >= SCALES
                    else ": the cores themselves do not give n times one core's work."
                )
            )
        sentences.append(sentence if sentence.endswith(".") else sentence + ".")
    sentences.append(
        f"With {n} worker(s) the machine was {busy:.0%} busy: the server process (event loop, executor and "
        f"log threads) took {loop_share:.0%} of a core, the workers {cpu.workers / cpu.wall:.0%}, wrk "
        f"{cpu.load_generator / cpu.wall:.0%}, other processes {cpu.others / cpu.wall:.0%}; a request cost "
        + " + ".join(f"{v:.0f} µs ({k})" for k, v in per_request.items())
        + f" = {spent:.0f} µs of CPU, so {r.cpus} CPUs could answer at most {r.cpus / spent * 1e6:.0f} req/s."
    )
    if cpu.others / cpu.wall > NOISY_SHARE:
        sentences.append(
            f"Other processes took {cpu.others / cpu.wall:.0%} of a core during the step: these figures are "
            "disturbed, rerun on a quiet machine."
        )
    if loop_share >= 0.9:
        sentences.append(
            "The event loop is the limit: its one core is full, and more workers cannot raise throughput "
            f"beyond 1 / {per_request['event loop']:.0f} µs = {1e6 / per_request['event loop']:.0f} req/s."
        )
    elif busy >= 0.9:
        sentences.append(
            "The CPUs are the limit: wrk, the event loop and the workers share them, so a worker more only "
            "takes CPU from the event loop and wrk; the cost per request above is what must fall."
        )
    else:
        wait = (
            f" (each text waited {b.queue_wait_ms:.1f} ms for its batch; onnxruntime took {b.inference_ms:.1f} ms "
            f"per batch of {b.mean_size:.1f})"
            if b is not None
            else ""
        )
        sentences.append(
            f"Neither the CPUs ({1 - busy:.0%} idle) nor the event loop are full: the limit is the latency of the "
            f"chain each of the {w.connections} closed-loop connections goes round, event loop, queue, worker, "
            f"event loop{wait}, during which parts of the machine wait on one another."
        )
    return ["**What limits it on this machine.** " + " ".join(sentences), ""]


def render(r: Results, targets: list[Target]) -> str:
    settings = ", ".join(f"{k}={v}" for k, v in r.settings.items())
    lines = [
        "# Service benchmark",
        "",
        f"Generated by `python -m bench.run` ({r.mode} mode) at {r.started}; every figure below comes from "
        "this one run. Regenerate with `make bench` (6 to 8 minutes; `make bench-smoke` checks that every "
        "step runs, in seconds, without judging speed).",
        "",
        f"- **Machine**: {r.machine}. Load average before the run: {r.load_average}.",
        f"- **Service settings**: {settings} (defaults unless set in the environment of `bench.run`).",
        f"- **Load generator**: wrk, closed loop (each connection sends its next request when the previous "
        f"answer arrives), {r.wrk_threads} thread(s), {r.seconds_per_step:.0f} s per step, {TIMEOUT_SECONDS} s "
        "timeout (counted as a socket error), Lua script `bench/post_texts.lua` replaying the test texts. "
        "**wrk runs on the same machine and shares its cores** with the server's event loop and the "
        "inference workers, so it takes CPU time the service would otherwise have; on dedicated cores "
        "the service would do better than these figures.",
        "- **Interference**: a load step during which other processes took more than 25% of a core is "
        f"repeated (at most twice per step, never in smoke mode; {r.repeated_steps} repeat(s) in this run) "
        'and the least disturbed attempt is kept; the "others" column of the last table shows what remained.',
        "",
    ]
    if r.failures:
        lines += ["**Steps that failed:**", "", *[f"- {f}" for f in r.failures], ""]
    lines += ["## Targets", "", targets_table(targets), ""]
    lines += ceilings(r)
    lines += load_tables(r)
    lines += overload_section(r)
    lines += cold_start_section(r)
    lines += memory_section(r)
    lines += scaling_section(r)
    lines += cpu_section(r)
    return "\n".join(lines)
