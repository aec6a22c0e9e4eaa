"""Code that runs only in inference worker processes: one onnxruntime session each."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import onnxruntime as ort

from function.prediction import BatchResult

#: The model's interface: one string input, these outputs in this order. train.py builds the
#: graph with these names and writes them to ``model/model.json``.
INPUT = "text"
OUTPUTS = ["label", "probabilities"]
WARM_UP_TEXT = "The shuttle launch was delayed; the goalie made 40 saves; encrypt the key."

_session: ort.InferenceSession | None = None


def load_session(model: str | bytes) -> ort.InferenceSession:
    """A single-threaded session: parallelism comes from processes, not intra-op threads."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # NOTE: no memory arena: the graph's tensors are small and short-lived, and an arena keeps
    # the high-water mark of the largest batch ever seen (about 12 MiB more per worker, measured
    # over the test set in batches of 32) for no measurable speed.
    options.enable_cpu_mem_arena = False
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def init(model_path: str) -> None:
    """Pool initializer: load and warm the session once per process, before any task."""
    global _session
    # NOTE: Ctrl-C reaches the whole process group; the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _session = load_session(model_path)
    predict([WARM_UP_TEXT])


def predict(texts: list[str], session: ort.InferenceSession | None = None) -> BatchResult:
    """Classify ``texts``; ``session`` defaults to this worker's (tests pass their own)."""
    session = session or _session
    if session is None:
        raise RuntimeError("worker not initialised: call init() first")
    feed = {INPUT: np.array(texts, dtype=object)}
    started = time.monotonic()
    labels, probabilities = session.run(OUTPUTS, feed)
    seconds = time.monotonic() - started
    return BatchResult(labels.tolist(), np.ascontiguousarray(probabilities, np.float32).tobytes(), started, seconds)


def pid() -> int:
    """This worker's process id; answering it proves the initializer (load + warm-up) finished."""
    return os.getpid()
