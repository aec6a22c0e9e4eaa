"""The container test's fixtures: the built image, the internal network with its detectors, the
main service container; and each check's figures printed under its result.

    make container-test                      # builds the image, then: pytest -m container tests/container
    pytest -m container tests/container -k sbom   # one check again, on the image built last

CONTAINER_TEST_IMAGE (default newsgroups-classifier:container-test) names the image,
CONTAINER_TEST_BASE the base image for the helper containers (default: the Dockerfile's FROM), and
CONTAINER_TEST_CONTEXT the build context the image is judged against (default: this checkout).

The modules run in file-name order, which is the order the checks need: the image alone, the main
container from its start to `docker stop`, more containers, the service as PID 1, then what the
whole run showed. All tests share one event loop, so that the main container's liveness is sampled
between them. Every container and the network are removed at the end, also after a failure, Ctrl-C
or SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.container.containers import Docker
from tests.container.harness import EGRESS_WINDOW, Context, Network, Service, load_context, show, take_shown

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
_terminal: list[pytest.TerminalReporter] = []


@pytest.hookimpl(trylast=True)  # after the terminal reporter is registered
def pytest_configure(config: pytest.Config) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        _terminal.append(reporter)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every async test here on the session's event loop, where the main container's liveness is sampled."""
    for item in items:
        if item.path.is_relative_to(HERE) and pytest_asyncio.is_async_test(item):
            item.add_marker(pytest.mark.asyncio(loop_scope="session"), append=False)


@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """The lines a check showed, under its PASSED or FAILED (those of a fixture's set-up, under the
    result of the test that needed it)."""
    if report.when == "setup" and report.passed:
        return
    for line in take_shown():
        for reporter in _terminal:
            reporter.write_line(f"    {line}")


class Interrupt:
    """SIGINT and SIGTERM: the first one stops the checks (and the cleanup runs); later ones wait."""

    seen = False

    @classmethod
    def handler(cls, signum: int, frame: object) -> None:
        if not cls.seen:
            cls.seen = True
            raise KeyboardInterrupt(signal.Signals(signum).name)


@pytest.fixture(scope="session")
def docker_session() -> Iterator[Docker]:
    """The containers and networks of this run, all removed at the end."""
    if os.geteuid() != 0:
        pytest.fail("the checks read the containers' /proc and capture on their bridge: run as root")
    # NOTE: set explicitly: a shell's background job starts with SIGINT ignored, and SIGTERM
    # (run.sh passes it on) would otherwise end pytest without its teardown.
    previous = {number: signal.signal(number, Interrupt.handler) for number in (signal.SIGINT, signal.SIGTERM)}
    session = Docker(secrets.token_hex(3))
    try:
        if leftovers := Docker.remove_leftovers():
            show(f"....  removed {len(leftovers)} containers/networks left by an interrupted run")
        yield session
    finally:
        Interrupt.seen = True
        with contextlib.suppress(KeyboardInterrupt):
            session.cleanup()
        for number, handler in previous.items():
            signal.signal(number, handler)


def dockerfile_base(context: Path) -> str:
    """The Dockerfile's one base image."""
    lines = (context / "Dockerfile").read_text().splitlines()
    (base,) = {line.split()[1] for line in lines if line.split() and line.split()[0].upper() == "FROM"}
    return base


@pytest.fixture(scope="session")
def context(docker_session: Docker) -> Context:
    """The image, and the files of its build context that it is judged against."""
    root = Path(os.environ.get("CONTAINER_TEST_CONTEXT") or ROOT).resolve()
    image = os.environ.get("CONTAINER_TEST_IMAGE") or "newsgroups-classifier:container-test"
    base = os.environ.get("CONTAINER_TEST_BASE") or dockerfile_base(root)
    return load_context(root, image, base, docker_session)


@pytest.fixture(scope="session")
def network(context: Context, docker_session: Docker) -> Iterator[Network]:
    """The internal network and its detectors, proven by a canary before any service starts."""
    network = Network(context, docker_session)
    try:
        network.setup()
        show(f"....  detectors: {network.canary_detail}")
        yield network
    finally:
        network.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def main(network: Network, context: Context) -> AsyncIterator[Service]:
    """The service container as knative/service.yaml runs it, ready, its liveness sampled until
    test_stop stops it."""
    service = network.start("main")
    flags = " ".join(service.container.run_flags)
    show(f"....  main container {service.container.ip}: docker run {flags} {context.image}")
    within = context.setting("WORKER_START_TIMEOUT_SECONDS") + 10
    if not await network.wait_ready(service, within):
        _, stderr = service.container.logs()
        pytest.fail(f"/readyz never answered 200 within {within:g} s; stderr: {stderr[-800:]!r}")
    network.sample_liveness(service)
    try:
        yield service
    finally:
        await network.end_liveness(service)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def egress_window(network: Network, main: Service) -> None:
    """The main container under light load until it is EGRESS_WINDOW (+1) s old: the start-up and
    load that no-egress watches on its own, before the worker kill and the stop."""
    await network.light_load_until(main, EGRESS_WINDOW + 1)
    network.sample_tmpfs(main)
