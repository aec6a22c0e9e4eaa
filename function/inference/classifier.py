"""What the HTTP layer needs from a model (``function.inference.batching.AdaptiveBatcher`` is the real one)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol


class Prediction(NamedTuple):
    label: str
    probabilities: Sequence[float]  # in the order of the classifier's labels


class Classifier(Protocol):
    """Anything that turns texts into predictions; the app factory accepts any of them."""

    @property
    def labels(self) -> Sequence[str]: ...

    @property
    def ready(self) -> bool:
        """Able to answer now (readiness)."""
        ...

    @property
    def alive(self) -> bool:
        """Not broken beyond repair (liveness): false asks for a new process."""
        ...

    async def start(self) -> None: ...

    async def stop(self, grace: float) -> None: ...

    async def predict(self, texts: Sequence[str]) -> list[Prediction]: ...
