"""``python -m bench.canary``: a canary rehearsed here with the real pieces, as knative/DEPLOY.md runs it.

Two revisions: the current one serves the model of an earlier commit (``--current-rev``), the
candidate serves ``model/``. Both get the same ``FEEDBACK_KEY``. nginx splits the requests, 90%
to the current revision and 10% to the candidate, at random per request as Knative's route does.
Prometheus scrapes each server with the ``namespace``, ``revision`` and ``pod`` labels that the
PodMonitor adds in a cluster.

The traffic is the test split as users send it: each post cleaned of its headers, signature and
quotes, the empty ones left out. Every prediction's true label is fed back through nginx. Then
the dashboard's rollout panels are queried from Prometheus, beside the accuracy computed here.
Last, the promotion: nginx sends everything to the candidate.

    python -m bench.canary [--current-rev 2048dd8] [--texts 2289]

Needs nginx and prometheus (Debian's packages). Writes ``bench/CANARY.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gzip
import json
import math
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

from bench import servers
from bench.paths import OUT, ROOT
from bench.steps import say
from bench.tables import markdown_table, publish
from function.cleaning import clean

KEY = "the canary rehearsal's feedback key, 32 bytes or more"
DASHBOARD = ROOT / "knative/grafana-dashboard.json"
PANELS = (
    "Live accuracy by model version",
    "p99 latency of POST /prediction by revision",
    "Error share by revision (5xx)",
    "Median confidence by revision",
)
NGINX = """daemon off; worker_processes 1; pid {dir}/nginx.pid; error_log {dir}/error.log;
events {{ worker_connections 256; }}
http {{
  access_log off; client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fcgi; uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
  upstream current {{ server 127.0.0.1:{current}; keepalive 16; }}
  upstream candidate {{ server 127.0.0.1:{candidate}; keepalive 16; }}
  split_clients "${{request_id}}" $revision {{ {percent}% candidate; * current; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{ proxy_pass http://$revision; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
}}
"""


def model_of(revision: str, folder: Path) -> None:
    """``model/`` as commit ``revision`` had it, written into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("model.json", "model.onnx"):
        blob = subprocess.run(["git", "show", f"{revision}:model/{name}"], cwd=ROOT, capture_output=True, check=True)
        (folder / name).write_bytes(blob.stdout)


def revision_name(version: str) -> str:
    return "newsgroups-classifier-" + version.replace(".", "-")


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    url = f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    with urllib.request.urlopen(url, timeout=10) as answer:
        return list(json.load(answer)["data"]["result"])


def panel_expr(title: str) -> str:
    [panel] = [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["title"] == title]
    expr = panel["targets"][0]["expr"]
    for variable, value in {"$__rate_interval": "2m", "$namespace": ".*", "$revision": ".*", "$pod": ".*"}.items():
        expr = expr.replace(variable, value)
    return str(expr)


async def traffic(url: str, labelled: list[tuple[str, str]], feed_back: bool) -> list[dict[str, str]]:
    """Each text predicted through the split (16 at a time), and its true label fed back."""
    seen: list[dict[str, str]] = []
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for item in labelled:
        queue.put_nowait(item)

    async def client(http: aiohttp.ClientSession) -> None:
        while not queue.empty():
            text, actual = queue.get_nowait()
            async with http.post(url + "/prediction", json={"text": text}) as answer:
                body = await answer.json()
                served = {"revision": answer.headers["X-Revision"], "version": answer.headers["X-Model-Version"]}
                seen.append(served | {"predicted": body["label"], "actual": actual})
            if feed_back:
                feedback = {"prediction_id": body["prediction_id"], "label": actual}
                async with http.post(url + "/feedback", json=feedback) as answer:
                    assert answer.status == 200, await answer.text()

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(client(http) for _ in range(16)))
    return seen


def start_nginx(folder: Path, port: int, ports: dict[str, int], percent: int) -> subprocess.Popen[bytes]:
    conf = folder / "nginx.conf"
    conf.write_text(NGINX.format(dir=folder, port=port, percent=percent, **ports))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    return subprocess.Popen([nginx, "-c", str(conf), "-p", str(folder), "-e", str(folder / "error.log")])


def start_prometheus(work: Path, ports: dict[str, int], names: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """Prometheus scraping each server every second, labelled as the PodMonitor labels a pod."""
    port = servers.free_port()
    targets = [
        {
            "targets": [f"127.0.0.1:{ports[role]}"],
            "labels": {"namespace": "default", "revision": name, "pod": f"{name}-0"},
        }
        for role, name in names.items()
    ]
    config = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "textclf", "static_configs": targets}],
    }
    (work / "prometheus.yml").write_text(json.dumps(config))
    command = [
        "prometheus",
        f"--config.file={work / 'prometheus.yml'}",
        f"--storage.tsdb.path={work / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), f"http://127.0.0.1:{port}"


def wait_for_scrapes(prometheus: str, targets: int, scrapes: int, within: float = 60.0) -> None:
    """Until Prometheus has scraped each target ``scrapes`` times (its first scrape comes at a random
    moment of the interval, and a rate needs two samples)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            counts = [float(r["value"][1]) for r in query(prometheus, "count_over_time(textclf_model_info[5m])")]
            if len(counts) == targets and min(counts) >= scrapes:
                return
        except OSError:
            pass  # not answering yet
        time.sleep(0.5)
    raise RuntimeError(f"Prometheus did not scrape {targets} targets {scrapes} times in {within:g} s")


def cleaned_test_posts(count: int) -> list[tuple[str, str]]:
    """The test split as users send it: (cleaned text, label), the posts left empty by cleaning left out."""
    with gzip.open(ROOT / "data/test.jsonl.gz", "rt") as lines:
        posts = [json.loads(line) for line in lines]
    return [(text, p["label"]) for p in posts if (text := clean(p["text"])).strip()][:count]


def comparison(seen: list[dict[str, str]], names: dict[str, str], prometheus: str) -> list[list[str]]:
    """Per revision: its requests and accuracy computed here, then each rollout panel from Prometheus."""
    panels = {}
    for title in PANELS:
        result = query(prometheus, panel_expr(title))
        panels[title] = {next(iter(r["metric"].values()), ""): float(r["value"][1]) for r in result}
    rows = []
    for role, name in names.items():
        mine = [s for s in seen if s["revision"] == name]
        version = mine[0]["version"]
        right = sum(s["predicted"] == s["actual"] for s in mine)
        row = [role, name, version, str(len(mine)), f"{right / len(mine):.4f}"]
        row.append(f"{panels[PANELS[0]].get(version, math.nan):.4f}")
        row += [f"{panels[title].get(name, math.nan):.4f}" for title in PANELS[1:]]
        rows.append(row)
    return rows


def decide(rows: list[list[str]]) -> tuple[float, float, str]:
    """knative/DEPLOY.md's rule on the accuracies computed here: (difference, half-width, decision)."""
    (n_u, acc_u), (n_c, acc_c) = ((int(r[3]), float(r[4])) for r in rows)
    d = acc_c - acc_u
    half = 1.96 * math.sqrt(acc_c * (1 - acc_c) / n_c + acc_u * (1 - acc_u) / n_u)
    return d, half, "roll back" if d + half < 0 else "promote" if d - half >= -0.02 else "keep the canary"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--current-rev", default="2048dd8", help="the commit whose model the current revision serves")
    parser.add_argument("--texts", type=int, default=2289)
    parser.add_argument("--percent", type=int, default=10, help="the candidate's share of the traffic")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/CANARY.md")
    args = parser.parse_args(argv)
    work = OUT / "canary"
    shutil.rmtree(work, ignore_errors=True)
    folders = {"current": work / "current-model", "candidate": ROOT / "model"}
    model_of(args.current_rev, folders["current"])
    names = {role: revision_name(json.loads((f / "model.json").read_text())["version"]) for role, f in folders.items()}
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    procs: list[subprocess.Popen[bytes]] = []
    running: list[servers.ServerProcess] = []
    try:
        ports = {}
        for role, folder in folders.items():
            env = {"WORKERS": "1", "FEEDBACK_KEY": KEY, "K_REVISION": names[role], "MODEL_DIR": str(folder)}
            running.append(servers.ServerProcess(env | {"ACCESS_LOG": "false"}, log_path=work / f"{role}.log"))
            running[-1].wait_ready()
            ports[role] = running[-1].port
        prometheus_proc, prometheus = start_prometheus(work, ports, names)
        procs.append(prometheus_proc)
        nginx_port = servers.free_port()
        procs.append(start_nginx(work, nginx_port, ports, args.percent))
        url = f"http://127.0.0.1:{nginx_port}"
        labelled = cleaned_test_posts(args.texts)
        for port in ports.values():  # every series the panels read exists before the traffic starts
            asyncio.run(traffic(f"http://127.0.0.1:{port}", labelled[:1], feed_back=False))
        wait_for_scrapes(prometheus, len(ports), 2)
        say(f"{names}: {len(labelled)} cleaned test posts through a {args.percent}% split, each fed back")
        seen = asyncio.run(traffic(url, labelled, feed_back=True))
        time.sleep(3)  # two scrapes more, whatever their phase
        rows = comparison(seen, names, prometheus)
        d, half, decision = decide(rows)
        (work / "nginx.conf").write_text(NGINX.format(dir=work, port=nginx_port, percent=100, **ports))
        subprocess.run([nginx, "-c", str(work / "nginx.conf"), "-p", str(work), "-s", "reload"], check=True)
        time.sleep(1)
        promoted = collections.Counter(s["revision"] for s in asyncio.run(traffic(url, labelled[:300], False)))
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        for server in running:
            server.stop()
    header = ["", "revision", "model", "requests", "accuracy (computed here)", *(f"{t} (Prometheus)" for t in PANELS)]
    publish(
        f"# A canary rehearsed\n\n`python -m bench.canary --current-rev {args.current_rev} --texts {args.texts}`: "
        f"{len(seen)} cleaned test posts through nginx, {args.percent}% to the candidate, every true label fed "
        f"back.\n\n{markdown_table(header, rows)}\n\nDifference {d:+.4f}, 95% interval {d - half:+.4f} to "
        f"{d + half:+.4f}: **{decision}** (knative/DEPLOY.md's rule, without its minimum of 1,500 labels).\n\n"
        f"The promotion step, run whatever the rule said (nginx: 100% to the candidate): 300 requests went to "
        f"{dict(promoted)}.\n",
        args.out,
    )


if __name__ == "__main__":
    main()
