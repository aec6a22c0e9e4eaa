"""Picklable references to ``function.worker``'s functions, resolved inside the worker.

The server process never imports ``function.worker`` (and so neither onnxruntime nor numpy):
it hands the pool these stand-ins, which import the module only where they run.
"""

from __future__ import annotations

import importlib
from typing import Any

WORKER_MODULE = "function.worker"


class WorkerFunction:
    """``WorkerFunction("predict")(texts)`` calls ``function.worker.predict(texts)`` in the worker."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, *args: Any) -> Any:
        return getattr(importlib.import_module(WORKER_MODULE), self.name)(*args)

    def __getstate__(self) -> str:
        return self.name

    def __setstate__(self, name: str) -> None:
        self.name = name


init = WorkerFunction("init")
predict = WorkerFunction("predict")
pid = WorkerFunction("pid")
check = WorkerFunction("check")
