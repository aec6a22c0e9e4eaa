"""``python -m bench.percall``: peak bytes per character of one onnxruntime call, by script and size.

Each measurement is a fresh process that loads ``model/model.onnx`` as a worker does, warms it up,
then runs one call of one text; the peak resident set above the warmed-up one, over the text's
characters, is what ``function.budgets.WORKER_BYTES_PER_CHAR`` must cover. Writes ``bench/PERCALL.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from bench import machine
from bench.paths import BENCH, MODEL_PATH, ROOT
from bench.tables import markdown_table, publish
from function.budgets import WORKER_BYTES_PER_CHAR

#: One word of each script; a text is the word repeated, space-separated, to the size asked for.
WORDS = {"ASCII": "orbit", "Latin": "café", "CJK": "宇宙ロケット", "emoji": "🚀🛰️"}

_CHILD = """
import json, resource, sys
from function.inference.session import load_session, predict
session = load_session(sys.argv[1])
predict(session, ["warm up the shuttle"])
text = ((sys.argv[2] + " ") * int(sys.argv[3]))[: int(sys.argv[3])]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
predict(session, [text])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"chars": len(text), "bytes": (peak - base) * 1024}))
"""


def measure(word: str, chars: int, model: Path) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(model), word, str(chars)], cwd=ROOT, capture_output=True, check=True
    )
    return dict(json.loads(out.stdout))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[300_000, 1_000_000, 4_000_000])
    parser.add_argument("--model", type=Path, default=MODEL_PATH)
    parser.add_argument("--out", type=Path, default=BENCH / "PERCALL.md")
    args = parser.parse_args(argv)
    rows, worst = [], 0.0
    for script, word in WORDS.items():
        for size in args.sizes:
            got = measure(word, size, args.model)
            per_char = got["bytes"] / got["chars"]
            worst = max(worst, per_char)
            rows.append([script, f"{got['chars']:,}", f"{got['bytes'] / 1e6:.1f}", f"{per_char:.1f}"])
            print(rows[-1], flush=True)
    verdict = "covers" if worst <= WORKER_BYTES_PER_CHAR else "does NOT cover"
    text = "\n".join(
        [
            "# Peak memory of one onnxruntime call, per character",
            "",
            f"{machine.describe()}. `python -m bench.percall`: a fresh process per row loads `model/model.onnx` "
            "as a worker does, warms it up, builds one text (a word of the script repeated) and runs one call "
            "of it; the peak RSS above the peak before the call, per character.",
            "",
            markdown_table(["script", "characters", "peak MB above base", "bytes per character"], rows),
            "",
            f"The largest is {worst:.1f} bytes per character: `function.budgets.WORKER_BYTES_PER_CHAR` = "
            f"{WORKER_BYTES_PER_CHAR} {verdict} it.",
            "",
        ]
    )
    publish(text, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
