"""How a setting is declared, read from a string and checked: the rules behind ``function.settings``."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import field
from pathlib import Path
from typing import Any

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingError(ValueError):
    """A setting's value is not one it accepts; the message names the variable and the value."""


def setting(
    default: Any,
    env: str,
    doc: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    choices: Sequence[str] | None = None,
    secret_bytes: int | None = None,
    pattern: str | None = None,
) -> Any:
    """A field read from ``env``; ``secret_bytes``: a secret of at least that many bytes, read from
    the environment only (never a flag, whose value every process may read) and never printed;
    ``pattern``: a regular expression a string must match whole."""
    rule = {
        "minimum": minimum,
        "maximum": maximum,
        "above": above,
        "choices": choices,
        "secret_bytes": secret_bytes,
        "pattern": pattern,
    }
    return field(default=default, metadata={"env": env, "doc": doc, **rule}, repr=secret_bytes is None)


_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def convert(f: dataclasses.Field[Any], raw: str) -> Any:
    """Turn an environment string into the field's type (the type of its default)."""
    default: Any = f.default
    kind = type(default).__name__
    try:
        if isinstance(default, bool):
            return _BOOLEANS[raw.strip().lower()]
        if isinstance(default, Path):
            return Path(raw)
        if isinstance(default, str):
            return raw.upper() if f.metadata["choices"] is LOG_LEVELS else raw
        return type(default)(raw)
    except (KeyError, ValueError):
        expected = "true or false" if kind == "bool" else "a whole number" if kind == "int" else f"a {kind}"
        raise SettingError(f"{f.metadata['env']}={raw!r} is not {expected}") from None


def check(f: dataclasses.Field[Any], value: Any) -> None:
    """Refuse ``value`` unless it is within the field's rule (and finite, for a number)."""
    meta = f.metadata
    if meta["secret_bytes"] is not None:
        if value and len(value.encode()) < meta["secret_bytes"]:
            raise SettingError(
                f"{meta['env']} is {len(value.encode())} bytes; it must be at least {meta['secret_bytes']} "
                "(make one with: openssl rand -base64 48)"
            )
        return
    where = f"{meta['env']}={value!r}" if not isinstance(value, Path) else f"{meta['env']}={str(value)!r}"
    if meta["choices"] is not None and value not in meta["choices"]:
        raise SettingError(f"{where} must be one of {', '.join(meta['choices'])}")
    if meta["pattern"] is not None and not re.fullmatch(meta["pattern"], value):
        raise SettingError(f"{where} must match the regular expression {meta['pattern']}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if not math.isfinite(value):
        raise SettingError(f"{where} must be a finite number")
    if meta["minimum"] is not None and value < meta["minimum"]:
        raise SettingError(f"{where} must be at least {meta['minimum']:g}")
    if meta["maximum"] is not None and value > meta["maximum"]:
        raise SettingError(f"{where} must be at most {meta['maximum']:g}")
    if meta["above"] is not None and value <= meta["above"]:
        raise SettingError(f"{where} must be more than {meta['above']:g}")
