"""Validation of the prediction endpoints' decoded bodies and query, by hand for speed.

The rules are the same as the marshmallow schemas in ``function.api.schemas`` that document them
(a test feeds both the same bodies); validating by hand avoids webargs on the hot path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from function.errors import InvalidInput

# NOTE: whitespace is spelled out (ECMAScript's \s set) so that this check, Python's `re` and the
# JSON-Schema `pattern` published in openapi.json all agree on what "blank" means.
WHITESPACE = r"\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
#: A text must contain something other than whitespace (anchored at the start, as
#: marshmallow's Regexp matches; equivalent under JSON Schema's unanchored search).
TEXT_PATTERN = f"[{WHITESPACE}]*[^{WHITESPACE}]"
_HAS_CONTENT = re.compile(TEXT_PATTERN)
_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no", "")


def _object(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise InvalidInput(f"the body must be a JSON object, not {_json_type(body)}", reason="not_object")
    return body


def check_text(value: Any, where: str) -> str:
    """``value`` if it is a string with some non-whitespace content."""
    if not isinstance(value, str):
        raise InvalidInput(f"'{where}' must be a string, not {_json_type(value)}", reason="wrong_type")
    if not _HAS_CONTENT.match(value):
        raise InvalidInput(f"'{where}' must not be empty or only whitespace", reason="empty_text")
    return value


_FOR_MANY = 'to classify several texts, POST {"texts": [...]} to /predictions'


def prediction_text(body: Any) -> str:
    """The ``text`` of a ``POST /prediction`` body; unknown fields are ignored."""
    if isinstance(body, list):
        raise InvalidInput(f'the body must be a JSON object, {{"text": "..."}}; {_FOR_MANY}', reason="not_object")
    obj = _object(body)
    if "text" not in obj:
        hint = f"; {_FOR_MANY}" if "texts" in obj else ""
        raise InvalidInput(f"the field 'text' is required{hint}", reason="missing_field")
    text = obj["text"]
    if isinstance(text, list):
        raise InvalidInput(f"'text' must be a string, not an array; {_FOR_MANY}", reason="wrong_type")
    return check_text(text, "text")


def prediction_texts(body: Any, max_items: int) -> list[str]:
    """The ``texts`` of a ``POST /predictions`` body, each checked; errors name the index."""
    obj = _object(body)
    if "texts" not in obj:
        raise InvalidInput("the field 'texts' is required", reason="missing_field")
    texts = obj["texts"]
    if not isinstance(texts, list):
        raise InvalidInput(f"'texts' must be an array, not {_json_type(texts)}", reason="wrong_type")
    if not 1 <= len(texts) <= max_items:
        raise InvalidInput(f"'texts' must hold 1 to {max_items} items, not {len(texts)}", reason="batch_size")
    return [check_text(text, f"texts[{i}]") for i, text in enumerate(texts)]


def feedback_fields(body: Any) -> tuple[str, str]:
    """``(prediction_id, label)`` of a ``POST /feedback`` body; unknown fields are ignored."""
    obj = _object(body)
    found = []
    for name in ("prediction_id", "label"):
        if name not in obj:
            raise InvalidInput(f"the field '{name}' is required", reason="missing_field")
        found.append(check_text(obj[name], name))
    return found[0], found[1]


def flag(query: Mapping[str, str], name: str) -> bool:
    """A boolean query parameter (``?scores=true``); absent means false."""
    value = query.get(name, "").lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidInput(f"query parameter '{name}' must be true or false, not {value!r}", reason="bad_query")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
