"""How far the recent label mix has moved from the training split's: Jensen–Shannon divergence.

The window holds the labels of the last ``DRIFT_WINDOW`` texts predicted; each prediction costs
one ring-buffer step, and the divergence is computed when Prometheus scrapes it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

#: Texts in the sliding window of recent predictions.
DRIFT_WINDOW = 1000


class LabelWindow:
    """The labels of the last ``size`` predictions, against a reference mix (the training split's)."""

    def __init__(self, labels: Sequence[str], reference: Mapping[str, int] | None, size: int = DRIFT_WINDOW) -> None:
        self._index = {label: i for i, label in enumerate(labels)}
        total = sum(reference.values()) if reference else 0
        self._reference = [reference.get(label, 0) / total for label in labels] if reference and total else None
        self._ring = [-1] * size
        self._at = 0
        self._counts = [0] * len(labels)

    @property
    def filled(self) -> int:
        """Predictions the window holds (up to its size)."""
        return sum(self._counts)

    def add(self, label: str) -> None:
        i = self._index.get(label)
        if i is None:
            return
        old = self._ring[self._at]
        if old >= 0:
            self._counts[old] -= 1
        self._ring[self._at] = i
        self._counts[i] += 1
        self._at = (self._at + 1) % len(self._ring)

    def divergence(self) -> float:
        """Jensen–Shannon divergence (base 2: 0 same mix, 1 disjoint) of the window from the reference;
        NaN while the window is empty or the model has no reference mix."""
        filled = self.filled
        if self._reference is None or not filled:
            return math.nan
        return jensen_shannon([c / filled for c in self._counts], self._reference)


def jensen_shannon(p: Sequence[float], q: Sequence[float]) -> float:
    """JS divergence of two distributions over the same outcomes, in bits."""
    total = 0.0
    for a, b in zip(p, q, strict=True):
        m = (a + b) / 2
        if a > 0:
            total += a * math.log2(a / m)
        if b > 0:
            total += b * math.log2(b / m)
    return total / 2
