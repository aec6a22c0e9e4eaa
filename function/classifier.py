"""What the HTTP layer needs from a model, and the production implementation of it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from function.batching import AdaptiveBatcher
from function.metrics import Metrics
from function.pool import InferencePool
from function.prediction import Prediction


class Classifier(Protocol):
    """Anything that turns texts into predictions; the app factory accepts any of them."""

    @property
    def labels(self) -> Sequence[str]: ...

    @property
    def ready(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def classify(self, texts: Sequence[str]) -> list[Prediction]: ...


class PoolClassifier:
    """onnxruntime in worker processes, fed by an adaptive batcher that bounds the queue."""

    def __init__(
        self,
        model_path: Path,
        labels: Sequence[str],
        workers: int,
        *,
        max_batch: int,
        max_pending: int,
        retry_after: int,
        start_timeout: float,
        metrics: Metrics,
    ) -> None:
        self.labels = tuple(labels)
        self.pool = InferencePool(model_path, workers, start_timeout, on_restart=metrics.worker_restarts.inc)
        self.batcher = AdaptiveBatcher(
            self.pool,
            len(self.labels),
            max_batch=max_batch,
            max_pending=max_pending,
            retry_after=retry_after,
            metrics=metrics,
        )
        metrics.workers_configured.set(workers)
        metrics.workers_alive.set_function(lambda: self.pool.alive)

    @property
    def ready(self) -> bool:
        return self.pool.ready and self.batcher.running

    async def start(self) -> None:
        await self.pool.start()
        self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()
        await self.pool.stop()

    async def classify(self, texts: Sequence[str]) -> list[Prediction]:
        return await self.batcher.classify(texts)
