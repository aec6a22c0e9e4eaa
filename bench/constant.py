"""A classifier that answers the same prediction at once: the HTTP-only ceiling of the service.

It satisfies ``function.inference.classifier.Classifier``. ``python -m bench.constant`` is
``python -m function`` serving it instead of the model (``function.__main__.main(classifier=...)``):
the same settings, socket, logging, routes, middleware, validation and JSON encoding.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from function.__main__ import main
from function.command_line import parse_command_line
from function.inference.classifier import Prediction, Timings
from function.model_info import load_model_info


class ConstantClassifier:
    """Always the first label, with uniform probabilities; no model, no worker processes."""

    def __init__(self, labels: Sequence[str]) -> None:
        self._labels = tuple(labels)
        self._answer = Prediction(self._labels[0], [1.0 / len(self._labels)] * len(self._labels))
        self._running = False

    @property
    def labels(self) -> Sequence[str]:
        return self._labels

    @property
    def ready(self) -> bool:
        return self._running

    @property
    def alive(self) -> bool:
        return True

    async def start(self) -> None:
        self._running = True

    async def stop(self, grace: float) -> None:
        self._running = False

    async def predict(
        self, texts: Sequence[str], explain: bool = False, timings: Timings | None = None
    ) -> list[Prediction]:
        return [self._answer] * len(texts)


if __name__ == "__main__":
    labels = load_model_info(parse_command_line(None, os.environ).metadata_path)["labels"]
    sys.exit(main(classifier=ConstantClassifier(labels)))
