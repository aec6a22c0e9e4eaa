"""Result types shared by the workers, the batcher and the handlers (no heavy imports)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple


class Prediction(NamedTuple):
    label: str
    probabilities: Sequence[float]  # in the order of the classifier's labels


class BatchResult(NamedTuple):
    """What a worker sends back for one onnxruntime call: small and plain, to keep IPC cheap."""

    labels: list[str]
    probabilities: bytes  # float32, row-major (texts x labels)
    started: float  # time.monotonic() when inference began (a system-wide clock on Linux)
    seconds: float  # time spent inside onnxruntime
