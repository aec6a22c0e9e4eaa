"""End-to-end tests: real clients against a real ``python -m function`` on a loopback port.

One server (two workers) serves the whole session; tests that break a server (faults, slow
clients) start their own. Every test here is marked ``e2e`` (``make e2e``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bench.servers import ServerProcess
from tests.e2e.helpers import LIVE_ENV, http, scrape, start_server, total


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: end-to-end tests against real server processes (make e2e)")


@pytest.fixture(scope="session")
def live() -> Iterator[ServerProcess]:
    """The shared live server. At the end, whatever the tests sent it, it must not have answered
    any request with a 500 (an unhandled error) nor lost a worker."""
    server = start_server(LIVE_ENV)
    try:
        yield server
        samples = scrape(server.url)
    finally:
        output = server.stop()
    server_errors = total(samples, "textclf_http_requests_total", code="500")
    restarts = total(samples, "textclf_pool_worker_restarts_total")
    unhandled = [line for line in output.splitlines() if "unhandled error" in line]
    assert server_errors == 0, f"the live server answered {server_errors} requests with 500: {unhandled}"
    assert restarts == 0, f"the live server lost {restarts} workers"


@pytest.fixture
def servers() -> Iterator[Callable[..., ServerProcess]]:
    """Start servers of the test's own (``start_server``'s arguments); all are stopped at the end."""
    started: list[ServerProcess] = []

    def start(env: dict[str, str], **options: Any) -> ServerProcess:
        server = start_server(env, **options)
        started.append(server)
        return server

    yield start
    for server in started:
        if not server.log.closed:  # a test may have stopped it already
            server.stop()


@pytest.fixture(scope="session")
def api_document(live: ServerProcess) -> dict[str, Any]:
    """openapi.json as the live service serves it."""
    answer = http("GET", live.url + "/openapi.json")
    assert answer.status == 200
    return dict(json.loads(answer.body))
