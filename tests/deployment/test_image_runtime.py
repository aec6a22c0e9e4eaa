"""What the container runs, on which port, at which version: the Procfile's web command as the
image's CMD under tini, left alone by both manifests, on the settings' default port, tagged and
labelled with the project's version."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tomllib

import pytest

from function.settings import Settings
from tests.deployment.dockerfile import final_stage, image_env, instructions
from tests.deployment.manifests import CONTAINERS
from tests.helpers import ROOT

DEFAULTS = Settings()


def exposed_ports() -> list[int]:
    return [int(word.split("/")[0]) for i in instructions("EXPOSE") for word in i.words()]


def procfile_web() -> list[str]:
    processes = dict(line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
    return shlex.split(processes["web"])


def project_version() -> str:
    version: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    return version


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


@pytest.mark.parametrize("variant", CONTAINERS)
def test_the_command_is_the_image_s_exec_form_cmd(variant: str) -> None:
    container = CONTAINERS[variant]()
    assert "command" not in container
    assert "args" not in container


def test_the_port_is_the_settings_default_everywhere() -> None:
    assert exposed_ports() == [DEFAULTS.port]
    assert image_env()["PORT"] == str(DEFAULTS.port)
    for name, container in CONTAINERS.items():
        assert [p["containerPort"] for p in container()["ports"]] == [DEFAULTS.port], name


def test_the_image_label_carries_the_project_version() -> None:
    labels = dict(word.split("=", 1) for label in instructions("LABEL") for word in label.words())
    assert labels["org.opencontainers.image.version"] == project_version()


@pytest.mark.parametrize("variant", CONTAINERS)
def test_the_image_tag_is_the_project_version(variant: str) -> None:
    assert CONTAINERS[variant]()["image"].rsplit(":", 1)[1] == project_version()
