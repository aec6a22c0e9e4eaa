"""The API's documentation, written beside each handler, without the documentation tools in the service.

``docs``, ``request_schema`` and ``response_schema`` take the arguments of aiohttp-apispec's
decorators of the same names, with each schema named rather than imported (a class of
``function.api.schemas``), and only record them on the handler. ``function.api.openapi`` replays
the records with aiohttp-apispec when it generates the documents. The service serves the
committed documents, so its process imports neither aiohttp-apispec nor marshmallow: about 5 MB
it would hold for nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

#: One decorator's application: its name and its arguments, in the order they were applied.
Record = tuple[str, tuple[Any, ...], dict[str, Any]]
H = TypeVar("H", bound=Callable[..., Any])
_ATTRIBUTE = "__documentation__"


def records(handler: Callable[..., Any]) -> list[Record]:
    """What the decorators below recorded on ``handler``, innermost first; empty if undocumented."""
    return list(getattr(handler, _ATTRIBUTE, ()))


def _recorder(name: str) -> Callable[..., Callable[[H], H]]:
    def decorator(*args: Any, **kwargs: Any) -> Callable[[H], H]:
        def record(handler: H) -> H:
            setattr(handler, _ATTRIBUTE, [*records(handler), (name, args, kwargs)])
            return handler

        return record

    decorator.__name__ = decorator.__qualname__ = name
    decorator.__doc__ = f"Record aiohttp-apispec's ``{name}`` for the handler (schemas by class name)."
    return decorator


docs = _recorder("docs")
request_schema = _recorder("request_schema")
response_schema = _recorder("response_schema")
