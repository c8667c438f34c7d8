"""A bounded soak test: random clients and upstream faults for a while, then no leak.

Clients connect, read, stall, resume and disconnect at random while the simulator produces rows
and fails now and then. Afterwards the server must be back at its idle baseline: the same
asyncio tasks, no open connection, subscriber or stream slot, the poller stopped, and resident
memory grown by at most ``RSS_GROWTH_MAX``.

It runs ``SOAK_SECONDS`` seconds: 60 by default when ``CI`` is set, 15 otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from aria_stream.appkeys import tail_key
from aria_stream.security import limiter_key
from aria_stream.simulator import Fault, Simulator
from tests.conftest import ServerFactory, SimulatorFactory
from tests.sse import parse_events, read_events

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "60" if os.environ.get("CI") else "15"))
CLIENTS = 8
TOKEN = "soak-viewer-token-0123456789"
# Generous for a loaded 2-core machine. On one such machine the growth over 60 s was about
# 28 MB. Most of it is the simulator's cache of rendered rows, because the simulator runs in
# this process, and memory that the allocator keeps after it was freed.
RSS_GROWTH_MAX = 64 * 1024 * 1024
SETTLE_TIMEOUT = 20.0
FAULTS = ["reset", "hang", "stall", "truncate", "server_error", "rate_limit", "malformed_row"]

pytestmark = [pytest.mark.soak, pytest.mark.timeout(SOAK_SECONDS + 90)]


def app_tasks(simulator: Simulator) -> set[asyncio.Task[object]]:
    """Return the running tasks, less those serving the simulator's side of connections."""
    server = simulator._runner.server if simulator._runner is not None else None
    upstream = {connection._task_handler for connection in (server.connections if server else [])}
    return asyncio.all_tasks() - upstream


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("VmRSS missing from /proc/self/status")


class Soak:
    """The random clients and the fault driver of one run."""

    def __init__(self, client: TestClient, simulator: Simulator, seed: int) -> None:
        self.base = str(client.make_url(""))
        self.simulator = simulator
        self.random = random.Random(seed)
        self.headers = {"Authorization": f"Bearer {TOKEN}"}
        self.last_ids: list[str] = []
        self.streams_read = 0
        self.rows_read = 0

    async def client_loop(self, deadline: float) -> None:
        async with aiohttp.ClientSession(headers=self.headers) as session:
            while time.monotonic() < deadline:
                action = self.random.choice(
                    [self.read_a_while, self.read_a_while, self.stall, self.resume, self.list_logs]
                )
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    await action(session)

    async def read_a_while(self, session: aiohttp.ClientSession) -> None:
        params = {"limit": str(self.random.choice([1, 50, 500])), "full": "true"}
        if self.random.random() < 0.5:
            params.pop("full")
        async with session.get(f"{self.base}/api/spend/stream", params=params) as response:
            await self._read(response, self.random.uniform(0.05, 1.5))

    async def stall(self, session: aiohttp.ClientSession) -> None:
        async with session.get(
            f"{self.base}/api/spend/stream", params={"limit": "2000", "full": "true"}
        ) as response:
            await self._read(response, 0.2)
            # Reading nothing lets the server's write time out and drop this viewer.
            await asyncio.sleep(self.random.uniform(0.5, 2.5))

    async def resume(self, session: aiohttp.ClientSession) -> None:
        headers = {"Last-Event-ID": self.random.choice(self.last_ids)} if self.last_ids else {}
        async with session.get(
            f"{self.base}/api/spend/stream", params={"limit": "100"}, headers=headers
        ) as response:
            await self._read(response, self.random.uniform(0.1, 1.0))

    async def list_logs(self, session: aiohttp.ClientSession) -> None:
        async with session.get(f"{self.base}/api/spend/logs", params={"limit": "50"}) as response:
            await response.read()

    async def _read(self, response: aiohttp.ClientResponse, seconds: float) -> None:
        if response.status != 200:
            await response.read()
            return
        self.streams_read += 1
        text = ""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                async for chunk in response.content.iter_any():
                    text += chunk.decode("utf-8")
        events = parse_events(text)
        ids = [event.id for event in events if event.event == "entries" and event.id]
        self.rows_read += sum(len(event.json()) for event in events if event.event == "entries")
        if ids:
            self.last_ids = [*self.last_ids[-20:], ids[-1]]

    async def fault_loop(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            await asyncio.sleep(self.random.uniform(0.5, 1.5))
            if self.random.random() < 0.15:
                await self.simulator.stop_listening()
                await asyncio.sleep(self.random.uniform(0.2, 1.0))
                await self.simulator.resume_listening()
            else:
                kind = self.random.choice(FAULTS)
                self.simulator.fault = Fault(kind, count=self.random.randint(1, 3), retry_after=0.5)
        self.simulator.fault = None
        await self.simulator.resume_listening()


async def settle(check: Callable[[], bool], what: str) -> None:
    try:
        async with asyncio.timeout(SETTLE_TIMEOUT):
            while not check():  # noqa: ASYNC110 - the server has no event for being idle
                await asyncio.sleep(0.1)
    except TimeoutError:
        tasks = "\n".join(repr(task) for task in asyncio.all_tasks())
        raise AssertionError(
            f"{what} did not return to idle in {SETTLE_TIMEOUT:g} s; running tasks:\n{tasks}"
        ) from None


async def test_soak_returns_to_idle_baseline(
    simulator_factory: SimulatorFactory,
    server_factory: ServerFactory,
    caplog: pytest.LogCaptureFixture,
):
    # Thousands of expected warnings would otherwise be kept in memory for the report.
    caplog.set_level(logging.ERROR)
    simulator = await simulator_factory(rows=300, rows_per_second=5, flush_interval=0.2)
    client = await server_factory(
        simulator,
        auth_token=TOKEN,
        poll_interval=0.2,
        poller_linger=0.3,
        max_backoff=1.0,
        first_byte_timeout=1.0,
        idle_timeout=1.0,
        write_timeout=0.5,
        queue_bytes=64 * 1024,
        ping_interval=0.5,
        max_streams=CLIENTS * 2,
        # The replay buffer keeps each row's raw form too, far more than the lite bytes it
        # counts, so a small buffer keeps its intended growth out of the measurement.
        replay_bytes=64 * 1024,
    )
    app = client.server.app
    tail = app[tail_key]
    limiter = app[limiter_key]
    assert client.server.runner is not None and client.server.runner.server is not None
    connections = client.server.runner.server.connections

    soak = Soak(client, simulator, seed=20261204)
    # A short run first, so that lazily created state is part of the baseline, and one read of
    # every row, so that the simulator's cache of rendered rows is too.
    await asyncio.gather(soak.client_loop(time.monotonic() + 1.0))
    response = await client.get(
        "/api/spend/stream", params={"limit": "10000", "full": "true"}, headers=soak.headers
    )
    async with asyncio.timeout(SETTLE_TIMEOUT):
        await read_events(response)
    response.close()
    await settle(lambda: not tail.running and not connections, "the warm-up")
    gc.collect()
    baseline_tasks = app_tasks(simulator)
    baseline_rss = rss_bytes()

    deadline = time.monotonic() + SOAK_SECONDS
    await asyncio.gather(
        soak.fault_loop(deadline), *(soak.client_loop(deadline) for _ in range(CLIENTS))
    )

    await settle(lambda: not tail.subscribers, "the subscribers")
    await settle(lambda: not tail.broker.listeners, "the broker's listeners")
    await settle(lambda: limiter.total == 0 and not limiter.per_client, "the stream slots")
    await settle(lambda: not connections, "the server's connections")
    await settle(lambda: not tail.running, "the poller")
    await settle(lambda: not app_tasks(simulator) - baseline_tasks, "the tasks")
    gc.collect()
    growth = rss_bytes() - baseline_rss

    assert soak.streams_read > CLIENTS
    assert soak.rows_read > 0
    assert growth <= RSS_GROWTH_MAX, f"RSS grew by {growth / 2**20:.1f} MB"
