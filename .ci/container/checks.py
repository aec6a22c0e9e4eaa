"""The real container, run the way knative/service.yaml runs it: one PASS or FAIL line per check.

    python .ci/container/checks.py --image newsgroups-classifier:test --context .

Builds nothing: it runs containers from an image that .ci/container/run.sh built from the
Dockerfile, with the flags the manifest implies (securityContext, resources, env, the emptyDir
as a tmpfs, the port Knative injects), on an internal Docker network with no route out, and
judges them against the files of the build context (openapi.json, model/evaluation.json,
data/test.jsonl.gz, knative/service.yaml). Every container and the network are removed at the
end, also after a failure, Ctrl-C or SIGTERM. Exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import inspect
import itertools
import json
import math
import os
import re
import secrets
import signal
import subprocess
import sys
import tarfile
import time
import urllib.parse
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import containers
import egress
import httpload
from containers import Container, Docker, DockerError, RunSpec, docker
from httpload import Answer, Connection, Cut, Load, Outcome, Refused, Upload, fetch

HERE = Path(__file__).resolve().parent
EGRESS_WINDOW = 30.0  # seconds of start-up and load watched for DNS queries and connections
WORKER_CASES = ((1.0, 1), (0.5, 1), (1.5, 2), (2.0, 2))  # --cpus -> workers that WORKERS=0 must start
MEMORY_CLIENTS = 48
MEMORY_ROUNDS = 3
KILL_CLIENTS = 16
STOP_CLIENTS = 16
STOP_UPLOADS = 8
#: Stands in for the Secret that knative/service.yaml takes FEEDBACK_KEY from.
FEEDBACK_KEY = "the container test's feedback key, 32 bytes or more"
SBOM_PATH = "/app/sbom.cdx.json"  # the Dockerfile's SBOM of /opt/venv (knative/DEPLOY.md)
RUNTIME_LOCK = Path("requirements") / "runtime.lock"  # what the Dockerfile installs into /opt/venv
# Run inside the image by its own interpreter (the service's): the distributions importlib.metadata
# finds in the environment's site-packages and in the base's, the SBOM file, any file or folder of
# the image that is part of the SBOM tool (its command, its packages, their metadata), and the
# SBOMs wheels carry in their own metadata (PEP 770's .dist-info/sboms/, e.g. orjson's).
SBOM_PROBE = r"""
import importlib.metadata, json, os, re, sys, sysconfig
TOOL = re.compile(r"cyclonedx(-py|_py)?|cyclonedx_(bom|python_lib)-.*[.]dist-info", re.IGNORECASE)
def listed(paths):
    return sorted([d.metadata["Name"], d.version] for d in importlib.metadata.distributions(path=paths))
def site(paths):
    return sorted({paths["purelib"], paths["platlib"]})
venv = site(sysconfig.get_paths())
base = site(sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix}))
tool, wheel_sboms = [], []
for root, dirs, files in os.walk("/"):
    if root == "/":
        dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
    tool += [os.path.join(root, n) for n in dirs + files if TOOL.fullmatch(n)]
    if root.endswith(".dist-info/sboms"):
        wheel_sboms += [os.path.join(os.path.basename(os.path.dirname(root)), "sboms", n) for n in files]
with open(sys.argv[1], encoding="utf-8") as file:
    sbom = json.load(file)
print(json.dumps({"prefix": sys.prefix, "venv": venv, "installed": listed(venv), "base": base,
                  "base_installed": listed(base), "sbom": sbom, "tool": tool, "wheel_sboms": sorted(wheel_sboms)}))
"""


# ---- the report ----------------------------------------------------------------------------------
class Report:
    def __init__(self) -> None:
        self.passed: list[str] = []
        self.failed: list[str] = []

    def result(self, name: str, ok: bool, detail: str) -> None:
        (self.passed if ok else self.failed).append(name)
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)

    @staticmethod
    def note(text: str) -> None:
        print(f"....  {text}", flush=True)

    def summary(self) -> None:
        if self.failed:
            print(f"failed: {', '.join(self.failed)}")
        print(f"container-test: {len(self.passed)} passed, {len(self.failed)} failed", flush=True)


def seconds(value: float) -> str:
    return f"{value:.2f} s"


def mib(value: float) -> str:
    return f"{value / 2**20:.0f} MiB"


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


def metrics(text: str) -> dict[str, float]:
    """Unlabelled Prometheus samples by name."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, _, value = line.partition(" ")
            with contextlib.suppress(ValueError):
                values[name] = float(value.split()[0])
    return values


# ---- the run ------------------------------------------------------------------------------------------
@dataclass
class Service:
    """A service container and what was measured on it."""

    container: Container
    label: str
    healthz_at: float = math.nan  # seconds after the container started
    ready_at: float = math.nan
    liveness: list[tuple[float, bool, float]] = field(default_factory=list)  # (time, ok, latency)
    removed_at: float = math.inf
    tmpfs_used: int = 0
    tmpfs_entries: set[str] = field(default_factory=set)
    kept_logs: tuple[str, str] | None = None

    def logs(self) -> tuple[str, str]:
        return self.kept_logs if self.kept_logs is not None else self.container.logs()


class Run:
    def __init__(self, context: Context, docker_: Docker, report: Report) -> None:
        self.c = context
        self.docker = docker_
        self.report = report
        self.services: list[Service] = []
        self.network = f"textclf-ct-{docker_.run_id}"
        self.capture: egress.BridgeCapture | None = None
        self.recorder: Container | None = None
        self.subnet = ""
        self.bridge = ""
        self.short_bodies = [json.dumps({"text": text}).encode() for text in context.texts if len(text) < 8000]

    # ---- set-up: the network, the detectors, proof that they detect ------------------------------
    def setup_network(self) -> None:
        info = self.docker.network(self.network)
        self.subnet = info["IPAM"]["Config"][0]["Subnet"]
        self.bridge = info["Options"].get("com.docker.network.bridge.name") or f"br-{info['Id'][:12]}"
        self.capture = egress.BridgeCapture(self.bridge)
        recorder = HERE / "dns_recorder.py"
        flags = [
            "--network", self.network, "--read-only", "--user", "10001:10001", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "--volume", f"{recorder}:/dns_recorder.py:ro",
        ]  # fmt: skip
        self.recorder = self.docker.run(
            f"textclf-ct-{self.docker.run_id}-dns", self.c.base, flags, ["python3", "-u", "/dns_recorder.py"]
        )
        self.recorder.refresh(self.network)
        deadline = time.monotonic() + 10
        while '"listening"' not in self.recorder.logs()[0]:
            if time.monotonic() > deadline or not self.recorder.state()["Running"]:
                raise DockerError(f"the DNS recorder did not start: {self.recorder.logs()}")
            time.sleep(0.05)

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
        flags = ["--network", self.network, "--dns", self.recorder.ip, "--user", "10001:10001", "--cap-drop", "ALL"]
        canary = self.docker.run(
            f"textclf-ct-{self.docker.run_id}-canary", self.c.base, flags, ["python3", "-c", script]
        )
        canary.refresh(self.network)
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
        self, label: str, cpus: float | None = None, read_only: bool | None = None, env: dict[str, str] | None = None
    ) -> Service:
        assert self.recorder is not None
        flags = self.c.spec.flags(cpus=cpus, read_only=read_only, env=env)
        flags += ["--network", self.network, "--dns", self.recorder.ip]
        flags += ["--stop-timeout", str(math.ceil(self.c.spec.termination_grace))]
        container = self.docker.run(f"textclf-ct-{self.docker.run_id}-{label}", self.c.image, flags)
        container.refresh(self.network)
        service = Service(container, label)
        self.services.append(service)
        return service

    def remove(self, service: Service) -> None:
        service.kept_logs = service.container.logs()
        service.removed_at = time.time()
        self.docker.remove(service.container)

    async def wait_ready(self, service: Service, within: float) -> bool:
        """Polls /healthz and /readyz every 20 ms; records when each first answered 200."""
        container, port = service.container, self.c.spec.port
        deadline = time.time() + within
        while time.time() < deadline:
            for path in ("/healthz", "/readyz"):
                try:
                    answer = await fetch(container.ip, port, "GET", path, within=1.0)
                except (Cut, Refused):
                    continue
                if answer.status == 200:
                    at = answer.done - container.started_at
                    if path == "/healthz" and math.isnan(service.healthz_at):
                        service.healthz_at = at
                    if path == "/readyz":
                        service.ready_at = at
                        return True
            if not container.alive():
                return False  # the container's process is gone: it exited before it was ready
            await asyncio.sleep(0.02)
        return False

    @contextlib.asynccontextmanager
    async def liveness(self, service: Service) -> AsyncIterator[None]:
        """Samples the liveness probe's path once a second, with the probe's timeout, meanwhile."""
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

        task = asyncio.create_task(sample())
        try:
            yield
        finally:
            task.cancel()
            await asyncio.wait({task})

    async def get(self, service: Service, path: str) -> Answer:
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

    # ---- the checks --------------------------------------------------------------------------------------
    def check_sbom(self) -> None:
        """The SBOM in the image against the environment it describes and the lock it was installed from."""
        name = f"textclf-ct-{self.docker.run_id}-sbom"
        self.docker.containers.append(name)
        output = docker(
            "run", "--rm", "--name", name, "--label", f"{containers.LABEL}={self.docker.run_id}", "--network", "none",
            self.c.image, "python", "-c", SBOM_PROBE, SBOM_PATH,
        )  # fmt: skip
        self.docker.containers.remove(name)
        probe = json.loads(output)
        installed = {normalized(n): v for n, v in probe["installed"]}
        locked = lock_pins(self.c.root / RUNTIME_LOCK)
        listed, problems = sbom_components(probe["sbom"])
        if probe["prefix"] != "/opt/venv":
            problems.append(f"the image's python runs in {probe['prefix']}, not /opt/venv")
        problems += differences("the SBOM", listed, "/opt/venv", installed)
        problems += differences("/opt/venv", installed, str(RUNTIME_LOCK), locked)
        if probe["tool"]:
            problems.append(f"the SBOM tool is in the image: {', '.join(probe['tool'][:5])}")
        base = ", ".join(f"{n} {v}" for n, v in probe["base_installed"]) or "nothing"
        sbom = probe["sbom"]
        self.report.result(
            "sbom",
            not problems,
            f"{SBOM_PATH}: {sbom.get('bomFormat')} {sbom.get('specVersion')}, {len(listed)} components; "
            f"{len(installed)} distributions in {', '.join(probe['venv'])} (importlib.metadata in the image); "
            f"{len(locked)} pins in {RUNTIME_LOCK}"
            + (
                f"; {'; '.join(problems)}"
                if problems
                else ": the same names at the same versions; nothing of the SBOM tool in the image (it stayed "
                "in the builder)"
            )
            + f"; outside the SBOM, the base's own {', '.join(probe['base'])}: {base}"
            + f"; SBOMs inside the wheels' metadata (PEP 770, not merged): {', '.join(probe['wheel_sboms']) or 'none'}",
        )

    def check_image_size(self) -> None:
        listed = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}\t{{.Size}}")
        sizes = dict(line.split("\t", 1) for line in listed.splitlines() if "\t" in line)
        image_bytes = int(docker("image", "inspect", "-f", "{{.Size}}", self.c.image).strip())
        base_bytes = int(docker("image", "inspect", "-f", "{{.Size}}", self.c.base).strip())
        base_layers = int(docker("image", "inspect", "-f", "{{len .RootFS.Layers}}", self.c.base).strip())
        layers = compressed_layers(self.c.image)
        pulled, base_pulled = sum(layers), sum(layers[:base_layers])
        ok = self.c.image in sizes and len(layers) > base_layers
        self.report.result(
            "image-size",
            ok,
            f"{self.c.image} is {sizes.get(self.c.image, '?')} in `docker image ls` ({image_bytes / 1e6:.1f} MB); "
            f"its base {self.c.base} (the local stand-in) {sizes.get(self.c.base, '?')}, so the Dockerfile's "
            f"layers add {(image_bytes - base_bytes) / 1e6:.1f} MB; compressed as a registry stores its "
            f"{len(layers)} layers (gzip -6 each): {pulled / 1e6:.1f} MB to pull, {(pulled - base_pulled) / 1e6:.1f} "
            f"MB of them the Dockerfile's",
        )

    async def check_ready(self, service: Service) -> bool:
        timeout = self.c.setting("WORKER_START_TIMEOUT_SECONDS") + 10
        ok = await self.wait_ready(service, timeout)
        if not ok:
            _, stderr = service.container.logs()
            self.report.result(
                "ready", False, f"/readyz never answered 200 within {timeout:g} s; stderr: {stderr[-800:]!r}"
            )
            return False
        within = service.ready_at <= self.c.ready_documented
        self.report.result(
            "ready",
            within,
            f"/readyz 200 {seconds(service.ready_at)} after the container started (documented: about "
            f"{self.c.ready_documented:g} s, {self.c.ready_source}); "
            f"/healthz first 200 at {seconds(service.healthz_at)}",
        )
        return True

    def check_security(self, service: Service) -> None:
        spec, container = self.c.spec, service.container
        host = container.inspect()["HostConfig"]
        problems = []
        expected = {
            "ReadonlyRootfs": spec.read_only,
            "CapDrop": spec.cap_drop or None,
            "User": spec.user,
            "NanoCpus": int(spec.cpus * 1e9),
            "Memory": spec.memory,
        }
        actual = {**host, "User": container.inspect()["Config"]["User"]}
        for key, value in expected.items():
            if actual.get(key) != value:
                problems.append(f"{key} {actual.get(key)!r} != {value!r}")
        if spec.no_new_privileges and "no-new-privileges" not in (host.get("SecurityOpt") or []):
            problems.append("no-new-privileges not set")
        processes = container.processes()
        pids = [pid for group in processes.values() for pid in group]
        uid, _, gid = spec.user.partition(":")
        for pid in pids:
            status = containers.proc_status(pid)
            if set(status["Uid"].split()) != {uid} or (gid and set(status["Gid"].split()) != {gid}):
                problems.append(f"pid {pid}: uid {status['Uid']} gid {status['Gid']}")
            if int(status["CapEff"], 16) or int(status["CapPrm"], 16) or int(status["CapBnd"], 16):
                problems.append(f"pid {pid}: capabilities {status['CapEff']}/{status['CapBnd']}")
            if spec.no_new_privileges and status.get("NoNewPrivs") != "1":
                problems.append(f"pid {pid}: NoNewPrivs {status.get('NoNewPrivs')}")
            if spec.seccomp == "RuntimeDefault" and status.get("Seccomp") != "2":
                problems.append(f"pid {pid}: Seccomp {status.get('Seccomp')} (2 = filtered)")
        mounts = {}
        for line in Path(f"/proc/{container.pid}/mountinfo").read_text().splitlines():
            fields = line.split()
            separator = fields.index("-")
            mounts[fields[4]] = (fields[5], fields[separator + 1], fields[separator + 3])
        root_options = mounts.get("/", ("", "", ""))[0].split(",")
        if spec.read_only and "ro" not in root_options:
            problems.append(f"/ is mounted {root_options}")
        for path, size in spec.tmpfs.items():
            kind, options = mounts.get(path, ("", "?", ""))[1], mounts.get(path, ("", "", ""))[2]
            if kind != "tmpfs" or f"size={size // 1024}k" not in options:
                problems.append(f"{path}: {kind} {options}")
        image_user = docker("image", "inspect", "-f", "{{.Config.User}}", self.c.image).strip()
        numeric = re.fullmatch(r"(\d+)(:\d+)?", image_user)
        if spec.run_as_non_root and (numeric is None or numeric.group(1) == "0"):
            problems.append(f"runAsNonRoot needs a numeric non-root USER in the image, it has {image_user!r}")
        self.sample_tmpfs(service)
        self.report.result(
            "security-context",
            not problems,
            "; ".join(problems)
            if problems
            else (
                f"{len(pids)} processes (server, forkserver, resource tracker, {len(processes['workers'])} workers) "
                f"run as {spec.user} with no capabilities, NoNewPrivs 1, seccomp filtered (RuntimeDefault), "
                f"on a read-only root; image USER {image_user}; flags from knative/service.yaml: "
                f"{' '.join(spec.flags())}"
            ),
        )

    async def check_endpoints(self, service: Service) -> None:
        ip, port = service.container.ip, self.c.spec.port
        sample = self.c.texts[0]
        results: list[str] = []
        problems: list[str] = []

        async def expect(
            method: str, path: str, body: Any = None, check: Callable[[Answer], bool] | None = None
        ) -> None:
            data = json.dumps(body).encode() if body is not None else None
            try:
                answer = await fetch(ip, port, method, path, data)
            except (Cut, Refused) as error:
                problems.append(f"{method} {path}: {error}")
                return
            good = answer.status == 200 and (check is None or check(answer))
            (results if good else problems).append(f"{method} {path} {answer.status}")
            if not good:
                problems[-1] += f" {answer.body[:160]!r}"

        def labelled(answer: Answer) -> bool:
            return answer.json().get("label") in self.c.model_labels

        def scored(answer: Answer) -> bool:
            value = answer.json()
            return value.get("label") in self.c.model_labels and abs(sum(value["scores"].values()) - 1) < 1e-3

        def batch(answer: Answer) -> bool:
            return [label in self.c.model_labels for label in answer.json().get("labels", [])] == [True, True]

        def inferred(answer: Answer) -> bool:
            outputs = {o["name"]: o for o in answer.json().get("outputs", [])}
            return [label in self.c.model_labels for label in outputs["label"]["data"]] == [True, True]

        tensor = {"name": "text", "datatype": "BYTES", "shape": [2], "data": [sample, self.c.texts[1]]}
        paths = self.c.openapi.get("paths", {})
        for template, operations in paths.items():
            path = template.replace("{name}", self.c.model["name"]).replace("{version}", self.c.model["version"])
            for method, operation in operations.items():
                method = method.upper()
                with_scores = any(p.get("name") == "scores" for p in operation.get("parameters", []))
                if method == "GET":
                    await expect("GET", path)
                elif path.endswith("/infer"):
                    await expect("POST", path, {"inputs": [tensor]}, inferred)
                elif path == "/feedback":
                    await self.feed_back(ip, port, sample, expect)
                elif path.endswith("/predictions"):
                    await expect("POST", path, {"texts": [sample, self.c.texts[1]]}, batch)
                    if with_scores:
                        await expect("POST", path + "?scores=true", {"texts": [sample, self.c.texts[1]]}, batch)
                else:
                    await expect("POST", path, {"text": sample}, labelled)
                    if with_scores:
                        await expect("POST", path + "?scores=true", {"text": sample}, scored)
        await expect("GET", "/openapi.json")
        await expect("GET", "/openapi3.json")
        docs = None
        try:
            docs = await fetch(ip, port, "GET", "/docs")
        except (Cut, Refused) as error:
            problems.append(f"GET /docs: {error}")
        if docs is not None:
            (results if docs.status == 200 else problems).append(f"GET /docs {docs.status}")
            links = re.findall(r'(?:src|href|data-url)="([^"#?:]+)"', docs.body.decode(errors="replace"))
            assets = sorted({urllib.parse.urljoin("/docs", link) for link in links})
            for asset in assets:
                await expect("GET", asset)
        self.report.result(
            "endpoints",
            not problems,
            "; ".join(problems) if problems else f"{len(results)} answered 200: {', '.join(results)}",
        )

    async def feed_back(self, ip: str, port: int, text: str, expect: Callable[..., Awaitable[None]]) -> None:
        """A prediction that names its model and revision, then feedback on its id."""
        answer = await fetch(ip, port, "POST", "/prediction", json.dumps({"text": text}).encode())
        served = {name: answer.headers.get(name.lower()) for name in ("X-Model-Version", "X-Revision")}
        wanted = {"X-Model-Version": self.c.model["version"], "X-Revision": self.c.spec.env.get("K_REVISION")}
        prediction = answer.json()

        def counted(feedback: Answer) -> bool:
            return served == wanted and feedback.json() == {
                "model_version": self.c.model["version"],
                "predicted": prediction["label"],
                "actual": "space",
            }

        await expect("POST", "/feedback", {"prediction_id": prediction.get("prediction_id"), "label": "space"}, counted)

    async def check_openapi(self, service: Service) -> None:
        answer = await self.get(service, "/openapi.json")
        committed = (self.c.root / "openapi.json").read_bytes()
        served = answer.json() if answer.status == 200 else None
        same = served == self.c.openapi
        self.report.result(
            "openapi",
            same,
            f"served /openapi.json {'equals' if same else 'differs from'} the committed openapi.json "
            f"({'byte for byte' if answer.body.strip() == committed.strip() else 'as JSON; bytes differ'}; "
            f"{len(answer.body)} bytes served)"
            if served is not None
            else f"GET /openapi.json answered {answer.status}",
        )

    async def check_accuracy(self, service: Service) -> None:
        ip, port = service.container.ip, self.c.spec.port
        texts, gold = self.c.texts, self.c.labels
        singles: list[str] = [""] * len(texts)
        queue = iter(range(len(texts)))

        async def client() -> None:
            connection = Connection(ip, port)
            try:
                for index in queue:
                    answer = await connection.request(
                        "POST", "/prediction", json.dumps({"text": texts[index]}).encode()
                    )
                    singles[index] = answer.json().get("label", f"<{answer.status}>")
            finally:
                await connection.close()

        began = time.time()
        await asyncio.gather(*(client() for _ in range(8)))
        single_time = time.time() - began
        # POST /predictions: batches within MAX_BATCH_ITEMS texts and MAX_BODY_BYTES.
        limit_items, limit_bytes = int(self.c.setting("MAX_BATCH_ITEMS")), int(self.c.setting("MAX_BODY_BYTES"))
        batches: list[list[int]] = [[]]
        size = 16
        for index, text in enumerate(texts):
            cost = len(json.dumps(text).encode()) + 2
            if len(batches[-1]) >= limit_items or size + cost > limit_bytes:
                batches.append([])
                size = 16
            batches[-1].append(index)
            size += cost
        batched: list[str] = [""] * len(texts)
        batch_queue = iter(batches)

        async def batch_client() -> None:
            connection = Connection(ip, port, timeout=60)
            try:
                for batch in batch_queue:
                    body = json.dumps({"texts": [texts[i] for i in batch]}).encode()
                    answer = await connection.request("POST", "/predictions", body)
                    labels = answer.json().get("labels", [])
                    for position, index in enumerate(batch):
                        batched[index] = labels[position] if position < len(labels) else f"<{answer.status}>"
            finally:
                await connection.close()

        await asyncio.gather(*(batch_client() for _ in range(2)))
        n = len(texts)
        correct_single = sum(a == b for a, b in zip(singles, gold, strict=True))
        correct_batch = sum(a == b for a, b in zip(batched, gold, strict=True))
        expected, expected_n = self.c.served["accuracy"], self.c.served.get("n", n)
        disagree = sum(a != b for a, b in zip(singles, batched, strict=True))
        ok = n == expected_n and correct_single / n == expected and correct_batch / n == expected and not disagree
        self.report.result(
            "accuracy",
            ok,
            f"{n} test texts: POST /prediction {correct_single}/{n} = {correct_single / n!r} ({seconds(single_time)}), "
            f"POST /predictions in {len(batches)} batches {correct_batch}/{n} = {correct_batch / n!r}, "
            f"{disagree} labels differ between the two; "
            f"model/evaluation.json served.accuracy {expected!r} (n {expected_n})",
        )

    async def light_load_until(self, service: Service, age: float) -> list[Outcome]:
        """Four clients posting test texts until the container is `age` seconds old."""
        load = Load(service.container.ip, self.c.spec.port, self.short_bodies, clients=4)
        load.start()
        await asyncio.sleep(max(0.0, service.container.started_at + age - time.time()))
        return await load.stop()

    async def check_worker_kill(self, service: Service) -> bool:
        """Returns whether /readyz turned 503 while the worker was replaced."""
        ip, port = service.container.ip, self.c.spec.port
        before = await self.pool(service)
        workers = service.container.processes()["workers"]
        batch_max = int(self.c.setting("BATCH_MAX_SIZE"))
        limit = self.c.ready_documented
        load = Load(ip, port, self.short_bodies, clients=KILL_CLIENTS)
        load.start()
        await asyncio.sleep(1.5)
        victim = workers[0]
        killed = time.time()
        os.kill(victim, signal.SIGKILL)
        unready_at = back_at = math.nan
        deadline = killed + self.c.setting("WORKER_START_TIMEOUT_SECONDS") + 5
        while time.time() < deadline:
            with contextlib.suppress(Cut, Refused):
                answer = await fetch(ip, port, "GET", "/readyz", within=2.0)
                if answer.status == 503 and math.isnan(unready_at):
                    unready_at = answer.done - killed
                if answer.status == 200 and not math.isnan(unready_at):
                    back_at = answer.done - killed
                    break
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.0)
        outcomes = await load.stop()
        after = await self.pool(service)
        now = service.container.processes()["workers"]
        self.sample_tmpfs(service)
        failures = [o for o in outcomes if o.answer is None]
        unavailable = [o for o in outcomes if o.answer is not None and o.answer.status == 503]
        others = [o for o in outcomes if o.answer is not None and o.answer.status not in (200, 503)]
        # Held by the worker: sent before the service could know it was dead (the first /readyz 503
        # says it knew; a request sent the same millisecond as the SIGKILL can still reach the dying
        # worker) and still unanswered at the kill. Anything sent later must not fail.
        noticed = killed + (unready_at if not math.isnan(unready_at) else 0.0)
        not_held = [o for o in unavailable if not (o.started < noticed and o.ended > killed)]
        after_kill = [o for o in unavailable if o.started >= killed]
        wrong_error = [o for o in unavailable if o.answer is not None and o.answer.error != "model_unavailable"]
        restarts = after.get("textclf_pool_worker_restarts_total", math.nan) - before.get(
            "textclf_pool_worker_restarts_total", math.nan
        )
        configured = after.get("textclf_pool_workers", math.nan)
        problems = []
        if math.isnan(back_at):
            problems.append("readiness did not return" if not math.isnan(unready_at) else "/readyz never turned 503")
        elif back_at > limit:
            problems.append(f"readiness took {seconds(back_at)} to return, more than a cold start's {limit:g} s")
        if victim in now or len(now) != configured:
            problems.append(f"workers now {now} (killed {victim}, configured {configured:g})")
        if restarts != 1 or after.get("textclf_pool_workers_alive") != configured:
            problems.append(f"restarts +{restarts:g}, alive {after.get('textclf_pool_workers_alive')}")
        if failures:
            problems.append(f"{len(failures)} without an answer, e.g. {failures[0].failure}")
        if others:
            problems.append(f"{len(others)} answered otherwise, e.g. {example(others[0])}")
        if not_held:
            timing = ", ".join(
                f"sent {o.started - killed:+.3f} s, answered {o.ended - killed:+.3f} s" for o in not_held[:3]
            )
            problems.append(
                f"{len(not_held)} of the 503s were sent after the service knew the worker was dead ({timing})"
            )
        if wrong_error:
            problems.append(f"{len(wrong_error)} 503s were not model_unavailable")
        if len(unavailable) > batch_max:
            problems.append(f"{len(unavailable)} 503s, more than one batch (BATCH_MAX_SIZE {batch_max})")
        self.report.result(
            "worker-kill",
            not problems,
            f"SIGKILL to worker pid {victim} under {KILL_CLIENTS} clients: /readyz 503 after "
            f"{seconds(unready_at)}, 200 again {seconds(back_at)} after the kill (limit {limit:g} s, a cold start); "
            f"textclf_pool_worker_restarts_total +{restarts:g}, workers {workers} -> {now}; "
            f"{len(outcomes)} requests: {httpload.statuses(outcomes)}; {len(unavailable) - len(not_held)} of the "
            f"{len(unavailable)} 503s held by the dead worker (at most {batch_max}, BATCH_MAX_SIZE; "
            f"{len(after_kill)} of them sent in the {seconds(noticed - killed)} between the SIGKILL and /readyz 503)"
            + (f"; {'; '.join(problems)}" if problems else ""),
        )
        return not math.isnan(unready_at)

    async def check_stop(self, service: Service) -> None:
        ip, port = service.container.ip, self.c.spec.port
        grace = self.c.setting("SHUTDOWN_GRACE_SECONDS")
        limit = grace / 2
        stop_timeout = math.ceil(self.c.spec.termination_grace)
        load = Load(ip, port, self.short_bodies, clients=STOP_CLIENTS)
        load.start()
        text = " ".join(self.c.texts)[: 512 * 1024]
        body = json.dumps({"text": text}).encode()
        plan = Upload(first=64 * 1024, chunk=16 * 1024, pause=0.1)  # about 3 s per body

        async def upload() -> Outcome:
            outcome = Outcome(started=time.time())
            connection = Connection(ip, port, timeout=stop_timeout + 10)
            try:
                outcome.answer = await connection.request("POST", "/prediction", body, upload=plan)
            except (Cut, Refused) as error:
                outcome.failure = f"{'cut' if isinstance(error, Cut) else 'refused'}: {error}"
            finally:
                outcome.ended = time.time()
                await connection.close()
            return outcome

        await asyncio.sleep(1.0)
        uploads = [asyncio.create_task(upload()) for _ in range(STOP_UPLOADS)]
        await asyncio.sleep(0.6)
        stopped = time.time()
        stopping = asyncio.create_task(
            containers.adocker("stop", "-t", str(stop_timeout), service.container.name, within=stop_timeout + 30)
        )
        outcomes = await load.stop()
        uploaded = await asyncio.gather(*uploads)
        await stopping
        state = service.container.state()
        exited_after = containers.parse_time(state["FinishedAt"]) - stopped
        before = [o for o in outcomes if o.started < stopped]
        in_flight = [o for o in before if o.ended > stopped]
        unanswered = [o for o in before + uploaded if o.answer is None]
        bad = [o for o in before if o.answer is not None and o.answer.status not in (200, 503)]
        # An upload that ends within the grace is read to the end and answered.
        bad += [o for o in uploaded if o.answer is not None and o.answer.status != 200]
        still_uploading = sum(1 for o in uploaded if o.answer is None or o.answer.sent > stopped)
        problems = []
        if unanswered:
            ends = sorted(o.ended - stopped for o in unanswered)
            problems.append(
                f"{len(unanswered)} requests got no answer, cut {ends[0]:+.1f} to {ends[-1]:+.1f} s after SIGTERM, "
                f"e.g. {unanswered[0].failure}"
            )
        if bad:
            problems.append(f"{len(bad)} answered otherwise, e.g. {example(bad[0])}")
        if state["ExitCode"] != 0:
            problems.append(f"exit code {state['ExitCode']}")
        if exited_after > limit:
            problems.append(f"exited {seconds(exited_after)} after SIGTERM, over {limit:g} s")
        if still_uploading == 0:
            problems.append("no upload was still in progress at the stop: the check did not test what it should")
        self.report.result(
            "stop",
            not problems,
            f"docker stop -t {stop_timeout} (timeoutSeconds) under {STOP_CLIENTS} clients with {still_uploading} of "
            f"{STOP_UPLOADS} bodies still uploading: exit code {state['ExitCode']} {seconds(exited_after)} after "
            f"SIGTERM (limit {limit:g} s = SHUTDOWN_GRACE_SECONDS/2); no new requests after it (as Knative drains "
            f"first); {len(in_flight)} in flight: "
            f"{httpload.statuses(in_flight)}; uploads: {httpload.statuses(uploaded)}"
            + (f"; {'; '.join(problems)}" if problems else ""),
        )

    def check_diff(self, read_only: Service, writable: Service | None) -> None:
        changes = read_only.container.diff()
        writable_changes = writable.container.diff() if writable else []
        ok = not changes and not writable_changes and writable is not None
        self.report.result(
            "docker-diff",
            ok,
            f"read-only run (start, load, worker kill, stop): {len(changes)} changes {changes[:8]}; same run with a "
            f"writable root: {len(writable_changes)} changes {writable_changes[:8]}; tmpfs "
            + ", ".join(
                f"{path} used {read_only.tmpfs_used / 1024:.0f} KiB of {mib(size)}"
                for path, size in self.c.spec.tmpfs.items()
            )
            + f" (entries seen: {', '.join(sorted(read_only.tmpfs_entries)) or 'none'})",
        )

    async def writable_twin(self) -> Service | None:
        """The same run with a writable root: what the service would write if it could."""
        service = self.start("writable", read_only=False)
        if not await self.wait_ready(service, self.c.setting("WORKER_START_TIMEOUT_SECONDS") + 10):
            return None
        await self.check_endpoints_quietly(service)
        load = Load(service.container.ip, self.c.spec.port, self.short_bodies, clients=8)
        load.start()
        await asyncio.sleep(1.0)
        os.kill(service.container.processes()["workers"][0], signal.SIGKILL)
        await asyncio.sleep(2.0)
        await load.stop()
        await containers.adocker("stop", "-t", str(math.ceil(self.c.spec.termination_grace)), service.container.name)
        return service

    async def check_endpoints_quietly(self, service: Service) -> None:
        for path in ("/model", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
            with contextlib.suppress(Cut, Refused):
                await self.get(service, path)

    async def check_workers_auto(self) -> None:
        found = []
        problems = []
        for cpus, expected in WORKER_CASES:
            service = self.start(f"cpus{cpus:g}".replace(".", "_"), cpus=cpus, env={"WORKERS": "0"})
            try:
                if not await self.wait_ready(service, self.c.setting("WORKER_START_TIMEOUT_SECONDS") + 10):
                    problems.append(f"--cpus {cpus:g}: never ready")
                    continue
                pool = await self.pool(service)
                workers = len(service.container.processes()["workers"])
                configured = pool.get("textclf_pool_workers", math.nan)
                found.append(f"--cpus {cpus:g} -> {configured:g} (ready in {seconds(service.ready_at)})")
                if configured != expected or workers != expected:
                    problems.append(
                        f"--cpus {cpus:g}: {configured:g} configured, {workers} processes, expected {expected}"
                    )
            finally:
                self.remove(service)
        self.report.result(
            "workers-auto",
            not problems,
            f"WORKERS=0: {', '.join(found)}" + (f"; {'; '.join(problems)}" if problems else ""),
        )

    async def check_memory(self) -> Service:
        service = self.start("memory")
        limit = int(self.c.setting("MAX_BODY_BYTES"))
        if not await self.wait_ready(service, self.c.setting("WORKER_START_TIMEOUT_SECONDS") + 10):
            self.report.result("memory", False, "the container never became ready")
            return service
        cgroup = service.container.memory_cgroup()
        before = oom_kills(cgroup)
        body = body_of_size(self.c.texts, limit)
        ip, port = service.container.ip, self.c.spec.port
        outcomes: list[Outcome] = []

        async def client() -> None:
            connection = Connection(ip, port, timeout=120)
            try:
                for _ in range(MEMORY_ROUNDS):
                    outcome = Outcome(started=time.time())
                    outcomes.append(outcome)
                    try:
                        outcome.answer = await connection.request("POST", "/prediction", body)
                    except (Cut, Refused) as error:
                        outcome.failure = f"{'cut' if isinstance(error, Cut) else 'refused'}: {error}"
                    outcome.ended = time.time()
            finally:
                await connection.close()

        began = time.time()
        async with self.liveness(service):
            await asyncio.gather(*(client() for _ in range(MEMORY_CLIENTS)))
        took = time.time() - began
        after = oom_kills(cgroup)
        peak = peak_memory(cgroup)
        running = service.container.state()
        pool: dict[str, float] = {}
        with contextlib.suppress(Cut, Refused):
            pool = await self.pool(service)
        restarts = pool.get("textclf_pool_worker_restarts_total", math.nan)
        cut = [o for o in outcomes if o.answer is None]
        bad = [o for o in outcomes if o.answer is not None and o.answer.status not in (200, 503)]
        problems = []
        if after - before or running.get("OOMKilled"):
            problems.append(
                f"{after - before} processes OOM-killed (memory.oom_control), OOMKilled {running.get('OOMKilled')}"
            )
        if not running["Running"]:
            problems.append(f"the container exited ({running['ExitCode']})")
        if restarts:
            problems.append(f"textclf_pool_worker_restarts_total {restarts:g}")
        if cut:
            problems.append(f"{len(cut)} requests cut, e.g. {cut[0].failure}")
        if bad:
            problems.append(f"{len(bad)} answered otherwise, e.g. {example(bad[0])}")
        self.report.result(
            "memory",
            not problems,
            f"{MEMORY_CLIENTS} clients x {MEMORY_ROUNDS} bodies of {len(body)} bytes (MAX_BODY_BYTES) at --memory "
            f"{mib(self.c.spec.memory)} in {seconds(took)}: {httpload.statuses(outcomes)}; OOM kills {after - before}; "
            f"peak {mib(peak)} (cgroup); worker restarts {restarts:g}"
            + (f"; {'; '.join(problems)}" if problems else ""),
        )
        return service

    def check_json_logs(self) -> None:
        total = 0
        offenders: list[str] = []
        stdout_lines = 0
        for service in self.services:
            stdout, stderr = service.logs()
            stdout_lines += len(stdout.splitlines())
            for line in stderr.splitlines():
                total += 1
                try:
                    value = json.loads(line)
                except ValueError:
                    value = None
                if not isinstance(value, dict):
                    offenders.append(f"{service.label}: {line[:200]!r}")
        distinct = list(dict.fromkeys(o.split(": ", 1)[1] for o in offenders))
        self.report.result(
            "json-logs",
            not offenders,
            f"LOG_FORMAT={self.c.spec.env.get('LOG_FORMAT', '?')}: {total - len(offenders)} of {total} stderr lines of "
            f"{len(self.services)} containers are JSON objects ({stdout_lines} lines on stdout)"
            + (
                f"; {len(offenders)} are not, {len(distinct)} distinct, e.g. {'; '.join(distinct[:3])}"
                if offenders
                else ""
            ),
        )

    def check_egress(self, main: Service, canary_ok: bool, canary_detail: str) -> None:
        assert self.capture is not None
        by_ip: dict[str, list[Service]] = {}
        for service in self.services:
            by_ip.setdefault(service.container.ip, []).append(service)

        def owner(ip: str, t: float) -> Service | None:
            for service in by_ip.get(ip, []):
                if service.container.started_at - 1 <= t <= service.removed_at + 1:
                    return service
            return None

        def early(service: Service, t: float) -> bool:
            return service is main and t - main.container.started_at <= EGRESS_WINDOW

        queries: list[tuple[dict[str, Any], Service]] = []
        for query in self.dns_queries():
            if (sender := owner(query["src"], query["t"])) is not None:
                queries.append((query, sender))
        packets: list[tuple[egress.Packet, Service]] = []
        for packet in egress.outbound(self.capture.snapshot(), set(by_ip), self.c.spec.port):
            if (sender := owner(packet.src, packet.t)) is not None:
                packets.append((packet, sender))
        dns_packets = [(p, s) for p, s in packets if p.protocol == "udp" and p.dport == 53]
        other = [(p, s) for p, s in packets if not (p.protocol == "udp" and p.dport == 53)]
        first: dict[str, str] = {}
        for query, service in queries:
            key = f"DNS {query['qname']}"
            first.setdefault(
                key, f"{key} (first from {service.label} at +{query['t'] - service.container.started_at:.1f} s)"
            )
        for packet, service in other:
            key = f"{packet.protocol} to {packet.dst}:{packet.dport}"
            first.setdefault(
                key, f"{packet.describe()} (from {service.label} at +{packet.t - service.container.started_at:.1f} s)"
            )
        window = (
            f"{sum(early(s, q['t']) for q, s in queries)} DNS queries, {sum(early(s, p.t) for p, s in other)} other "
            f"outbound packets in the main container's first {EGRESS_WINDOW:g} s of start-up and load"
        )
        whole = (
            f"over all {len(self.services)} service containers: {len(queries)} queries recorded by the resolver, "
            f"{len(dns_packets)} DNS datagrams and {len(other)} other packets captured"
        )
        self.report.result(
            "no-egress",
            canary_ok and not queries and not packets,
            f"{window}; {whole}"
            + (f"; found: {'; '.join(first.values())}" if first else "")
            + f"; {self.no_route_out()}; detectors {'proven' if canary_ok else 'NOT proven'}: {canary_detail}",
        )

    def check_probes(self, main: Service, kill_seen: bool) -> None:
        probes = self.c.spec.probes
        problems = []
        parts = []
        startup = probes.get("startupProbe")
        if startup:
            parts.append(
                f"startupProbe {startup.path} allows {startup.budget:g} s ({startup.period:g} s x "
                f"{startup.failure_threshold}), port open after {seconds(main.healthz_at)}"
            )
            if not main.healthz_at < startup.budget:
                problems.append("the startup probe's budget is shorter than the measured start")
        readiness = probes.get("readinessProbe")
        if readiness:
            parts.append(
                f"readinessProbe {readiness.path}: 200 after {seconds(main.ready_at)}, 503 while a killed worker "
                f"was replaced: {kill_seen}"
            )
        liveness = probes.get("livenessProbe")
        if liveness:
            samples = [sample for service in self.services for sample in service.liveness]
            failed = [sample for sample in samples if not sample[1] or sample[2] > liveness.timeout]
            worst = max((sample[2] for sample in samples), default=math.nan)
            # The kubelet restarts the container after failure_threshold failed probes in a row,
            # period seconds apart: a stall that long (sampled here once a second) would kill it.
            fatal = (liveness.failure_threshold - 1) * (liveness.period or 10) + liveness.timeout
            stall = longest_failure(samples)
            parts.append(
                f"livenessProbe {liveness.path} (timeout {liveness.timeout:g} s, restart after {fatal:g} s failing): "
                f"{len(samples)} samples under load, slowest {seconds(worst)}, {len(failed)} over the timeout, "
                f"longest failing stretch {seconds(stall)}"
            )
            if stall >= fatal:
                problems.append(f"liveness failed for {seconds(stall)}: the kubelet would restart the container")
        for probe in probes.values():
            if not probe.path.startswith("/"):
                problems.append(f"{probe.kind} path {probe.path!r}")
        self.report.result("probes", not problems, "; ".join(parts + problems))


def compressed_layers(image: str) -> list[int]:
    """Each layer's size gzipped at level 6 (as `docker push` stores it), base first, from `docker save`."""
    process = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
    assert process.stdout is not None
    sizes: dict[str, int] = {}
    manifest: list[dict[str, Any]] = []
    with tarfile.open(fileobj=process.stdout, mode="r|") as archive:
        for member in archive:
            content = archive.extractfile(member) if member.isfile() else None
            if content is None:
                continue
            if member.name == "manifest.json":
                manifest = json.loads(content.read())
            elif member.name.endswith("layer.tar"):
                compressor, size = zlib.compressobj(6, zlib.DEFLATED, 31), 0
                while chunk := content.read(1 << 20):
                    size += len(compressor.compress(chunk))
                sizes[member.name] = size + len(compressor.flush())
    if process.wait() != 0 or not manifest:
        raise DockerError(f"docker save {image} failed")
    return [sizes[name] for name in manifest[0]["Layers"]]


def example(outcome: Outcome) -> str:
    if outcome.answer is None:
        return outcome.failure
    return f"{outcome.answer.status} {outcome.answer.body[:120]!r}"


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


def normalized(name: str) -> str:
    """A distribution name as PEP 503 compares them: prometheus_client is prometheus-client."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins(path: Path) -> dict[str, str]:
    """The `name==version` lines of a hashed lock (`make lock`), by normalized name."""
    pins = {}
    for line in path.read_text().splitlines():
        if match := re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line):
            pins[normalized(match[1])] = match[2]
    return pins


def sbom_components(sbom: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """A CycloneDX SBOM's components by normalized name -> version, and what is wrong with them."""
    problems: list[str] = []
    if sbom.get("bomFormat") != "CycloneDX":
        problems.append(f"bomFormat {sbom.get('bomFormat')!r}, not CycloneDX")
    listed: dict[str, str] = {}
    for component in sbom.get("components", []):
        name, version = normalized(str(component.get("name"))), str(component.get("version"))
        purl = re.fullmatch(r"pkg:pypi/([^@?#]+)@([^?#]+)(?:[?#].*)?", str(component.get("purl")))
        if purl is None or normalized(purl[1]) != name or purl[2] != version:
            problems.append(f"{name} {version}: purl {component.get('purl')!r}")
        if name in listed:
            problems.append(f"{name} listed twice ({listed[name]}, {version})")
        listed[name] = version
    if not listed:
        problems.append("no components")
    return listed, problems


def differences(name_a: str, a: dict[str, str], name_b: str, b: dict[str, str]) -> list[str]:
    """What one name -> version map has that the other lacks, and the versions they disagree on."""
    found = []
    for this, that, mine, theirs in ((name_a, name_b, a, b), (name_b, name_a, b, a)):
        if extra := sorted(set(mine) - set(theirs)):
            found.append(f"in {this}, not in {that}: {', '.join(f'{n} {mine[n]}' for n in extra)}")
    if changed := sorted(n for n in set(a) & set(b) if a[n] != b[n]):
        found.append(f"{name_a} / {name_b} versions differ: {', '.join(f'{n} {a[n]} / {b[n]}' for n in changed)}")
    return found


def longest_failure(samples: list[tuple[float, bool, float]]) -> float:
    longest, began = 0.0, None
    for t, ok, latency in sorted(samples):
        if ok:
            began = None
            continue
        began = t if began is None else began
        longest = max(longest, t + latency - began)
    return longest


def oom_kills(cgroup: Path) -> int:
    for name in ("memory.oom_control", "memory.events"):
        path = cgroup / name
        if path.exists():
            for line in path.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    raise DockerError(f"no oom_kill counter under {cgroup}")


def peak_memory(cgroup: Path) -> int:
    for name in ("memory.max_usage_in_bytes", "memory.peak"):
        path = cgroup / name
        if path.exists():
            return int(path.read_text().split()[0])
    return 0


CHECKS = (
    "sbom", "ready", "security-context", "endpoints", "openapi", "accuracy", "worker-kill", "stop",
    "docker-diff", "workers-auto", "memory", "json-logs", "no-egress", "probes", "image-size",
)  # fmt: skip


async def run_checks(run: Run, only: set[str]) -> None:
    """All the checks, in this order; `only` (for development) keeps some of them."""
    report, c = run.report, run.c

    async def check(name: str, call: Callable[[], Any]) -> Any:
        """Runs one check; one that breaks (a cut connection, a Docker error) fails, and the rest go on."""
        if only and name not in only:
            return None
        try:
            result = call()
            return await result if inspect.isawaitable(result) else result
        except Exception as error:
            report.result(name, False, f"the check could not complete: {type(error).__name__}: {error}")
            return None

    # First: what the image ships, read from the image itself (no network, no service started).
    await check("sbom", run.check_sbom)
    run.setup_network()
    canary_ok, canary_detail = run.canary()
    report.note(f"detectors: {canary_detail}")

    main = run.start("main")
    report.note(f"main container {main.container.ip}: docker run {' '.join(main.container.run_flags)} {c.image}")
    if not await run.check_ready(main):
        return
    async with run.liveness(main):
        await check("security-context", lambda: run.check_security(main))
        await check("endpoints", lambda: run.check_endpoints(main))
        await check("openapi", lambda: run.check_openapi(main))
        await check("accuracy", lambda: run.check_accuracy(main))
        await check("no-egress", lambda: run.light_load_until(main, EGRESS_WINDOW + 1))
        run.sample_tmpfs(main)
        kill_seen = bool(await check("worker-kill", lambda: run.check_worker_kill(main)))
    await check("stop", lambda: run.check_stop(main))

    async def diff() -> None:
        run.check_diff(main, await run.writable_twin())

    await check("docker-diff", diff)
    await check("workers-auto", run.check_workers_auto)

    async def memory() -> None:
        run.remove(await run.check_memory())

    await check("memory", memory)
    await check("json-logs", run.check_json_logs)
    await check("no-egress", lambda: run.check_egress(main, canary_ok, canary_detail))
    await check("probes", lambda: run.check_probes(main, kill_seen))
    # Last: compressing every layer keeps both cores busy for a while.
    await check("image-size", run.check_image_size)


class Interrupt:
    """SIGINT and SIGTERM: the first one stops the checks (and the cleanup runs); later ones wait."""

    seen = False

    @classmethod
    def handler(cls, signum: int, frame: object) -> None:
        if not cls.seen:
            cls.seen = True
            raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True, help="the image built from the Dockerfile")
    parser.add_argument("--context", type=Path, default=Path("."), help="the build context (openapi.json, model/, ...)")
    parser.add_argument("--base", required=True, help="the base image (the stand-in), for the helper containers")
    parser.add_argument("--only", default="", help=f"comma-separated checks to run (development): {', '.join(CHECKS)}")
    args = parser.parse_args()
    only = {name for name in args.only.split(",") if name}
    if only - set(CHECKS):
        parser.error(f"unknown checks: {', '.join(sorted(only - set(CHECKS)))}")
    if os.geteuid() != 0:
        print("FAIL setup: the checks read the containers' /proc and capture on their bridge: run as root")
        return 1
    # Set explicitly: a shell's background job starts with SIGINT ignored, and asyncio.run's own
    # SIGINT handling would only cancel the main task.
    signal.signal(signal.SIGINT, Interrupt.handler)
    signal.signal(signal.SIGTERM, Interrupt.handler)
    report = Report()
    docker_ = Docker(secrets.token_hex(3))
    run: Run | None = None
    began = time.time()
    try:
        leftovers = Docker.remove_leftovers()
        if leftovers:
            report.note(f"removed {len(leftovers)} containers/networks left by an interrupted run")
        context = load_context(args.context.resolve(), args.image, args.base, docker_)
        run = Run(context, docker_, report)
        asyncio.run(run_checks(run, only))
    except KeyboardInterrupt as signal_name:
        report.result("interrupted", False, f"{signal_name} before the checks finished; containers removed")
    except (DockerError, OSError, ValueError, KeyError) as error:
        report.result("harness", False, f"{type(error).__name__}: {error}")
    finally:
        Interrupt.seen = True
        with contextlib.suppress(KeyboardInterrupt):
            docker_.cleanup()
            if run is not None and run.capture is not None:
                run.capture.close()
    report.note(f"checks took {time.time() - began:.0f} s")
    report.summary()
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
