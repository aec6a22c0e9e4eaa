"""How the image is built: two stages on one pinned Python, the builder installing only hashed
locks, and the runtime stage taking the environment, the app and their SBOM, installing nothing."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from tests.deployment.dockerfile import Instruction, dockerfile, final_stage, instructions
from tests.deployment.manifests import KNATIVE
from tests.helpers import ROOT

#: The image's SBOM of /opt/venv (knative/DEPLOY.md; `make container-test` checks its content).
SBOM_IN_IMAGE = "/app/sbom.cdx.json"
VENV_PYTHON = "/opt/venv/bin/python"


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
    assert f'SBOM_PATH = "{SBOM_IN_IMAGE}"' in (ROOT / "tests" / "container" / "test_image.py").read_text()
