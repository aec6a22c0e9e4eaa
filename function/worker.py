"""Code that runs only in inference worker processes: one onnxruntime session each."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence

import numpy as np
import onnxruntime as ort

from function.heap import IdleTrim
from function.prediction import BatchResult

#: The model's interface: one string input, these outputs in this order. train.py builds the
#: graph with these names and writes them to ``model/model.json``.
INPUT = "text"
OUTPUTS = ["label", "probabilities"]
WARM_UP_TEXT = "The shuttle launch was delayed; the goalie made 40 saves; encrypt the key."

#: The tokenizer pads every text of one call to the call's longest, so a batch is run as
#: runs of similar length: a run grows while its padded size (texts x longest) stays within
#: this factor of its real size. 1.5 was the fastest of 1.25-3 on the test texts in batches of
#: 21-32 (about 10% under one padded call), and it keeps the worker's heap from growing to
#: the largest padded batch ever seen (+3.5 MB instead of +18 MB after 300 batches of 32).
PADDING_BUDGET = 1.5

_session: ort.InferenceSession | None = None
_batches = 0  # calls to predict() so far: the heap trimmer's sign of activity
_idle_trim = IdleTrim()


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


def length_runs(lengths: Sequence[int], budget: float = PADDING_BUDGET) -> list[list[int]]:
    """Indices of ``lengths``, shortest first, cut into runs whose padded size stays within ``budget``.

    A run's padded size is its count times its longest length; a run of one is always allowed.
    """
    runs: list[list[int]] = []
    run: list[int] = []
    total = 0
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        length = lengths[i]
        if run and (len(run) + 1) * length > budget * (total + length):
            runs.append(run)
            run, total = [], 0
        run.append(i)
        total += length
    if run:
        runs.append(run)
    return runs


def predict(texts: list[str], session: ort.InferenceSession | None = None) -> BatchResult:
    """Classify ``texts``, in runs of similar length; ``session`` defaults to this worker's (tests pass their own)."""
    global _batches
    session = session or _session
    if session is None:
        raise RuntimeError("worker not initialised: call init() first")
    _batches += 1
    started = time.monotonic()
    runs = length_runs([len(t) for t in texts])
    if len(runs) <= 1:
        labels, probabilities = session.run(OUTPUTS, {INPUT: np.array(texts, dtype=object)})
    else:
        labels = np.empty(len(texts), dtype=object)
        probabilities = None
        for run in runs:
            feed = {INPUT: np.array([texts[i] for i in run], dtype=object)}
            run_labels, run_probabilities = session.run(OUTPUTS, feed)
            if probabilities is None:
                probabilities = np.empty((len(texts), run_probabilities.shape[1]), np.float32)
            labels[run] = run_labels
            probabilities[run] = run_probabilities
    seconds = time.monotonic() - started
    return BatchResult(labels.tolist(), np.ascontiguousarray(probabilities, np.float32).tobytes(), started, seconds)


def pid() -> int:
    """This worker's process id; answering it proves the initializer (load + warm-up) finished."""
    return os.getpid()


def check() -> int:
    """The pool's liveness probe, sent while the worker is idle: trims the heap after a quiet spell."""
    _idle_trim.observe(_batches)
    return os.getpid()
