"""The Open Inference Protocol's binary tensor data extension (tritonclient's and KServe's default).

A body is the JSON header, whose length ``Inference-Header-Content-Length`` gives, followed by each
binary tensor: a BYTES element as a 4-byte little-endian length and its bytes, an FP32 element as
four little-endian bytes.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterable
from typing import Any

from function.errors import InvalidInput

#: The request and response header that carries the JSON part's length when binary tensors follow it.
HEADER_LENGTH = "Inference-Header-Content-Length"
_LENGTH = struct.Struct("<I")


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    """The JSON part of a body and the binary tensors after it."""
    if header_length is None:
        return body, memoryview(b"")
    if not header_length.isdigit() or int(header_length) > len(body):
        raise InvalidInput(
            f"{HEADER_LENGTH} must be a byte count within the body ({len(body)} bytes), not {header_length!r}",
            reason="bad_tensor",
        )
    cut = int(header_length)
    return body[:cut], memoryview(body)[cut:]


def bytes_elements(binary: memoryview, size: Any, name: str) -> list[Any]:
    """The strings of the BYTES tensor ``name``, which ``binary_data_size`` says fills ``binary``."""
    if not isinstance(size, int) or isinstance(size, bool) or size != len(binary):
        raise InvalidInput(
            f"'binary_data_size' must equal the {len(binary)} bytes after the JSON, not {size!r}", reason="bad_tensor"
        )
    elements: list[Any] = []
    at = 0
    while at < size:
        if at + 4 > size:
            raise InvalidInput("the binary BYTES tensor ends inside an element's length", reason="bad_tensor")
        (length,) = _LENGTH.unpack_from(binary, at)
        at += 4
        if at + length > size:
            raise InvalidInput("the binary BYTES tensor ends inside an element", reason="bad_tensor")
        try:
            elements.append(str(binary[at : at + length], "utf-8"))
        except UnicodeDecodeError:
            raise InvalidInput(f"element {len(elements)} of {name!r} is not UTF-8", reason="wrong_type") from None
        at += length
    return elements


def bytes_tensor(strings: Iterable[str]) -> bytes:
    """A BYTES tensor's binary data."""
    return b"".join(_LENGTH.pack(len(e)) + e for e in (s.encode() for s in strings))


def fp32_tensor(values: array[float]) -> bytes:
    """An FP32 tensor's binary data (``values`` of typecode ``f``)."""
    if sys.byteorder != "little":
        values = array("f", values)
        values.byteswap()
    return values.tobytes()
