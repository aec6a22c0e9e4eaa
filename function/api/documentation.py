"""What the handlers' documentation shares: the answers of every route that reads a body, and the
decorator that documents error answers by status (aiohttp-apispec's ``response_schema``, once each)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from aiohttp.typedefs import Handler
from aiohttp_apispec import response_schema
from marshmallow import Schema

#: The tags of the Open Inference Protocol's operations.
V2_TAGS = ["open inference protocol"]
#: Answers of every route that reads a body (``function.api.body``), by status.
BODY_ERRORS = {
    408: "The body did not arrive within BODY_TIMEOUT_SECONDS",
    413: "The body is (or is declared) larger than MAX_BODY_BYTES",
    417: "An Expect header other than 100-continue",
}


def documented_errors(schema: type[Schema], descriptions: Mapping[int, str]) -> Callable[[Handler], Handler]:
    """A decorator documenting each status of ``descriptions`` as an answer in ``schema``."""

    def decorate(func: Handler) -> Handler:
        for code, text in descriptions.items():
            func = response_schema(schema, code, description=text)(func)
        return func

    return decorate
