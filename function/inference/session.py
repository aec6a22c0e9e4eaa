"""The model's onnxruntime session, and running it on texts in runs of similar length.

Imported by inference workers (the forkserver preloads it), by ``train.py`` and by tests; never
by the server process, which stays free of onnxruntime and numpy.
"""

from __future__ import annotations

import os
import weakref

# NOTE: before onnxruntime is imported. Its 1DS telemetry would otherwise persist a device id under
# $HOME, write /var/tmp/.ses, warn in colour on stderr and look up an outside host some seconds
# after start: traffic and files a locked-down pod never asked for.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import onnxruntime as ort

from function.inference.classifier import EXPLAINED_TERMS, Explanation
from function.model_info import EXPLAIN_OUTPUTS, HEALTH_OUTPUTS, INPUT, OUTPUTS, VOCABULARY

InferenceSession = ort.InferenceSession

#: The tokenizer pads every text of one call to the call's longest, so a batch is run as
#: runs of similar length: a run grows while its padded size (texts x longest) stays within
#: this factor of its real size. 1.5 was the fastest of 1.25-3 on the test texts in batches of
#: 21-32 (about 10% under one padded call), and it keeps the worker's heap from growing to
#: the largest padded batch ever seen (+3.5 MB instead of +18 MB after 300 batches of 32).
PADDING_BUDGET = 1.5
#: The outputs of every call: label, probabilities, tokens, unknown tokens.
_SERVED = OUTPUTS + HEALTH_OUTPUTS


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


class Outputs(NamedTuple):
    """What one call of the model gives, in the order of the texts."""

    labels: list[str]
    probabilities: np.ndarray  # float32 (texts x labels)
    tokens: np.ndarray  # int32, one per text
    unknown: np.ndarray  # int32, one per text
    explanations: dict[int, Explanation]  # by index, for the texts asked for


def predict(session: ort.InferenceSession, texts: Sequence[str], explain: Sequence[int] = ()) -> Outputs:
    """Labels, probabilities and token counts of ``texts``, and explanations of those at ``explain``.

    The explanations' outputs are values the graph computes anyway, fetched only for a run that
    has a text to explain.
    """
    n = len(texts)
    labels = np.empty(n, dtype=object)
    probabilities: np.ndarray | None = None
    tokens, unknown = np.empty(n, np.int32), np.empty(n, np.int32)
    explanations: dict[int, Explanation] = {}
    wanted = set(explain)
    runs = length_runs([len(t) for t in texts])
    if len(runs) == 1:  # one call: in the order given
        runs = [list(range(n))]
    for run in runs:
        asked = [row for row, i in enumerate(run) if i in wanted]
        names = _SERVED + (EXPLAIN_OUTPUTS if asked else ())
        feed = texts if len(runs) == 1 else [texts[i] for i in run]
        out = session.run(list(names), {INPUT: np.array(feed, dtype=object)})
        if probabilities is None:
            probabilities = np.empty((n, out[1].shape[1]), np.float32)
        labels[run], probabilities[run], tokens[run], unknown[run] = out[0], out[1], out[2], out[3]
        for row in asked:
            explanations[run[row]] = explanation(out[4:], vocabulary(session), row)
    assert probabilities is not None
    return Outputs(labels.tolist(), probabilities, tokens, unknown, explanations)


def explanation(
    outputs: Sequence[np.ndarray], terms: Sequence[str], row: int, top: int = EXPLAINED_TERMS
) -> Explanation:
    """The explanation of text ``row`` of a call, from that call's ``EXPLAIN_OUTPUTS``; ``terms`` by id."""
    term_row, term, x, tfidf, vector, inverse_norm, inverse_mean, decision, bias = outputs
    label = int(np.argmax(decision[row]))
    mine = (term_row == row) & (term < len(terms))  # not the unknown-token and padding ids
    by_norm, by_mean = float(inverse_norm[row]), float(inverse_mean[row])
    weights = x[mine].astype(np.float64) * by_norm
    contributions = tfidf[mine, label].astype(np.float64) * by_norm + vector[mine, label].astype(np.float64) * by_mean
    order = np.argsort(-contributions, kind="stable")[:top]
    ids = term[mine][order]
    listed = [(terms[t], float(weights[i]), float(contributions[i])) for t, i in zip(ids, order, strict=True)]
    other = float(contributions.sum() - contributions[order].sum())
    return Explanation(float(decision[row, label]), float(bias[label]), listed, other)


_vocabularies: weakref.WeakKeyDictionary[ort.InferenceSession, list[str]] = weakref.WeakKeyDictionary()


def vocabulary(session: ort.InferenceSession) -> list[str]:
    """The session's terms by id, read from the model's metadata at the first explanation."""
    terms = _vocabularies.get(session)
    if terms is None:
        terms = session.get_modelmeta().custom_metadata_map[VOCABULARY].split("\n")
        _vocabularies[session] = terms
    return terms
