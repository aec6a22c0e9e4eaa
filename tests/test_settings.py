"""Settings: read from the environment and flags, refused with one line when out of range, documented."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from function.command_line import parse_command_line
from function.settings import Settings
from tests.helpers import ROOT


def test_settings_come_from_the_environment_and_flags_win() -> None:
    settings = parse_command_line(["--workers", "3"], {"PORT": "9000", "WORKERS": "1", "ACCESS_LOG": "off"})
    assert (settings.port, settings.workers, settings.access_log) == (9000, 3, False)
    assert Settings.from_env({}) == Settings()


@pytest.mark.parametrize(
    "env",
    [
        {"PORT": "http"},
        {"WORKERS": "-1"},
        {"LOG_FORMAT": "xml"},
        {"ACCESS_LOG": "maybe"},
        {"MAX_BODY_BYTES": "0"},
        {"EVENT_SOURCE": "my classifier"},
        {"EVENT_SOURCE": ""},
    ],
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
