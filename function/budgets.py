"""How much request data the service holds in memory at once, derived from the memory limit.

Two budgets bound the process tree by bytes, not by request count:

- ``body_bytes``: request bodies being read or waiting for their answer, in the server process
  (each body byte costs it up to ``SERVER_BYTES_PER_BODY_BYTE`` bytes: the raw bytes, the
  decoded text, its copy on the way to a worker);
- ``batch_chars``: the characters of one onnxruntime call, in a worker (each costs about
  ``WORKER_BYTES_PER_CHAR`` bytes at the call's peak, whatever the script).

With ``L`` the cgroup memory limit (1 GiB where there is none) and ``n`` workers::

    spare       = 0.9 L - (BASE_BYTES + n x WORKER_BASE_BYTES)
    batch_chars = spare / 2 / (WORKER_BYTES_PER_CHAR x max(1, n - 1)), within 64 Ki .. 4 Mi
    body_bytes  = spare / 2 / SERVER_BYTES_PER_BODY_BYTE, at least one largest body

Long texts run on at most ``n - 1`` workers at once (``function.batching.adaptive``), hence the
``n - 1``. ``BODY_BUDGET_BYTES`` and ``BATCH_MAX_CHARS`` override either figure.
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024
#: Where the cgroup sets no limit: the pod's documented limit (knative/service.yaml).
DEFAULT_LIMIT = 1024 * MiB
#: Resident memory with nothing in flight (measured by ``make bench-memory``, rounded up): the
#: server and the forkserver, and each worker with its onnxruntime session.
BASE_BYTES = 110 * MiB
WORKER_BASE_BYTES = 75 * MiB
#: Peak bytes per character of one onnxruntime call above the worker's base: at most 24.6 measured
#: for ASCII, Latin, CJK and emoji texts of 0.3-4 M characters (``make bench-percall``, bench/PERCALL.md).
WORKER_BYTES_PER_CHAR = 26
#: Peak bytes in the server per request-body byte in flight.
SERVER_BYTES_PER_BODY_BYTE = 4
MIN_BATCH_CHARS = 64 * 1024
#: Above this a call takes long enough (about 0.2 s for 4 Mi ASCII characters) for the texts
#: behind it to feel it, with no gain in throughput: inference costs the same per character.
MAX_BATCH_CHARS = 4 * MiB


@dataclass(frozen=True)
class Budgets:
    """Request-body bytes held at once, and characters in one onnxruntime call."""

    body_bytes: int
    batch_chars: int


def derive(limit: int | None, workers: int, max_body_bytes: int) -> Budgets:
    """The budgets for a process tree of ``workers`` workers under ``limit`` bytes (None: no limit)."""
    assumed = DEFAULT_LIMIT if limit is None else limit
    spare = max(0.0, 0.9 * assumed - (BASE_BYTES + workers * WORKER_BASE_BYTES))
    long_workers = max(1, workers - 1)
    batch_chars = int(spare / 2 / (WORKER_BYTES_PER_CHAR * long_workers))
    return Budgets(
        body_bytes=max(int(spare / 2 / SERVER_BYTES_PER_BODY_BYTE), max_body_bytes),
        batch_chars=min(max(batch_chars, MIN_BATCH_CHARS), MAX_BATCH_CHARS),
    )
