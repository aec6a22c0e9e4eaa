"""Latency summaries."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def percentile_ms(seconds: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(seconds), q)) * 1e3


def median(values: Sequence[float]) -> float:
    return float(np.median(np.asarray(values)))
