"""Fixtures: the real app (real model, real worker pool) and a real server process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestClient
from sklearn.pipeline import Pipeline

import train
from bench.servers import ServerProcess
from function.app import create_app
from function.inference import session as onnx_session
from function.settings import Settings
from tests.helpers import ROOT


@pytest.fixture(scope="session")
def session():  # type: ignore[no-untyped-def]
    """An onnxruntime session of the committed model, as a worker loads it."""
    return onnx_session.load_session(str(ROOT / "model" / "model.onnx"))


@pytest.fixture(scope="session")
def served_pipeline() -> Pipeline:
    """The served candidate refitted on the training split as train.py fits it: scikit-learn's twin of the model."""
    return train.refit_served(ROOT / "model", train.load_dataset(ROOT / "data/train.jsonl.gz"))


@pytest.fixture
def settings() -> Settings:
    """Defaults with one worker (fast to start); tests replace fields they care about."""
    return Settings(workers=1, log_format="text")


@pytest.fixture
async def client(aiohttp_client, settings: Settings) -> AsyncIterator[TestClient]:  # type: ignore[no-untyped-def]
    """A fresh app through the real factory, started (pool warm) behind a test server."""
    return await aiohttp_client(create_app(settings))


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    """A real server process, ready, stopped after the test."""
    with ServerProcess() as srv:
        yield srv


@pytest.fixture
async def http() -> AsyncIterator[ClientSession]:
    async with ClientSession() as session:
        yield session
