"""Docker, driven through its CLI, and the `docker run` that knative/service.yaml describes.

Every container and network made here carries the label LABEL=<run id>, so that the run removes
all of them at the end (also after a failure or Ctrl-C), and the next run removes any that a
killed run left behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import tarfile
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from bench.procs import children, cmdline

LABEL = "org.textclf.container-test"


class DockerError(Exception):
    pass


def docker(*args: str, check: bool = True, timeout: float = 120.0, stdin: bytes | None = None) -> str:
    """Runs `docker ARGS` and returns its stdout."""
    result = subprocess.run(["docker", *args], input=stdin, capture_output=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise DockerError(f"docker {shlex.join(args)[:300]}: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout.decode(errors="replace")


async def adocker(*args: str, check: bool = True, within: float = 120.0) -> str:
    """`docker ARGS` without blocking the event loop (the checks' clients keep running)."""
    process = await asyncio.create_subprocess_exec(
        "docker", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), within)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise DockerError(f"docker {shlex.join(args)[:300]}: no answer within {within:g} s") from None
    if check and process.returncode != 0:
        raise DockerError(f"docker {shlex.join(args)[:300]}: {stderr.decode(errors='replace').strip()}")
    return stdout.decode(errors="replace")


def parse_time(value: str) -> float:
    """Docker's RFC 3339 timestamps (nanoseconds, Z) as epoch seconds."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", value)
    if match is None:
        raise ValueError(f"not a Docker timestamp: {value!r}")
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    whole = datetime.fromisoformat(match.group(1) + zone).timestamp()
    return whole + float("0." + (match.group(2) or "0"))


def quantity(value: str | int | float) -> float:
    """A Kubernetes quantity ("2", "500m", "1Gi", "16Mi") as a number (CPUs or bytes)."""
    text = str(value)
    suffixes = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    for suffix in sorted(suffixes, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * suffixes[suffix]
    return float(text)


@dataclass(frozen=True)
class Probe:
    kind: str  # startupProbe, readinessProbe, livenessProbe
    path: str
    initial_delay: float
    period: float | None  # None: not set (Knative probes readiness aggressively until ready)
    timeout: float
    failure_threshold: int

    @property
    def budget(self) -> float:
        """Seconds of failures the kubelet tolerates before acting (restart, or not ready)."""
        return self.initial_delay + (self.period or 10.0) * self.failure_threshold


@dataclass
class RunSpec:
    """What the Knative Service gives its container, as `docker run` flags."""

    user: str
    read_only: bool
    cap_drop: list[str]
    cap_add: list[str]
    no_new_privileges: bool
    seccomp: str
    run_as_non_root: bool
    cpus: float
    memory: int
    env: dict[str, str]
    tmpfs: dict[str, int]  # mount path -> size in bytes
    port: int
    probes: dict[str, Probe]
    termination_grace: float  # Knative: the revision's timeoutSeconds
    container_concurrency: int

    @classmethod
    def from_manifest(cls, path: Path, secrets: Mapping[str, str]) -> RunSpec:
        """How ``path`` (a Knative Service) runs its container; ``secrets`` stands in for the Secrets
        its env names (by variable), and Knative's runtime contract adds ``K_REVISION`` and ``PORT``."""
        service = yaml.safe_load(path.read_text())
        template = service["spec"]["template"]
        spec = template["spec"]
        (container,) = spec["containers"]
        security = container.get("securityContext", {})
        limits = container.get("resources", {}).get("limits", {})
        ports = container.get("ports", [])
        port = int(ports[0]["containerPort"]) if ports else 8080
        env = {}
        for item in container.get("env", []):
            secret = item.get("valueFrom", {}).get("secretKeyRef")
            if "value" in item:
                env[item["name"]] = str(item["value"])
            elif secret is not None and item["name"] in secrets:
                env[item["name"]] = secrets[item["name"]]
            elif secret is None or not secret.get("optional", False):
                raise ValueError(f"env {item['name']}: neither a literal value nor a Secret given a stand-in")
        # Knative sets PORT to the container port, and K_REVISION to the revision's name.
        env["PORT"] = str(port)
        if "name" in template.get("metadata", {}):
            env["K_REVISION"] = template["metadata"]["name"]
        volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
        tmpfs = {}
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            empty_dir = volume.get("emptyDir")
            if empty_dir is None or empty_dir.get("medium") != "Memory":
                raise ValueError(f"volume {mount['name']}: only emptyDir with medium Memory maps to --tmpfs")
            tmpfs[mount["mountPath"]] = int(quantity(empty_dir.get("sizeLimit", "64Mi")))
        probes = {}
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = container.get(kind)
            if probe is None:
                continue
            probes[kind] = Probe(
                kind=kind,
                path=probe["httpGet"]["path"],
                initial_delay=float(probe.get("initialDelaySeconds", 0)),
                period=float(probe["periodSeconds"]) if "periodSeconds" in probe else None,
                timeout=float(probe.get("timeoutSeconds", 1)),
                failure_threshold=int(probe.get("failureThreshold", 3)),
            )
        capabilities = security.get("capabilities", {})
        user = str(security["runAsUser"]) if "runAsUser" in security else ""
        if user and "runAsGroup" in security:
            user += f":{security['runAsGroup']}"
        return cls(
            user=user,
            read_only=bool(security.get("readOnlyRootFilesystem", False)),
            cap_drop=list(capabilities.get("drop", [])),
            cap_add=list(capabilities.get("add", [])),
            no_new_privileges=security.get("allowPrivilegeEscalation") is False,
            seccomp=security.get("seccompProfile", {}).get("type", "RuntimeDefault"),
            run_as_non_root=bool(security.get("runAsNonRoot", False)),
            cpus=quantity(limits["cpu"]) if "cpu" in limits else 0.0,
            memory=int(quantity(limits["memory"])) if "memory" in limits else 0,
            env=env,
            tmpfs=tmpfs,
            port=port,
            probes=probes,
            termination_grace=float(spec.get("timeoutSeconds", 300)),
            container_concurrency=int(spec.get("containerConcurrency", 0)),
        )

    def flags(
        self, cpus: float | None = None, read_only: bool | None = None, env: dict[str, str] | None = None
    ) -> list[str]:
        """The `docker run` flags; cpus, read_only and env override or extend the manifest's."""
        flags: list[str] = []
        if read_only if read_only is not None else self.read_only:
            flags.append("--read-only")
        for path, size in self.tmpfs.items():
            flags += ["--tmpfs", f"{path}:rw,size={size}"]
        if self.user:
            flags += ["--user", self.user]
        for capability in self.cap_drop:
            flags += ["--cap-drop", capability]
        for capability in self.cap_add:
            flags += ["--cap-add", capability]
        if self.no_new_privileges:
            flags += ["--security-opt", "no-new-privileges"]
        if self.seccomp == "Unconfined":
            flags += ["--security-opt", "seccomp=unconfined"]
        # RuntimeDefault is Docker's default seccomp profile: nothing to pass.
        cpus = self.cpus if cpus is None else cpus
        if cpus:
            flags += ["--cpus", f"{cpus:g}"]
        if self.memory:
            # Kubernetes gives a container no swap: the limit is the limit.
            flags += ["--memory", str(self.memory), "--memory-swap", str(self.memory)]
        for name, value in {**self.env, **(env or {})}.items():
            flags += ["--env", f"{name}={value}"]
        return flags


@dataclass
class Container:
    name: str
    id: str = ""
    ip: str = ""
    pid: int = 0
    started_at: float = 0.0
    run_flags: list[str] = field(default_factory=list)

    def inspect(self) -> dict[str, Any]:
        (info,) = json.loads(docker("inspect", self.name))
        return dict(info)

    def refresh(self, network: str) -> None:
        info = self.inspect()
        self.id = info["Id"]
        self.pid = int(info["State"]["Pid"])
        self.ip = info["NetworkSettings"]["Networks"][network]["IPAddress"]
        self.started_at = parse_time(info["State"]["StartedAt"])

    def alive(self) -> bool:
        """Whether its first process still exists (cheaper than `docker inspect` in a polling loop)."""
        return os.path.exists(f"/proc/{self.pid}")

    def logs(self) -> tuple[str, str]:
        """The container's stdout and stderr, kept apart."""
        result = subprocess.run(["docker", "logs", self.name], capture_output=True, timeout=60, check=False)
        return result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")

    def diff(self) -> list[str]:
        return [line for line in docker("diff", self.name).splitlines() if line.strip()]

    def state(self) -> dict[str, Any]:
        return dict(self.inspect()["State"])

    def processes(self) -> dict[str, list[int]]:
        """The service's processes, from the host: init (tini, PID 1), server, forkserver, resource
        tracker, workers."""
        init = self.pid
        servers = [child for child in children(init) if " -m function" in cmdline(child)]
        server = servers[0] if servers else init  # the server itself when the image runs no init
        found: dict[str, list[int]] = {
            "init": [init] if server != init else [],
            "server": [server],
            "forkserver": [],
            "tracker": [],
            "workers": [],
        }
        for child in children(server):
            command = cmdline(child)
            if "multiprocessing.forkserver" in command:
                found["forkserver"].append(child)
                found["workers"] += children(child)
            elif "resource_tracker" in command:
                found["tracker"].append(child)
        return found

    def memory_cgroup(self) -> Path:
        """The container's memory cgroup directory (v1 with the cgroupfs driver, or v2)."""
        for path in (
            Path(f"/sys/fs/cgroup/memory/docker/{self.id}"),
            Path(f"/sys/fs/cgroup/memory/system.slice/docker-{self.id}.scope"),
            Path(f"/sys/fs/cgroup/system.slice/docker-{self.id}.scope"),
            Path(f"/sys/fs/cgroup/docker/{self.id}"),
        ):
            if path.is_dir():
                return path
        raise DockerError(f"no memory cgroup found for {self.name}")


class Docker:
    """The containers and the network of one run, all removed by cleanup()."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.containers: list[str] = []
        self.networks: list[str] = []

    @staticmethod
    def remove_leftovers() -> list[str]:
        """Containers and networks of earlier runs that were killed before their cleanup."""
        names = docker("ps", "-aq", "--filter", f"label={LABEL}").split()
        if names:
            docker("rm", "-f", *names, check=False)
        networks = docker("network", "ls", "-q", "--filter", f"label={LABEL}").split()
        for network in networks:
            docker("network", "rm", network, check=False)
        return names + networks

    def network(self, name: str) -> dict[str, Any]:
        docker("network", "create", "--internal", "--label", f"{LABEL}={self.run_id}", name)
        self.networks.append(name)
        (info,) = json.loads(docker("network", "inspect", name))
        return dict(info)

    def run(self, name: str, image: str, flags: list[str], command: list[str] | None = None) -> Container:
        """`docker run -d` (no --rm: the exited container is still inspected, diffed and logged)."""
        self.containers.append(name)
        args = ["run", "-d", "--name", name, "--label", f"{LABEL}={self.run_id}", *flags, image, *(command or [])]
        docker(*args)
        return Container(name=name, run_flags=flags)

    def remove(self, container: Container) -> None:
        docker("rm", "-f", container.name, check=False)
        if container.name in self.containers:
            self.containers.remove(container.name)

    def cleanup(self) -> None:
        if self.containers:
            docker("rm", "-f", *self.containers, check=False, timeout=60)
            self.containers = []
        for network in self.networks:
            docker("network", "rm", network, check=False)
        self.networks = []


def wait_exit(container: Container, timeout: float) -> dict[str, Any]:
    """The container's State once it has exited (or as it is after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        state = container.state()
        if not state["Running"] or time.monotonic() > deadline:
            return state
        time.sleep(0.05)


def oom_kills(cgroup: Path) -> int:
    """Processes the kernel's OOM killer has killed in the cgroup so far (v1 or v2)."""
    for name in ("memory.oom_control", "memory.events"):
        path = cgroup / name
        if path.exists():
            for line in path.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    raise DockerError(f"no oom_kill counter under {cgroup}")


def peak_memory(cgroup: Path) -> int:
    """The most memory the cgroup has used, in bytes (0 where the kernel does not say)."""
    for name in ("memory.max_usage_in_bytes", "memory.peak"):
        path = cgroup / name
        if path.exists():
            return int(path.read_text().split()[0])
    return 0


def compressed_layers(image: str) -> list[int]:
    """Each layer's size gzipped at level 6 (as `docker push` stores it), base first, from `docker save`."""
    sizes: dict[str, int] = {}
    manifest: list[dict[str, Any]] = []
    with subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE) as process:
        assert process.stdout is not None
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
    if process.returncode != 0 or not manifest:
        raise DockerError(f"docker save {image} failed")
    return [sizes[name] for name in manifest[0]["Layers"]]
