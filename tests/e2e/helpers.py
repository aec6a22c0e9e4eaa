"""What the end-to-end tests share: metrics, the contract (the server and its
process tree are ``bench.servers`` and ``bench.procs``)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.servers import ServerProcess
from function.feedback import HmacSha256
from tests.helpers import ROOT

START_TIMEOUT = 90.0  # two workers load the model; generous for a machine that is busy
#: The shared server's settings: the defaults, but two workers (this machine's CPUs), a short
#: body timeout, so that a stalled body shows its 408 in seconds, not the default 30, and a
#: feedback key, so that every operation of the API documents is served.
FEEDBACK_KEY = "the end-to-end tests' feedback key, 32 bytes or more"
LIVE_ENV = {"WORKERS": "2", "BODY_TIMEOUT_SECONDS": "2", "LOG_FORMAT": "text", "FEEDBACK_KEY": FEEDBACK_KEY}
BODY_TIMEOUT = 2.0


def without_prediction_id(answer: Any) -> Any:
    """A prediction answer of the live server less its ``prediction_id``, which must be an id signed
    with ``FEEDBACK_KEY`` for the answer's label (other answers come back as they are)."""
    if not isinstance(answer, dict) or "prediction_id" not in answer:
        return answer
    rest = dict(answer)
    body, _, mac = rest.pop("prediction_id").rpartition("~")
    assert HmacSha256(FEEDBACK_KEY.encode()).hex(body.encode()) == mac, f"not signed with the key: {answer}"
    assert body.split("~")[1] == answer["label"], f"an id for another label: {answer}"
    return rest


def start_server(env: dict[str, str], **options: Any) -> ServerProcess:
    """A server process, ready (``options`` as for ``ServerProcess``); if it is not, it is stopped
    and the error carries what it printed."""
    server = ServerProcess(env=env, **options)
    server.wait_ready(START_TIMEOUT)
    return server


# ---- plain HTTP with the standard library (for sync tests and checks between steps) ---------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Answer:
    """One request with urllib; any status is an answer (never raised), a network error is raised."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return Answer(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as error:
        with error:
            return Answer(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


def is_ready(url: str) -> bool:
    """/readyz answers 200 (a refused or reset connection counts as not ready)."""
    try:
        return http("GET", url + "/readyz").status == 200
    except OSError:
        return False


def predict(url: str, text: str) -> Answer:
    return http("POST", url + "/prediction", json.dumps({"text": text}).encode(), {"Content-Type": "application/json"})


# ---- metrics --------------------------------------------------------------------------------------

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    answer = http("GET", url + "/metrics")
    assert answer.status == 200, answer
    samples: Samples = {}
    for family in text_string_to_metric_families(answer.body.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def sample(samples: Samples, name: str, /, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, /, **labels: str) -> float:
    """The sum over every series of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


# ---- requests from an aiohttp client, each outcome recorded ------------------------------------------

JSON = {"Content-Type": "application/json"}


@dataclass
class Outcome:
    sent: object
    started: float  # time.monotonic() when the request was sent
    status: int = 0  # 0: no HTTP answer (see error)
    seconds: float = 0.0
    body: Any = None  # the JSON answer
    retry_after: str | None = None
    error: str = ""


async def send(http: aiohttp.ClientSession, url: str, payload: object) -> Outcome:
    """POST ``payload`` as JSON; every way it can end is recorded, never raised."""
    outcome = Outcome(payload, time.monotonic())
    try:
        async with http.post(url, data=io.BytesIO(json.dumps(payload).encode()), headers=JSON) as response:
            outcome.status = response.status
            outcome.retry_after = response.headers.get("Retry-After")
            outcome.body = await response.json()
    except (aiohttp.ClientError, TimeoutError) as error:
        outcome.error = f"{type(error).__name__}: {error}"
    outcome.seconds = time.monotonic() - outcome.started
    return outcome


# ---- waiting ------------------------------------------------------------------------------------


def wait_for(predicate: Any, within: float, interval: float = 0.02) -> float:
    """Poll ``predicate()`` until true; the seconds it took. TimeoutError past ``within``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > within:
            raise TimeoutError(f"not true within {within} s")
        time.sleep(interval)
    return time.monotonic() - started


# ---- the contract: openapi.json's response schemas --------------------------------------------------


def check_shape(document: dict[str, Any], method: str, path: str, status: int, content_type: str, body: bytes) -> None:
    """Assert that an answer has the shape openapi.json documents for it (an error shape for the
    router's own 404/405, Prometheus text for /metrics, HTML for /docs)."""
    assert status < 500 or status == 503, f"{method} {path}: server error {status}: {body[:300]!r}"
    if path == "/metrics" and status == 200:
        assert content_type.startswith("text/plain"), content_type
        assert b"# TYPE textclf_http_requests_total counter" in body
        return
    if path == "/docs" and status == 200:
        assert content_type.startswith("text/html"), content_type
        assert b"openapi3.json" in body
        return
    produces = (_operation(document, method, path) or {}).get("produces", ["application/json"])
    media = content_type.split(";")[0].strip()
    assert media == "application/json" or (status < 300 and media in produces), f"{method} {path} {status}: {media}"
    value = json.loads(body)
    if path == "/openapi.json" and status == 200:
        assert value == document
        return
    if path == "/openapi3.json" and status == 200:
        assert value["openapi"].startswith("3.0.")
        assert set(value["paths"]) == set(document["paths"])
        return
    v2 = path.startswith("/v2")
    operation = _operation(document, method, path)
    if operation is not None:
        assert str(status) in operation["responses"], f"{method} {path}: {status} is not documented"
        schema = operation["responses"][str(status)].get("schema")
    else:
        assert status in (404, 405), f"{method} {path}: {status} from an undocumented operation"
        schema = {"$ref": "#/definitions/V2Error" if v2 else "#/definitions/Error"}
    if schema is not None:
        jsonschema.validate(value, {**schema, "definitions": document["definitions"]})
    if status >= 400:
        assert set(value) == ({"error"} if v2 else {"error", "detail"}), value


def _operation(document: dict[str, Any], method: str, path: str) -> dict[str, Any] | None:
    """The documented operation a concrete path is an instance of (``/v2/models/{name}``...)."""
    for template, operations in document["paths"].items():
        if re.fullmatch(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template)), path) and method.lower() in operations:
            return dict(operations[method.lower()])
    return None


# ---- a memory cgroup of the test's own (cgroup v1 or v2, as root) -----------------------------------


class MemoryCgroup:
    """A memory cgroup with a limit, for a server started with ``preexec_fn=cgroup.join``.

    ``available()`` says why not when this machine cannot make one (not root, no memory controller).
    """

    V1 = Path("/sys/fs/cgroup/memory")
    V2 = Path("/sys/fs/cgroup")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        name = f"textclf-test-{os.getpid()}-{time.monotonic_ns()}"
        self.v2 = not self.V1.is_dir()
        self.path = (self.V2 if self.v2 else self.V1) / name
        self.path.mkdir()
        if self.v2:
            (self.path / "memory.max").write_text(str(limit))
            (self.path / "memory.swap.max").write_text("0")
        else:
            (self.path / "memory.limit_in_bytes").write_text(str(limit))
            memsw = self.path / "memory.memsw.limit_in_bytes"
            if memsw.exists():
                memsw.write_text(str(limit))

    @classmethod
    def unavailable(cls) -> str | None:
        """Why a memory cgroup cannot be made here, or None."""
        if os.geteuid() != 0:
            return "needs root to make a memory cgroup"
        if cls.V1.is_dir() and os.access(cls.V1, os.W_OK):
            return None
        if "memory" in (cls.V2 / "cgroup.controllers").read_text(errors="ignore").split():
            return None
        return "no writable memory cgroup controller (v1 or v2) on this machine"

    def join(self) -> None:
        """Move the calling process into the cgroup (a ``preexec_fn``: runs in the child)."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def oom_kills(self) -> int:
        """Processes the kernel's OOM killer has killed in the cgroup so far."""
        text = (self.path / ("memory.events" if self.v2 else "memory.oom_control")).read_text()
        return sum(int(line.split()[1]) for line in text.splitlines() if line.split()[0] == "oom_kill")

    def peak(self) -> int:
        """The most memory the cgroup has used (page cache included), in bytes."""
        name = "memory.peak" if self.v2 else "memory.max_usage_in_bytes"
        path = self.path / name
        return int(path.read_text()) if path.exists() else 0

    def remove(self) -> None:
        """Remove the cgroup once its processes are gone (waits up to 10 s for them)."""
        deadline = time.monotonic() + 10
        while (self.path / "cgroup.procs").read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.1)
        with contextlib.suppress(OSError):
            self.path.rmdir()


# ---- the real clients' own virtual environment (requirements/clients.txt) -----------------------

CLIENT_SCRIPTS = Path(__file__).parent / "clients"


def clients_bin() -> Path:
    """``.venv/clients/bin``, which ``make e2e`` builds; the test is skipped, saying so, without it."""
    folder = ROOT / ".venv" / "clients" / "bin"
    if not (folder / "python").exists():
        pytest.skip(f"{folder / 'python'} is missing: `make e2e` builds it from requirements/clients.txt")
    return folder
