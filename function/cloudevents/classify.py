"""What an event of type ``CLASSIFY`` asks, besides its text(s): one text or several, with each
label's probability or not, with explanations or not.

The data is the body ``POST /prediction`` (``{"text": ...}``) or ``POST /predictions``
(``{"texts": [...]}``) takes; ``"scores"`` and ``"explain"`` are booleans in it, where those routes
take them in the query: an event is answered alike whichever Trigger delivers it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from function.errors import InvalidInput

SCORES = "scores"
EXPLAIN = "explain"


@dataclass(frozen=True, slots=True)
class ClassifyOptions:
    #: ``{"texts": [...]}`` without ``"text"``: answered as ``POST /predictions``; else as ``POST /prediction``.
    many: bool
    scores: bool
    explain: bool


def classify_options(data: Any) -> ClassifyOptions:
    """The options of a ``CLASSIFY`` event's data; ``InvalidInput`` unless it is an object with
    boolean ``scores`` and ``explain`` (each false when absent). The texts are checked as the routes check them."""
    if not isinstance(data, dict):
        raise InvalidInput(
            'the event\'s data must be a JSON object, {"text": "..."} or {"texts": ["...", ...]}', reason="not_object"
        )
    return ClassifyOptions("texts" in data and "text" not in data, _flag(data, SCORES), _flag(data, EXPLAIN))


def _flag(data: dict[str, Any], name: str) -> bool:
    value = data.get(name, False)
    if not isinstance(value, bool):
        raise InvalidInput(f"'{name}' in the event's data must be true or false", reason="wrong_type")
    return value
