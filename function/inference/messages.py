"""What crosses the process boundary: a worker's start-up, its answer for one call, and its decoding.

Small and plain to keep the IPC cheap: labels as strings, probabilities as float32 bytes, token
counts as int32 bytes. The worker builds a ``BatchResult``; the batcher only ever sees the
``Prediction`` objects ``decode`` makes of it.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import NamedTuple

from function.inference.classifier import Explanation, Prediction


@dataclass
class WorkerConfig:
    """What a worker is started with."""

    model: bytes  # the ONNX file's bytes, checked against model.json once, in the server
    log_format: str
    log_level: str

    def take_model(self) -> bytes:
        """The model's bytes, dropped from this copy of the config.

        NOTE: the executor keeps its initializer's arguments for the life of the worker; without
        this, each worker would hold a copy of the model (1.8 MB) it has already loaded.
        """
        model, self.model = self.model, b""
        return model


class BatchResult(NamedTuple):
    """A worker's answer for one onnxruntime call."""

    labels: list[str]
    probabilities: bytes  # float32, row-major (texts x labels)
    tokens: bytes  # int32, one per text
    unknown: bytes  # int32, one per text: tokens the vocabulary does not know
    started: float  # time.monotonic() when inference began (a system-wide clock on Linux)
    seconds: float  # time spent inside onnxruntime
    explanations: dict[int, Explanation]  # by index in the call, for the texts that asked


def decode(result: BatchResult, n_labels: int) -> list[Prediction]:
    """One prediction per text of the call, in the order the texts were sent."""
    probabilities = array("f", result.probabilities)
    tokens, unknown, explained = array("i", result.tokens), array("i", result.unknown), result.explanations
    return [
        Prediction(label, probabilities[i * n_labels : (i + 1) * n_labels], tokens[i], unknown[i], explained.get(i))
        for i, label in enumerate(result.labels)
    ]
