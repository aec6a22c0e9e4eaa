"""What the container checks share: the image and what it is judged against, the internal network
with its detectors, the service containers on it, and each check's verdict.

Every service container runs from the image that .ci/container/run.sh built from the Dockerfile,
with the flags knative/service.yaml implies (securityContext, resources, env, the emptyDir as a
tmpfs, the port Knative injects), on an internal Docker network with no route out, and is
judged against the files of the build context (openapi.json, model/evaluation.json,
data/test.jsonl.gz, knative/service.yaml).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import itertools
import json
import math
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.http1 import Cut, Load, Outcome, Refused, Response, fetch
from tests.container import containers, egress
from tests.container.containers import Container, Docker, DockerError, RunSpec, docker

HERE = Path(__file__).resolve().parent
EGRESS_WINDOW = 30.0  # seconds of start-up and load watched for DNS queries and connections
#: Stands in for the Secret that knative/service.yaml takes FEEDBACK_KEY from.
FEEDBACK_KEY = "the container test's feedback key, 32 bytes or more"


# ---- each check's figures, shown under its result (conftest.py prints them) ------------------------
_shown: list[str] = []


def show(line: str) -> None:
    """A line for the terminal, printed under the result of the test running now."""
    _shown.append(line)


def take_shown() -> list[str]:
    lines = list(_shown)
    _shown.clear()
    return lines


def verdict(ok: bool, detail: str) -> None:
    """A check's result: ``detail`` (its figures) is shown whether it passed or not."""
    show(detail)
    assert ok, detail


def judge(problems: list[str], figures: str) -> None:
    """A check that passes when it found no problem: its figures, then the problems, are shown."""
    verdict(not problems, figures + (f"; {'; '.join(problems)}" if problems else ""))


def seconds(value: float) -> str:
    return f"{value:.2f} s"


def mib(value: float) -> str:
    return f"{value / 2**20:.0f} MiB"


def example(outcome: Outcome) -> str:
    if outcome.answer is None:
        return outcome.failure
    return f"{outcome.answer.status} {outcome.answer.body[:120]!r}"


def metrics(text: str) -> dict[str, float]:
    """Unlabelled Prometheus samples by name."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, _, value = line.partition(" ")
            with contextlib.suppress(ValueError):
                values[name] = float(value.split()[0])
    return values


def body_of_size(texts: list[str], size: int) -> bytes:
    """{"text": ...} of exactly `size` bytes: test texts one after another, padded with spaces."""
    pieces: list[str] = []
    used = len(json.dumps({"text": ""}).encode())
    for piece in itertools.cycle(text + "\n" for text in texts):
        cost = len(json.dumps(piece).encode()) - 2  # JSON escapes each character on its own
        if used + cost > size:
            break
        pieces.append(piece)
        used += cost
    body = json.dumps({"text": "".join(pieces) + " " * (size - used)}).encode()
    assert len(body) == size, len(body)
    return body


# ---- what the checks judge against -----------------------------------------------------------------
@dataclass
class Context:
    root: Path
    image: str
    base: str
    spec: RunSpec
    settings: dict[str, str]
    texts: list[str]
    labels: list[str]
    served: dict[str, Any]
    openapi: Any
    model_labels: list[str]
    model: dict[str, Any]  # model/model.json
    ready_documented: float
    ready_source: str

    def setting(self, name: str) -> float:
        return float(self.spec.env.get(name, self.settings[name]))


def image_settings(image: str, docker_: Docker) -> dict[str, str]:
    """The service's settings and defaults, as `python -m function --help` in the image lists them."""
    name = f"textclf-ct-{docker_.run_id}-help"
    docker_.containers.append(name)
    text = docker(
        "run", "--rm", "--name", name, "--label", f"{containers.LABEL}={docker_.run_id}", "--network", "none",
        image, "python", "-m", "function", "--help",
    )  # fmt: skip
    docker_.containers.remove(name)
    found = dict(re.findall(r"\(env ([A-Z_]+), default ([^)]*)\)", " ".join(text.split())))
    if "MAX_BODY_BYTES" not in found:
        raise DockerError(f"could not read the settings from `python -m function --help`: {text[:300]!r}")
    return found


def documented_ready(root: Path) -> tuple[float, str]:
    deploy = root / "knative" / "DEPLOY.md"
    text = " ".join(deploy.read_text().split()) if deploy.exists() else ""
    match = re.search(r"turns ready about (\d+(?:\.\d+)?) s after its container starts", text)
    if match is None:
        raise DockerError("knative/DEPLOY.md no longer says how soon a container is ready ('turns ready about N s')")
    return float(match.group(1)), "knative/DEPLOY.md"


def load_context(root: Path, image: str, base: str, docker_: Docker) -> Context:
    with gzip.open(root / "data" / "test.jsonl.gz", "rt", encoding="utf-8") as file:
        rows = [json.loads(line) for line in file if line.strip()]
    evaluation = json.loads((root / "model" / "evaluation.json").read_text())
    ready, source = documented_ready(root)
    return Context(
        root=root,
        image=image,
        base=base,
        spec=RunSpec.from_manifest(root / "knative" / "service.yaml", {"FEEDBACK_KEY": FEEDBACK_KEY}),
        settings=image_settings(image, docker_),
        texts=[row["text"] for row in rows],
        labels=[row["label"] for row in rows],
        served=evaluation["served"],
        openapi=json.loads((root / "openapi.json").read_text()),
        model_labels=list(json.loads((root / "model" / "model.json").read_text())["labels"]),
        model=dict(json.loads((root / "model" / "model.json").read_text())),
        ready_documented=ready,
        ready_source=source,
    )


# ---- the network and the service containers on it ---------------------------------------------------
@dataclass
class Service:
    """A service container and what was measured on it."""

    container: Container
    label: str
    healthz_at: float = math.nan  # seconds after the container started
    ready_at: float = math.nan
    liveness: list[tuple[float, bool, float]] = field(default_factory=list)  # (time, ok, latency)
    sampler: asyncio.Task[None] | None = None  # samples `liveness` while it runs
    removed_at: float = math.inf
    tmpfs_used: int = 0
    tmpfs_entries: set[str] = field(default_factory=set)
    kept_logs: tuple[str, str] | None = None

    def logs(self) -> tuple[str, str]:
        return self.kept_logs if self.kept_logs is not None else self.container.logs()


class Network:
    """The internal network, its detectors (the resolver that records, the capture on the bridge),
    and every service container started on it."""

    def __init__(self, context: Context, docker_: Docker) -> None:
        self.c = context
        self.docker = docker_
        self.services: list[Service] = []
        self.name = f"textclf-ct-{docker_.run_id}"
        self.capture: egress.BridgeCapture | None = None
        self.recorder: Container | None = None
        self.subnet = ""
        self.bridge = ""
        self.short_bodies = [json.dumps({"text": text}).encode() for text in context.texts if len(text) < 8000]
        self.kill_seen = False  # /readyz turned 503 while a killed worker was replaced (worker-kill)
        self.canary_ok = False  # the detectors saw the canary's DNS query and connection attempt
        self.canary_detail = ""

    # ---- set-up: the network, the detectors, proof that they detect ------------------------------
    def setup(self) -> None:
        """The network, the capture on its bridge, the resolver that records, and the canary."""
        info = self.docker.network(self.name)
        self.subnet = info["IPAM"]["Config"][0]["Subnet"]
        self.bridge = info["Options"].get("com.docker.network.bridge.name") or f"br-{info['Id'][:12]}"
        self.capture = egress.BridgeCapture(self.bridge)
        recorder = HERE / "dns_recorder.py"
        flags = [
            "--network", self.name, "--read-only", "--user", "10001:10001", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "--volume", f"{recorder}:/dns_recorder.py:ro",
        ]  # fmt: skip
        self.recorder = self.docker.run(
            f"textclf-ct-{self.docker.run_id}-dns", self.c.base, flags, ["python3", "-u", "/dns_recorder.py"]
        )
        self.recorder.refresh(self.name)
        deadline = time.monotonic() + 10
        while '"listening"' not in self.recorder.logs()[0]:
            if time.monotonic() > deadline or not self.recorder.state()["Running"]:
                raise DockerError(f"the DNS recorder did not start: {self.recorder.logs()}")
            time.sleep(0.05)
        self.canary_ok, self.canary_detail = self.canary()

    def close(self) -> None:
        if self.capture is not None:
            self.capture.close()

    def dns_queries(self) -> list[dict[str, Any]]:
        assert self.recorder is not None
        records = [json.loads(line) for line in self.recorder.logs()[0].splitlines() if line.startswith("{")]
        return [record for record in records if record.get("event") == "query"]

    def no_route_out(self) -> str:
        """Docker's own isolation of the internal network: its DROP rule in the FORWARD path."""
        try:
            rules = subprocess.run(
                ["iptables", "-S", "DOCKER-ISOLATION-STAGE-1"], capture_output=True, text=True, timeout=10, check=False
            ).stdout
        except OSError:
            rules = ""
        wanted = {"-i", self.bridge, "!", "-d", self.subnet, "-j", "DROP"}
        if any(wanted <= set(rule.split()) for rule in rules.splitlines()):
            return f"--internal network {self.subnet} on {self.bridge}: iptables drops all it sends elsewhere"
        return f"--internal network {self.subnet} on {self.bridge} (its iptables DROP rule was not found)"

    def canary(self) -> tuple[bool, str]:
        """A container that does, once, what the service must never do: the detectors must see it."""
        assert self.recorder is not None
        assert self.capture is not None
        name = "textclf-canary.invalid"
        script = f"""
import socket, struct, time
nameserver = [l.split()[1] for l in open("/etc/resolv.conf") if l.startswith("nameserver")][0]
question = b"".join(bytes([len(p)]) + p.encode() for p in "{name}".split(".")) + b"\\0"
query = struct.pack("!6H", 0x5ca1, 0x0100, 1, 0, 0, 0) + question + struct.pack("!2H", 1, 1)
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(query, (nameserver, 53))
probe = socket.socket()
probe.settimeout(2)
try:
    probe.connect(("{self.recorder.ip}", 9))
except OSError:
    pass
time.sleep(1)
"""
        flags = ["--network", self.name, "--dns", self.recorder.ip, "--user", "10001:10001", "--cap-drop", "ALL"]
        canary = self.docker.run(
            f"textclf-ct-{self.docker.run_id}-canary", self.c.base, flags, ["python3", "-c", script]
        )
        canary.refresh(self.name)
        containers.wait_exit(canary, 15)
        time.sleep(0.3)
        queries = [q for q in self.dns_queries() if q["qname"] == name + "." and q["src"] == canary.ip]
        packets = egress.outbound(self.capture.snapshot(), {canary.ip}, serving_port=-1)
        syn = [p for p in packets if p.protocol == "tcp" and p.flags == "S" and p.dport == 9]
        udp = [p for p in packets if p.protocol == "udp" and p.dport == 53]
        self.docker.remove(canary)
        ok = bool(queries) and bool(syn) and bool(udp)
        detail = (
            f"canary {canary.ip}: recorder logged {len(queries)} query for {name}, capture saw {len(udp)} DNS "
            f"datagram(s) and {len(syn)} TCP SYN to {self.recorder.ip}:9"
        )
        return ok, detail

    # ---- service containers ---------------------------------------------------------------------------
    def start(
        self,
        label: str,
        cpus: float | None = None,
        read_only: bool | None = None,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
    ) -> Service:
        """A service container; ``command`` replaces the image's ENTRYPOINT and CMD, as a pod's
        ``command:`` does (``["python", "-m", "function"]``: no tini, the service is PID 1)."""
        assert self.recorder is not None
        flags = self.c.spec.flags(cpus=cpus, read_only=read_only, env=env)
        flags += ["--network", self.name, "--dns", self.recorder.ip]
        flags += ["--stop-timeout", str(math.ceil(self.c.spec.termination_grace))]
        if command:
            flags += ["--entrypoint", command[0]]
        name = f"textclf-ct-{self.docker.run_id}-{label}"
        container = self.docker.run(name, self.c.image, flags, command[1:] if command else None)
        container.refresh(self.name)
        service = Service(container, label)
        self.services.append(service)
        return service

    def remove(self, service: Service) -> None:
        service.kept_logs = service.container.logs()
        service.removed_at = time.time()
        self.docker.remove(service.container)

    async def wait_ready(self, service: Service, within: float | None = None) -> bool:
        """Polls /healthz and /readyz every 20 ms; records when the port first answered 200 and when
        /readyz did. Waits `within` seconds, by default the workers' start timeout and 10 s."""
        container, port = service.container, self.c.spec.port
        deadline = time.time() + (within if within is not None else self.c.setting("WORKER_START_TIMEOUT_SECONDS") + 10)
        while time.time() < deadline:
            for path in ("/healthz", "/readyz"):
                try:
                    answer = await fetch(container.ip, port, "GET", path, within=1.0)
                except (Cut, Refused):
                    continue
                if answer.status == 200:
                    at = answer.done - container.started_at
                    # NOTE: a 200 from /readyz says the port is open too: it may open between the
                    # two requests of one round, after /healthz was refused.
                    if math.isnan(service.healthz_at):
                        service.healthz_at = at
                    if path == "/readyz":
                        service.ready_at = at
                        return True
            if not container.alive():
                return False  # the container's process is gone: it exited before it was ready
            await asyncio.sleep(0.02)
        return False

    def sample_liveness(self, service: Service) -> None:
        """Samples the liveness probe's path once a second, with the probe's timeout, until `end_liveness`."""
        probe = self.c.spec.probes.get("livenessProbe")
        path, timeout = (probe.path, probe.timeout) if probe else ("/healthz", 1.0)

        async def sample() -> None:
            while True:
                began = time.time()
                try:
                    answer = await fetch(service.container.ip, self.c.spec.port, "GET", path, within=timeout)
                    service.liveness.append((began, answer.status == 200, time.time() - began))
                except (Cut, Refused):
                    service.liveness.append((began, False, time.time() - began))
                await asyncio.sleep(max(0.0, 1.0 - (time.time() - began)))

        service.sampler = asyncio.create_task(sample())

    async def end_liveness(self, service: Service) -> None:
        task, service.sampler = service.sampler, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})

    async def get(self, service: Service, path: str) -> Response:
        return await fetch(service.container.ip, self.c.spec.port, "GET", path)

    async def pool(self, service: Service) -> dict[str, float]:
        return metrics((await self.get(service, "/metrics")).body.decode())

    def sample_tmpfs(self, service: Service) -> None:
        for path in self.c.spec.tmpfs:
            with contextlib.suppress(OSError):
                where = f"/proc/{service.container.pid}/root{path}"
                stat = os.statvfs(where)
                service.tmpfs_used = max(service.tmpfs_used, (stat.f_blocks - stat.f_bfree) * stat.f_frsize)
                service.tmpfs_entries.update(f"{path}/{name}" for name in os.listdir(where))

    async def light_load_until(self, service: Service, age: float) -> list[Outcome]:
        """Four clients posting test texts until the container is `age` seconds old."""
        load = Load(service.container.ip, self.c.spec.port, self.short_bodies, clients=4)
        load.start()
        await asyncio.sleep(max(0.0, service.container.started_at + age - time.time()))
        return await load.stop()
