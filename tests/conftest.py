"""Shared fixtures: the LiteLLM simulator and the aria_stream app, both on real loopback HTTP."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from aria_stream.app import create_app
from aria_stream.settings import Settings
from aria_stream.simulator import Simulator, SimulatorConfig

FIXTURES = Path(__file__).parent / "fixtures"

SimulatorFactory = Callable[..., Awaitable[Simulator]]
ServerFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove ARIA_* variables, because Settings reads the environment."""
    for name in list(os.environ):
        if name.startswith("ARIA_"):
            monkeypatch.delenv(name)


@pytest.fixture
async def simulator_factory() -> AsyncIterator[SimulatorFactory]:
    """Start simulators with the given ``SimulatorConfig`` fields; all stop after the test."""
    started: list[Simulator] = []

    async def start(**config: Any) -> Simulator:
        simulator = Simulator(SimulatorConfig(**config))
        await simulator.start("127.0.0.1", 0)
        started.append(simulator)
        return simulator

    yield start
    for simulator in started:
        await simulator.stop()


@pytest.fixture
async def simulator(simulator_factory: SimulatorFactory) -> Simulator:
    """A simulator with 300 rows and no faults."""
    return await simulator_factory(rows=300)


def settings_for(simulator: Simulator, **overrides: Any) -> Settings:
    """Settings that read this simulator with its master key."""
    return Settings(litellm_url=simulator.url, litellm_key=simulator.config.master_key, **overrides)


@pytest.fixture
async def server_factory() -> AsyncIterator[ServerFactory]:
    """Start aria_stream apps on loopback; pass a simulator or a ``Settings``."""
    clients: list[TestClient] = []

    async def start(target: Simulator | Settings, **overrides: Any) -> TestClient:
        settings = settings_for(target, **overrides) if isinstance(target, Simulator) else target
        server = TestServer(create_app(settings), host="127.0.0.1", handler_cancellation=True)
        client = TestClient(server)
        clients.append(client)
        await client.start_server()
        return client

    yield start
    for client in clients:
        await client.close()


@pytest.fixture
async def server(server_factory: ServerFactory, simulator: Simulator) -> TestClient:
    """aria_stream reading the default simulator."""
    return await server_factory(simulator)
