"""What ``POST /prediction`` and ``POST /predictions`` answer, from the classifier's results: also
the data of the events that answer ``POST /``."""

from __future__ import annotations

from collections.abc import Sequence

from function.api.explanations import explanation_json
from function.feedback import PredictionIds
from function.inference.classifier import Prediction


def one_answer(
    result: Prediction, labels: Sequence[str], ids: PredictionIds | None, *, scores: bool, explain: bool
) -> dict[str, object]:
    """``{"label"}``, with ``prediction_id`` when feedback is on, ``scores`` and ``explanation`` when asked."""
    answer: dict[str, object] = {"label": result.label}
    if ids is not None:
        answer["prediction_id"] = ids.issue_one(result.label)
    if scores:
        answer["scores"] = _scores(labels, result)
    if explain:
        answer["explanation"] = explanation_json(result.label, result.explanation)
    return answer


def many_answer(
    results: Sequence[Prediction], labels: Sequence[str], ids: PredictionIds | None, *, scores: bool, explain: bool
) -> dict[str, object]:
    """``{"labels"}`` in the texts' order, with ``prediction_ids``, ``scores`` and ``explanations`` as above."""
    predicted = [r.label for r in results]
    answer: dict[str, object] = {"labels": predicted}
    if ids is not None:
        answer["prediction_ids"] = ids.issue(predicted)
    if scores:
        answer["scores"] = [_scores(labels, r) for r in results]
    if explain:
        answer["explanations"] = [explanation_json(r.label, r.explanation) for r in results]
    return answer


def _scores(labels: Sequence[str], prediction: Prediction) -> dict[str, float]:
    return {label: float(p) for label, p in zip(labels, prediction.probabilities, strict=True)}
