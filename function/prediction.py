"""The result type shared by classifiers, the batcher and the handlers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple


class Prediction(NamedTuple):
    label: str
    probabilities: Sequence[float]  # in the order of the classifier's labels
