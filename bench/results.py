"""Everything one ``python -m bench.run`` measures, in one object the report and plot read."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.ceiling import CeilingResult
from bench.cpu import CpuUse
from bench.procs import ProcessMemory
from bench.scrape import Batching
from bench.wrk import WrkResult
from function import heap

LOAD_CONNECTIONS = (1, 16, 64, 256)
TARGET_CONNECTIONS = 64
HEAVY_CONNECTIONS = 256
#: The brief's batch step (64 x 32 = 2048 texts, the default MAX_PENDING), and a lighter one.
BATCH_CONNECTIONS = (64, 16)
BATCH_SIZE = 32
#: The overload step's MAX_PENDING: well below its 256 connections, so the queue bound is hit.
OVERLOAD_MAX_PENDING = 64
#: Memory is measured as the load ends and again this long after: the heap trim runs between
#: one and one and a half of the service's quiet spells after the last request.
QUIET_SECONDS = 3 * heap.QUIET_SECONDS


@dataclass(frozen=True)
class OverloadResult:
    max_pending: int
    load: WrkResult
    probe_seconds: dict[int, list[float]]  # status -> latencies of the side probe's requests


@dataclass(frozen=True)
class StepCost:
    """What one load step cost: CPU by process role, and the service's batching meanwhile."""

    label: str
    requests: int
    cpu: CpuUse
    batching: Batching | None


def ideal_of(model_docs_per_second: float, http_rps: float) -> float:
    """1 / (1/model + 1/http): the two ceilings' costs per request, paid one after the other."""
    return 1 / (1 / model_docs_per_second + 1 / http_rps)


@dataclass(frozen=True)
class RatioRound:
    """The three figures the 64-connection throughput target compares, measured back to back."""

    model_docs_per_second: float
    http_rps: float
    service: WrkResult

    @property
    def ideal_rps(self) -> float:
        return ideal_of(self.model_docs_per_second, self.http_rps)

    @property
    def ratio(self) -> float:
        return self.service.ok_rps / self.ideal_rps


@dataclass
class Results:
    mode: str  # "full" or "smoke"
    started: str
    machine: str
    load_average: str
    settings: dict[str, str]
    seconds_per_step: float
    wrk_threads: int
    model_ceiling: CeilingResult | None = None
    http_ceiling: WrkResult | None = None
    service: dict[int, WrkResult] = field(default_factory=dict)  # connections -> result, WORKERS=2
    batch: dict[int, WrkResult] = field(default_factory=dict)  # connections -> POST /predictions result
    overload: OverloadResult | None = None
    cold_starts: list[float] = field(default_factory=list)
    memory: list[ProcessMemory] = field(default_factory=list)  # after a quiet spell following the load
    memory_at_end: list[ProcessMemory] = field(default_factory=list)  # the moment the last load step ended
    scaling: dict[int, WrkResult] = field(default_factory=dict)  # workers -> result at 64 connections
    costs: list[StepCost] = field(default_factory=list)
    extra_rounds: list[RatioRound] = field(default_factory=list)  # model, HTTP-only, service again
    repeated_steps: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def ideal_rps(self) -> float | None:
        """The ideal of the main steps' ceilings (round 1)."""
        if self.model_ceiling is None or self.http_ceiling is None:
            return None
        return ideal_of(self.model_ceiling.docs_per_second, self.http_ceiling.ok_rps)

    def ratio_rounds(self) -> list[RatioRound]:
        """The main steps' figures as round 1, then every repeated round."""
        first = self.service.get(TARGET_CONNECTIONS)
        if self.model_ceiling is None or self.http_ceiling is None or first is None:
            return list(self.extra_rounds)
        return [RatioRound(self.model_ceiling.docs_per_second, self.http_ceiling.ok_rps, first), *self.extra_rounds]
