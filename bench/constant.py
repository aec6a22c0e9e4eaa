"""A classifier that answers the same prediction at once: the HTTP-only ceiling of the service.

It satisfies ``function.inference.classifier.Classifier``, so ``create_app(settings, classifier=...)``
serves it through the same routes, middleware, validation and JSON encoding as the real model.
"""

from __future__ import annotations

from collections.abc import Sequence

from function.inference.classifier import Prediction


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

    async def predict(self, texts: Sequence[str], explain: bool = False) -> list[Prediction]:
        return [self._answer] * len(texts)
