"""The tracer: the event loop queues one tuple per request, a daemon thread exports them in batches.

The loop's side takes no lock and makes no system call: ``keeps`` decides, as a request starts, whether
its spans are kept; ``record`` makes a length test and appends one tuple to a bounded deque. A full
queue drops the request's spans and counts them. The thread wakes every ``OTEL_BSP_SCHEDULE_DELAY`` or
when a batch is queued, encodes (``otlp``) and POSTs (``collector``). A failed POST drops its batch
(counted) and the thread then waits a whole schedule delay before the next one: a dead collector costs
one attempt per delay, never a retry storm.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Sequence
from typing import NamedTuple

from function.tracing.collector import Collector
from function.tracing.config import TracingConfig
from function.tracing.otlp import Attributes, Encoder, Phase, Record

log = logging.getLogger(__name__)


class SpanCounts(NamedTuple):
    """Spans so far: a request is its server span and one span per phase."""

    exported: int  # the collector answered 2xx
    dropped_queue_full: int  # the queue was full (or the tracer stopped) when the request ended
    dropped_export_failed: int  # the POST failed, or shutdown's time ran out before it was made


#: Requests encoded between two offers of the GIL to the event loop (about 0.3 ms of encoding).
_ENCODE_CHUNK = 64
_SAMPLED = frozenset("13579bdf")  # the last hex digit of flags with bit 0 set


def _spans(records: Sequence[Record]) -> int:
    return sum(1 + len(record[9]) for record in records)


class Tracer:
    """Spans of finished requests, exported off the event loop; ``start``, ``record``..., ``shutdown``."""

    def __init__(self, config: TracingConfig, scope_version: str = "") -> None:
        self._collector = Collector(config)
        self.where = self._collector.where  # the traces URL without credentials, for logs
        self._encoder = Encoder(config.resource, scope_version)
        self._queue: collections.deque[Record] = collections.deque()
        self._capacity = config.max_queue_size
        self._batch_size = config.max_export_batch_size
        self._delay = config.schedule_delay_seconds
        self._parent_based = config.sampler.startswith("parentbased_")
        self._ratio = config.ratio
        self._threshold = int(config.ratio * (1 << 56))  # TraceIdRatioBased: the trace id's low 56 bits
        self._dropped_queue_full = 0  # the event loop's counter; the two below are the thread's (and shutdown's)
        self._exported = self._failed = self._in_flight = 0
        self._lock = threading.Lock()  # the queue's consumers: the thread and shutdown
        self._wake, self._stop = threading.Event(), threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._export_loop, name="otlp-export", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def record(
        self,
        trace_id: str | None,
        parent_id: str | None,
        span_id: str | None,
        method: str,
        route: str | None,
        path: str,
        status: int,
        started: float,
        ended: float,
        phases: tuple[Phase, ...] = (),
        attributes: Attributes = (),
    ) -> None:
        """Queue a finished request's spans (event loop; O(1), no lock, no system call), one that ``keeps``
        kept: sampling is decided there, once.

        Ids are lower-case hex; a missing one is drawn in the export thread (a trace of its own).
        ``started``, ``ended`` and each phase's ``(name, start, end)`` are ``time.monotonic()`` seconds
        (``time.perf_counter()`` is the same clock on Linux). ``route``: the route's template, None when no
        route matched. ``attributes``: more for the server span (e.g. ``("textclf.texts", 16)``).
        """
        queue = self._queue
        if len(queue) >= self._capacity:
            self._dropped_queue_full += 1 + len(phases)
            return
        queue.append((trace_id, parent_id, span_id, method, route, path, status, started, ended, phases, attributes))
        if len(queue) == self._batch_size:
            self._wake.set()

    def keeps(self, traceparent: str) -> bool:
        """Whether the spans of the request answered with ``traceparent`` are kept (its sampled flag is the
        caller's, or ``samples_root``'s for a trace the request started): decided before the request
        runs, so that a request sampled out takes no timings and is never recorded."""
        if self._parent_based:
            return traceparent[-1] in _SAMPLED  # bit 0 of the flags
        return self.samples_root(traceparent[3:35])

    def samples_root(self, trace_id: str) -> bool:
        """Whether a request that started trace ``trace_id`` (no caller) is kept: the sampled flag of its
        answer's ``traceparent``. The ratio applies to the trace id's low 56 bits (TraceIdRatioBased)."""
        return self._ratio >= 1.0 or int(trace_id[-14:], 16) < self._threshold

    def counts(self) -> SpanCounts:
        return SpanCounts(self._exported, self._dropped_queue_full, self._failed)

    @property
    def queued(self) -> int:
        """Requests waiting for export."""
        return len(self._queue)

    @property
    def exporting(self) -> bool:
        """The export thread runs (``shutdown`` stops it)."""
        return self._thread.is_alive()

    def shutdown(self, timeout: float) -> None:
        """Export what is queued, within ``timeout`` seconds at most, even with a hung collector; what could
        not be sent is counted as dropped. Blocks: call it off the event loop, once requests have stopped."""
        self._capacity = 0  # from now on, record() drops (and counts)
        self._stop.set()
        self._wake.set()
        if self._thread.ident is not None:
            self._thread.join(timeout)
        if self._thread.is_alive():
            self._collector.abort()
        with self._lock:
            self._failed += self._in_flight + _spans(self._queue)
            self._in_flight = 0
            self._queue.clear()

    # ---- the export thread ----

    def _export_loop(self) -> None:
        try:
            while not self._stop.is_set():
                self._wake.wait(self._delay)
                self._wake.clear()
                if not self._export_queued():
                    self._stop.wait(self._delay)  # failing: one attempt per delay, whatever is queued
            self._export_queued()  # stopping: the last batches, within shutdown's bound
        finally:
            self._collector.close()

    def _export_queued(self) -> bool:
        """POST what is queued, a batch at a time; False at the first failure (stopping: the rest is dropped)."""
        while True:
            with self._lock:
                batch = [self._queue.popleft() for _ in range(min(self._batch_size, len(self._queue)))]
                self._in_flight = _spans(batch)
            if not batch:
                return True
            error = self._send(batch)
            with self._lock:
                if error is None:
                    self._exported += self._in_flight
                else:
                    self._failed += self._in_flight + (_spans(self._queue) if self._stop.is_set() else 0)
                    if self._stop.is_set():
                        self._queue.clear()
                self._in_flight = 0
            self._log_change(error)
            if error is not None:
                return False

    def _send(self, batch: list[Record]) -> str | None:
        try:
            offset, encoder = time.time_ns() - time.monotonic_ns(), self._encoder
            parts = []
            for first in range(0, len(batch), _ENCODE_CHUNK):
                parts.append(encoder.spans(batch[first : first + _ENCODE_CHUNK], offset))
                time.sleep(0)  # the GIL to the event loop, which then never waits for a whole batch's encoding
            body = encoder.request(parts)
        except Exception as exc:  # a bad record must cost its batch, not the thread
            log.exception("spans could not be encoded")
            return f"{type(exc).__name__}: {exc}"
        return self._collector.post(body)

    def _log_change(self, error: str | None) -> None:
        """One line when the export starts failing and one when it works again, not one per batch."""
        if error is not None and not self._failing:
            log.warning("span export to %s failed (%s): spans are dropped until it answers", self.where, error)
        elif error is None and self._failing:
            log.info("span export to %s works again", self.where)
        self._failing = error is not None
