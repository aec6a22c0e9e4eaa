"""An explanation as the API shows it (``?explain=true``, and the V2 ``explanation`` output)."""

from __future__ import annotations

from typing import Any

from function.inference.classifier import Explanation


def explanation_json(label: str, explanation: Explanation | None) -> dict[str, Any] | None:
    """``decision = intercept + sum(terms' contributions) + other_terms``, for the predicted ``label``."""
    if explanation is None:
        return None
    return {
        "label": label,
        "decision": explanation.decision,
        "intercept": explanation.intercept,
        "terms": [{"term": t, "weight": w, "contribution": c} for t, w, c in explanation.terms],
        "other_terms": explanation.other,
    }
