"""What a request schema cannot say, kept by every request schemathesis sends: the V2 infer
request's rules, and the CloudEvent's (``POST /``).

JSON Schema (Swagger 2.0's subset of it, which the OpenAPI 3.0 document repeats) cannot tie the
input's ``shape`` to the number of texts in its ``data``, nor keep two requested outputs from
sharing a name; the operation's description says both. So in each generated request whose shape
is valid by the schema, the shape is made to count the texts; and in each whose outputs are valid
by the schema, an output named again is left out. A part the schema rules out is never touched,
so an invalid request stays invalid. (Whatever the mode it was drawn in: the stateful phase may
then put a valid value in place of the one a negative request got wrong, and send it as valid.)
JSON Schema cannot name which extra members of a CloudEvent are extension attributes (a name of
lower-case ASCII letters and digits, a value that is a non-empty string without control
characters, a boolean or a 32-bit integer) nor keep ``data_base64`` from standing beside
``data``; the operation's description says both. Extra members are allowed by the schema, so one
that is no extension attribute is left out of any request: a valid event stays valid, an invalid
one invalid.
Loaded by schemathesis through ``SCHEMATHESIS_HOOKS``.
"""

from __future__ import annotations

import re
from typing import Any

import schemathesis
from schemathesis import Case
from schemathesis.hooks import HookContext


@schemathesis.hook.apply_to(path_regex="/infer$")
def map_case(context: HookContext, case: Case) -> Case:
    body: Any = case.body
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        return case
    raw = case.operation.schema.raw_schema
    schemas = raw["definitions"] if "definitions" in raw else raw["components"]["schemas"]
    for tensor in body["inputs"]:
        if isinstance(tensor, dict) and isinstance(tensor.get("data"), list):
            shape = tensor.get("shape")
            if valid_shape(shape, schemas["V2InferInput"]["properties"]["shape"]):
                tensor["shape"] = [len(tensor["data"]), *[1] * (len(shape) - 1)]
    outputs = body.get("outputs")
    if valid_outputs(outputs, schemas["V2InferRequest"]["properties"]["outputs"], schemas["V2RequestedOutput"]):
        named: dict[str, Any] = {}
        for output in outputs:
            named.setdefault(output["name"], output)
        body["outputs"] = list(named.values())
    return case


def valid_shape(shape: Any, rules: dict[str, Any]) -> bool:
    """``shape`` is valid by its schema: 1 or 2 dimensions, each a count within the bounds."""
    low, high = rules["items"]["minimum"], rules["items"]["maximum"]
    return (
        isinstance(shape, list)
        and rules["minItems"] <= len(shape) <= rules["maxItems"]
        and all(isinstance(d, int) and not isinstance(d, bool) and low <= d <= high for d in shape)
    )


def valid_outputs(outputs: Any, rules: dict[str, Any], output: dict[str, Any]) -> bool:
    """``outputs`` is valid by its schema: known names, each with no parameters or a boolean binary_data."""
    names = output["properties"]["name"]["enum"]

    def valid(item: Any) -> bool:
        if not isinstance(item, dict) or item.get("name") not in names:
            return False
        parameters = item.get("parameters")
        return parameters is None or (
            isinstance(parameters, dict) and isinstance(parameters.get("binary_data", False), bool)
        )

    return (
        isinstance(outputs, list)
        and rules["minItems"] <= len(outputs) <= rules["maxItems"]
        and all(map(valid, outputs))
    )


_EXTENSION_NAME = re.compile(r"[a-z0-9]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@schemathesis.hook("map_case").apply_to(method="POST", path_regex="^/$")
def keep_only_extension_attributes(context: HookContext, case: Case) -> Case:
    body: Any = case.body
    if not isinstance(body, dict):
        return case
    raw = case.operation.schema.raw_schema
    schemas = raw["definitions"] if "definitions" in raw else raw["components"]["schemas"]
    documented = schemas["ClassifyEvent"]["properties"]
    for name in [name for name in body if name not in documented]:
        if name == "data_base64" or not valid_extension(name, body[name]):
            del body[name]
    return case


def valid_extension(name: str, value: Any) -> bool:
    """A CloudEvents extension attribute: its name and a String, Boolean or Integer value."""
    if not _EXTENSION_NAME.fullmatch(name) or name == "data":
        return False
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -(2**31) <= value < 2**31
    return isinstance(value, str) and value != "" and not _CONTROL.search(value)
