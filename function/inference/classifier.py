"""What the HTTP layer needs from a model (``function.batching.adaptive.AdaptiveBatcher`` is the real one)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

#: Terms an explanation lists; the contributions of the others are given as one sum.
EXPLAINED_TERMS = 10


class Explanation(NamedTuple):
    """Why a text got its label: the label's decision value is ``intercept + sum(terms) + other``."""

    decision: float  # the label's decision value, the largest of the labels'
    intercept: float
    #: (term, L2-normed tf-idf weight, contribution = weight x the label's coefficient), the
    #: ``EXPLAINED_TERMS`` largest contributions first.
    terms: list[tuple[str, float, float]]
    other: float  # the sum of the contributions of the text's other terms


class Prediction(NamedTuple):
    label: str
    probabilities: Sequence[float]  # in the order of the classifier's labels
    tokens: int = 0  # the text's tokens
    unknown: int = 0  # of those, the ones the model's vocabulary does not know
    explanation: Explanation | None = None  # only when asked for


class Timings:
    """When a traced request's stages began and ended, for its span's phases; 0.0: not reached.

    Made by the HTTP layer only when tracing is on, and filled as the request goes: the body read
    (``read_from``, ``read_to``), its texts queued, taken by a worker and out of inference (``queued``,
    ``started``, ``inferred``; ``time.monotonic()``, the same clock as ``time.perf_counter()`` on Linux),
    and the predictions handed back (``answered``), after which the answer is encoded.
    """

    __slots__ = ("answered", "inferred", "queued", "read_from", "read_to", "started", "texts")

    def __init__(self) -> None:
        self.read_from = self.read_to = self.queued = self.started = self.inferred = self.answered = 0.0
        self.texts = 0


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

    async def predict(
        self, texts: Sequence[str], explain: bool = False, timings: Timings | None = None
    ) -> list[Prediction]:
        """Predictions in the order of ``texts``; ``timings``, when given, get the queue's and inference's times."""
        ...
