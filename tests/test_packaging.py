"""What the serving side may import, and how it reads its settings and CPUs."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from function.cpus import cgroup_cpu_limit, cpus_from
from function.settings import Settings, parse_command_line
from tests.conftest import ROOT


def test_the_server_process_imports_no_training_or_inference_library() -> None:
    """scikit-learn is for training only; onnxruntime and numpy live in the workers."""
    code = (
        "import sys, function.app, function.__main__\n"
        "from function.app import create_app\nfrom function.settings import Settings\n"
        "create_app(Settings())\n"
        "banned = {'sklearn', 'skl2onnx', 'scipy', 'train', 'onnxruntime', 'numpy'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in banned or m == 'function.worker'))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_worker_module_imports_only_what_inference_needs() -> None:
    code = (
        "import sys, function.worker; print(sorted(m for m in sys.modules if m.startswith(('aiohttp', 'function.'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.stdout.strip() == "['function.heap', 'function.prediction', 'function.worker']"


@pytest.mark.parametrize(
    ("content", "expected"),
    [("max 100000\n", None), ("200000 100000\n", 2.0), ("150000 100000\n", 1.5), ("50000 100000", 0.5), ("junk", None)],
)
def test_cgroup_v2_quota(tmp_path: Path, content: str, expected: float | None) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text(content)
    assert cgroup_cpu_limit(cpu_max, tmp_path / "none", tmp_path / "none") == expected


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    (tmp_path / "quota").write_text("300000\n")
    (tmp_path / "period").write_text("100000\n")
    assert cgroup_cpu_limit(tmp_path / "missing", tmp_path / "quota", tmp_path / "period") == 3.0
    (tmp_path / "quota").write_text("-1\n")
    assert cgroup_cpu_limit(tmp_path / "missing", tmp_path / "quota", tmp_path / "period") is None


@pytest.mark.parametrize(
    ("affinity", "quota", "expected"),
    [(64, 2.0, 2), (64, 1.5, 2), (64, None, 64), (4, 8.0, 4), (2, 0.5, 1), (1, None, 1)],
)
def test_workers_follow_the_smaller_of_affinity_and_quota(affinity: int, quota: float | None, expected: int) -> None:
    assert cpus_from(affinity, quota) == expected


def test_settings_come_from_the_environment_and_flags_win() -> None:
    settings = parse_command_line(["--workers", "3"], {"PORT": "9000", "WORKERS": "1", "ACCESS_LOG": "off"})
    assert (settings.port, settings.workers, settings.access_log) == (9000, 3, False)
    assert Settings.from_env({}) == Settings()


@pytest.mark.parametrize(
    "env",
    [{"PORT": "http"}, {"WORKERS": "-1"}, {"LOG_FORMAT": "xml"}, {"ACCESS_LOG": "maybe"}, {"MAX_BODY_BYTES": "0"}],
)
def test_bad_settings_are_refused_with_the_variable_name(env: dict[str, str]) -> None:
    with pytest.raises(SystemExit):
        parse_command_line([], env)


def test_help_shows_every_environment_variable() -> None:
    result = subprocess.run([sys.executable, "-m", "function", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for field in dataclasses.fields(Settings):
        assert f"env {field.metadata['env']}," in text


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    for field in dataclasses.fields(Settings):
        assert f"| `{field.metadata['env']}` | " in readme, field.metadata["env"]
