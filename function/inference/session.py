"""The model's onnxruntime session, and running it on texts in runs of similar length.

Imported by inference workers (the forkserver preloads it), by ``train.py`` and by tests; never
by the server process, which stays free of onnxruntime and numpy.
"""

from __future__ import annotations

import os

# NOTE: before onnxruntime is imported. Its 1DS telemetry would otherwise persist a device id under
# $HOME, write /var/tmp/.ses, warn in colour on stderr and look up an outside host some seconds
# after start: traffic and files a locked-down pod never asked for.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

from collections.abc import Sequence

import numpy as np
import onnxruntime as ort

from function.model_info import INPUT, OUTPUTS

InferenceSession = ort.InferenceSession

#: The tokenizer pads every text of one call to the call's longest, so a batch is run as
#: runs of similar length: a run grows while its padded size (texts x longest) stays within
#: this factor of its real size. 1.5 was the fastest of 1.25-3 on the test texts in batches of
#: 21-32 (about 10% under one padded call), and it keeps the worker's heap from growing to
#: the largest padded batch ever seen (+3.5 MB instead of +18 MB after 300 batches of 32).
PADDING_BUDGET = 1.5


def load_session(model: str | bytes) -> ort.InferenceSession:
    """A single-threaded session: parallelism comes from processes, not intra-op threads."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: warnings would be non-JSON lines on stderr
    # NOTE: no memory arena: the graph's tensors are small and short-lived, and an arena keeps
    # the high-water mark of the largest batch ever seen (about 12 MiB more per worker, measured
    # over the test set in batches of 32) for no measurable speed.
    options.enable_cpu_mem_arena = False
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


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


def predict(session: ort.InferenceSession, texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Labels and float32 probabilities (texts x labels) of ``texts``, in the order given."""
    runs = length_runs([len(t) for t in texts])
    if len(runs) <= 1:
        labels, probabilities = session.run(list(OUTPUTS), {INPUT: np.array(texts, dtype=object)})
    else:
        labels = np.empty(len(texts), dtype=object)
        probabilities = None
        for run in runs:
            feed = {INPUT: np.array([texts[i] for i in run], dtype=object)}
            run_labels, run_probabilities = session.run(list(OUTPUTS), feed)
            if probabilities is None:
                probabilities = np.empty((len(texts), run_probabilities.shape[1]), np.float32)
            labels[run] = run_labels
            probabilities[run] = run_probabilities
    return labels.tolist(), np.ascontiguousarray(probabilities, np.float32)
