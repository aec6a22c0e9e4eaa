"""``python -m bench.feedback``: how many ``POST /feedback`` a second the service counts.

The service (2 workers, as deployed) gets a key; this process signs fresh prediction ids with the
same key and ``function.feedback``, so that every request is a new id (a repeated one would be a
409, not the path measured), and wrk posts them at 64 connections, in rounds.

    python -m bench.feedback [--rounds 3 --seconds 8 --connections 64]

Writes ``bench/out/FEEDBACK.md`` (scratch); ``bench/README.md`` quotes the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics

from bench import machine, servers
from bench.paths import OUT, ROOT
from bench.steps import say
from bench.tables import markdown_table, publish
from bench.wrk import ensure_wrk, run_wrk
from function.feedback import PredictionIds
from function.model_info import load_model_info

KEY = "a benchmark key, at least thirty-two bytes long"
IDS_PER_SECOND = 20_000  # more than the service answers: no id is sent twice
BODIES = OUT / "feedback-bodies.jsonl"


def write_bodies(count: int) -> None:
    info = load_model_info(ROOT / "model/model.json")
    ids = PredictionIds(KEY, info["version"], info["labels"], 86400.0, 1)
    labels = info["labels"]
    issued = ids.issue([labels[i % len(labels)] for i in range(count)])
    with BODIES.open("w") as out:
        for i, prediction_id in enumerate(issued):
            out.write(json.dumps({"prediction_id": prediction_id, "label": labels[(i * 7) % len(labels)]}) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args(argv)
    ensure_wrk()
    OUT.mkdir(parents=True, exist_ok=True)
    write_bodies(int(IDS_PER_SECOND * args.seconds))
    rows, rates = [], []
    for round_ in range(args.rounds):
        # A fresh server each round: its memory of ids fed back starts empty.
        env = {"WORKERS": "2", "FEEDBACK_KEY": KEY, "ACCESS_LOG": "true"}
        with servers.ServerProcess(env, log_path=OUT / "feedback-server.log") as server:
            result = run_wrk(server.url + "/feedback", BODIES, args.connections, args.seconds)
        say(f"round {round_ + 1}: {result.rps:.0f} req/s, statuses {result.statuses}")
        rates.append(result.rps)
        rows.append(
            [round_ + 1, f"{result.rps:,.0f}", result.latency_ms["p50"], result.latency_ms["p99"], result.statuses]
        )
    report = (
        f"# POST /feedback throughput\n\n`python -m bench.feedback` ({args.rounds} rounds of {args.seconds:g} s, "
        f"{args.connections} connections, each request a fresh id). Machine: {machine.describe()}.\n\n"
        + markdown_table(["round", "req/s", "p50 ms", "p99 ms", "statuses"], rows)
        + f"\n\nMedian: **{statistics.median(rates):,.0f} req/s** (target: at least 5,000).\n"
    )
    publish(report, OUT / "FEEDBACK.md")


if __name__ == "__main__":
    main()
