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


def service_step(connections: int) -> str:
    """The label of the service's step of single texts at ``connections`` (``Results.costs``)."""
    return f"service, {connections} conns"


#: The label of the Open Inference Protocol's step.
V2_STEP = f"service, V2 infer, {TARGET_CONNECTIONS} conns"


def ideal_of(model_docs_per_second: float, http_rps: float) -> float:
    """1 / (1/model + 1/http): the two ceilings' costs per request, paid one after the other."""
    return 1 / (1 / model_docs_per_second + 1 / http_rps)


@dataclass(frozen=True)
class RatioRound:
    """The figures the 64-connection throughput target compares, measured back to back.

    ``ideal_rps`` (the target's) joins the model-only ceiling with the floor, the least aiohttp
    server; ``http_ideal_rps`` joins it with the service's own HTTP stack (constant classifier),
    and so leaves out what the service's middleware, logging and validation cost.
    """

    model_docs_per_second: float
    http_rps: float
    floor_rps: float
    service: WrkResult

    @property
    def ideal_rps(self) -> float:
        return ideal_of(self.model_docs_per_second, self.floor_rps)

    @property
    def ratio(self) -> float:
        return self.service.ok_rps / self.ideal_rps

    @property
    def http_ideal_rps(self) -> float:
        return ideal_of(self.model_docs_per_second, self.http_rps)

    @property
    def http_ratio(self) -> float:
        return self.service.ok_rps / self.http_ideal_rps


@dataclass(frozen=True)
class ScalingPoint:
    """The service with ``workers`` workers at the target's connections, and the model alone in as many processes."""

    workers: int
    service: WrkResult
    cost: StepCost
    model: CeilingResult | None


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
    floor: WrkResult | None = None  # python -m bench.floor_server at the target's connections
    service: dict[int, WrkResult] = field(default_factory=dict)  # connections -> result, WORKERS=2
    batch: dict[int, WrkResult] = field(default_factory=dict)  # connections -> POST /predictions result
    v2: WrkResult | None = None  # the Open Inference Protocol's infer, one text a request, 64 connections
    overload: OverloadResult | None = None
    cold_starts: list[float] = field(default_factory=list)
    memory: list[ProcessMemory] = field(default_factory=list)  # after a quiet spell following the load
    memory_at_end: list[ProcessMemory] = field(default_factory=list)  # the moment the last load step ended
    cpus: int = 0  # CPUs available to the benchmark (affinity mask and cgroup quota)
    scaling: dict[int, ScalingPoint] = field(default_factory=dict)  # workers -> fresh server at 64 connections
    costs: list[StepCost] = field(default_factory=list)
    extra_rounds: list[RatioRound] = field(default_factory=list)  # model, HTTP-only, service again
    repeated_steps: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def ideal_rps(self) -> float | None:
        """1 / (1/model + 1/HTTP-only) of the main steps' ceilings (round 1): the service's own HTTP stack."""
        if self.model_ceiling is None or self.http_ceiling is None:
            return None
        return ideal_of(self.model_ceiling.docs_per_second, self.http_ceiling.ok_rps)

    @property
    def floor_ideal_rps(self) -> float | None:
        """1 / (1/model + 1/floor) of the main steps (round 1): the throughput target's ideal."""
        if self.model_ceiling is None or self.floor is None:
            return None
        return ideal_of(self.model_ceiling.docs_per_second, self.floor.ok_rps)

    def ratio_rounds(self) -> list[RatioRound]:
        """The main steps' figures as round 1, then every repeated round."""
        first = self.service.get(TARGET_CONNECTIONS)
        if self.model_ceiling is None or self.http_ceiling is None or self.floor is None or first is None:
            return list(self.extra_rounds)
        model, http, floor = self.model_ceiling.docs_per_second, self.http_ceiling.ok_rps, self.floor.ok_rps
        return [RatioRound(model, http, floor, first), *self.extra_rounds]
