"""Liveness of open streams: heartbeats, viewers that leave or read too slowly or not at all,
and a graceful shutdown of ``aria-stream serve`` with streams open."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer, get_port_socket
from prometheus_client.parser import text_string_to_metric_families

from aria_stream.app import create_app
from aria_stream.events import encode_json
from aria_stream.framing import sse_frame
from aria_stream.metrics import Metrics
from aria_stream.query import SpendQuery
from aria_stream.simulator import Simulator
from aria_stream.subscriber import Outgoing, Subscriber
from tests.conftest import ServerFactory, SimulatorFactory, settings_for
from tests.sse import parse_events
from tests.tail_support import (
    FAST_TAIL,
    WAIT,
    RawStream,
    StreamReader,
    add_rows,
    ago,
    all_live,
    eventually,
    metric_value,
    named,
    oldest_first,
    open_stream,
    open_to_done,
    read_exactly,
    request_ids,
    split_at_done,
    tail_of,
)

ARIA_STREAM = Path(sys.executable).parent / "aria-stream"
# Kernel send buffer of the small-buffer server's connections; Linux doubles the value asked.
SEND_BUFFER = 4096


def small_buffer_socket(host: str, port: int, family: socket.AddressFamily) -> socket.socket:
    """Return a listening socket whose connections keep a small, fixed kernel send buffer."""
    sock = get_port_socket(host, port, family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
    return sock


@pytest.fixture
async def small_buffer_server() -> AsyncIterator[ServerFactory]:
    """Start aria_stream apps whose connections have small send buffers, as a slow network has.

    On loopback the kernel would otherwise buffer megabytes for a viewer that does not read.
    """
    clients: list[TestClient] = []

    async def start(simulator: Simulator, **overrides: Any) -> TestClient:
        app = create_app(settings_for(simulator, **overrides))
        server = TestServer(app, host="127.0.0.1", socket_factory=small_buffer_socket)
        client = TestClient(server)
        clients.append(client)
        await client.start_server()
        return client

    yield start
    for client in clients:
        await client.close()


def server_port(client: TestClient) -> int:
    port = client.server.port
    assert port is not None
    return port


def batch_starts(batch: int, size: int) -> list[datetime]:
    """Return start times for batch number ``batch``: each batch is newer than the one before."""
    return [ago(30.0 - batch - index * 0.001) for index in range(size)]


# Heartbeats.


async def test_stream_pings_carry_server_time(simulator: Simulator, server_factory: ServerFactory):
    client = await server_factory(simulator, **{**FAST_TAIL, "ping_interval": 0.2})
    before = datetime.now(UTC)
    reader = await open_to_done(client, limit="5")
    events = await reader.read_until(lambda events: len(named(events, "ping")) >= 2)
    after = datetime.now(UTC)

    pings = named(events, "ping")[:2]
    for ping in pings:
        sent = datetime.strptime(ping.json()["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
        assert list(ping.json()) == ["time"]
        assert before <= sent.replace(tzinfo=UTC) <= after
    ping_blocks = [block for block in reader.text.split("\n\n") if "event: ping\n" in block]
    assert ping_blocks
    assert all(block.startswith("event: ping\n") for block in ping_blocks)


# Viewers that leave.


def subscribers_metric(text: str) -> float:
    for family in text_string_to_metric_families(text):
        if family.name == "aria_stream_subscribers":
            return family.samples[0].value
    raise AssertionError("/metrics has no aria_stream_subscribers")


async def test_stream_gone_viewer_leaves_within_second(
    simulator: Simulator, server_factory: ServerFactory
):
    client = await server_factory(simulator, **FAST_TAIL)
    tail = tail_of(client)
    readers = [await open_to_done(client, limit="5") for _ in range(2)]
    await all_live(client, 2)
    metrics_before = await (await client.get("/metrics")).text()

    readers[0].close()
    await eventually(lambda: len(tail.subscribers) == 1, "the viewer left", within=1.0)
    metrics_after = await (await client.get("/metrics")).text()

    assert subscribers_metric(metrics_before) == 2
    assert subscribers_metric(metrics_after) == 1


# Viewers that read too slowly or not at all.


async def test_stream_slow_viewer_gets_lagged(
    simulator: Simulator, small_buffer_server: ServerFactory
):
    settings = {**FAST_TAIL, "queue_bytes": 64 * 1024, "write_timeout": 30.0}
    client = await small_buffer_server(simulator, **settings)
    fast = await open_to_done(client, limit="5")
    slow = await RawStream.open(server_port(client), "/api/spend/stream?limit=5")
    await slow.read_event("done")
    await all_live(client, 2)

    # Ten polls' worth of rows, about 70 KB each: the fast viewer empties its queue between
    # them, while the slow one stops reading and its queue overflows.
    rows = []
    for batch in range(10):
        rows += add_rows(simulator, batch_starts(batch, 100))
        await fast.read_rows(request_ids(rows))
    await eventually(
        lambda: metric_value(client, "aria_stream_rows_dropped_lag_total") > 0,
        "rows were dropped for the slow viewer",
    )
    events = await slow.read_event("lagged")

    lagged = named(events, "lagged")[0].json()
    received = [
        row["request_id"]
        for event in named(split_at_done(events)[1], "entries")
        for row in event.json()
    ]
    assert received == oldest_first(rows)[: len(received)]
    assert lagged["skipped"] == len(rows) - len(received)
    assert metric_value(client, "aria_stream_rows_dropped_lag_total") == lagged["skipped"]
    assert len(tail_of(client).subscribers) == 2

    again = await open_stream(client, after=lagged["cursor"])
    fetched = await read_exactly(client, simulator, [again], oldest_first(rows)[len(received) :])
    await slow.close()
    assert fetched == [oldest_first(rows)[len(received) :]]


class HeldWriter:
    """Stands in for the SSE response: records writes, each held until ``release``."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.gate = asyncio.Event()
        self._req = None

    async def write(self, data: bytes) -> None:
        await self.gate.wait()
        self.written.append(data)

    def release(self) -> None:
        self.gate.set()


def frame(name: str, size: int) -> Outgoing:
    """Return an ``entries`` event of about ``size`` bytes whose id is ``name``."""
    data = sse_frame("entries", encode_json(["x" * size]), id=name)
    return Outgoing(data, "entries", 1, name)


async def test_subscriber_lag_drops_until_lagged_sent():
    """After a viewer's queue overflowed, a smaller event that fit again was still queued, so
    the viewer got rows after the gap and then a lagged cursor that made it fetch them twice."""
    writer = HeldWriter()
    subscriber = Subscriber(
        writer,  # type: ignore[arg-type]
        query=SpendQuery(),
        full=False,
        queue_bytes=64 * 1024,
        write_timeout=WAIT,
        ping_interval=WAIT,
        metrics=Metrics(),
        request_id="test",
    )
    task = asyncio.create_task(subscriber.run_writer())
    subscriber.offer(frame("a", 40_000))
    await asyncio.sleep(0)  # the writer takes "a" and waits in its write

    accepted = [
        subscriber.offer(frame(name, size))
        for name, size in [("b", 40_000), ("c", 40_000), ("d", 10_000)]
    ]
    writer.release()
    await eventually(lambda: len(writer.written) == 3, "three events were written")
    subscriber.close()
    await task

    lagged = parse_events(writer.written[2].decode())[0]
    assert accepted == [True, False, False]
    assert [event.id for event in parse_events(b"".join(writer.written[:2]).decode())] == [
        "a",
        "b",
    ]
    assert (lagged.event, lagged.json()) == ("lagged", {"skipped": 2, "cursor": "b"})


async def test_stream_silent_viewer_disconnected(
    simulator_factory: SimulatorFactory, small_buffer_server: ServerFactory
):
    simulator = await simulator_factory(rows=3000)
    client = await small_buffer_server(simulator, **FAST_TAIL, write_timeout=0.5)
    tail = tail_of(client)
    silent = await RawStream.open(server_port(client), "/api/spend/stream?limit=3000")
    await eventually(lambda: len(tail.subscribers) == 1, "the silent viewer subscribed")

    await eventually(lambda: not tail.subscribers, "the silent viewer was disconnected")
    await silent.read_to_end()
    await silent.close()
    assert metric_value(client, "aria_stream_subscribers") == 0


async def test_stream_silent_viewer_delays_no_other(
    simulator: Simulator, small_buffer_server: ServerFactory
):
    settings = {**FAST_TAIL, "queue_bytes": 64 * 1024, "write_timeout": 30.0}
    client = await small_buffer_server(simulator, **settings)
    silent = await RawStream.open(server_port(client), "/api/spend/stream?limit=5")
    reader = await open_to_done(client, limit="5")
    await all_live(client, 2)

    rows = []
    for batch in range(8):
        rows += add_rows(simulator, batch_starts(batch, 100))
        await reader.read_rows(request_ids(rows))
    received = await read_exactly(client, simulator, [reader], request_ids(rows))

    assert received == [oldest_first(rows)]
    assert metric_value(client, "aria_stream_rows_dropped_lag_total") > 0
    assert len(tail_of(client).subscribers) == 2
    await silent.close()


# Graceful shutdown.


async def test_stream_opened_during_shutdown_ends(
    simulator: Simulator, server_factory: ServerFactory
):
    """A stream that subscribed after the shutdown had ended the open streams kept running
    until the server's shutdown timeout cancelled it."""
    client = await server_factory(simulator, **FAST_TAIL)
    tail_of(client).closing = True

    reader = await open_stream(client, limit="5")
    async with asyncio.timeout(WAIT):
        body = await reader.response.content.read()

    assert body == b'event: shutdown\ndata: {"reason":"server shutting down"}\n\n'
    assert not tail_of(client).subscribers
    assert tail_of(client).running is False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_for_subscribers(session: aiohttp.ClientSession, port: int, count: int) -> None:
    """Wait until the server at ``port`` reports ``count`` open streams in its metrics."""
    async with asyncio.timeout(WAIT):
        while True:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                if subscribers_metric(await response.text()) == count:
                    return
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_serve_shutdown_ends_streams(tmp_path: Path, signum: signal.Signals):
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("ARIA_")}
    log = (tmp_path / "serve.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        str(ARIA_STREAM),
        "serve",
        "--port",
        str(port),
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
        env=env,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(WAIT):
            line = await process.stdout.readline()
        assert line.decode() == f"aria_stream viewer: http://127.0.0.1:{port}/\n"
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}/api/spend/stream"
            readers = [
                StreamReader(await session.get(url, params={"limit": "5"})) for _ in range(3)
            ]
            for reader in readers:
                await reader.read_event("done")
            silent = await RawStream.open(port, "/api/spend/stream?limit=5")
            await wait_for_subscribers(session, port, 4)

            process.send_signal(signum)
            async with asyncio.timeout(2.0):
                status = await process.wait()
            shutdowns = [(await reader.read_event("shutdown")).json() for reader in readers]
            await silent.close()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        log.close()

    assert status == 0
    assert shutdowns == [{"reason": "server shutting down"}] * 3
