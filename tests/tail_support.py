"""Helpers for the live-tail tests: stream readers, hand-made rows and waits on the poller."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from aria_stream.appkeys import tail_key
from aria_stream.settings import Settings
from aria_stream.simulator import SimRow, Simulator
from aria_stream.tail import TailService
from tests.sse import Event, parse_events

# A bound on every wait, so a stream that never sends what a test expects fails it quickly.
WAIT = 10.0

# Settings of a fast live tail. Pings are rare unless a test sets ping_interval, so that the
# events a test reads are the ones it caused.
FAST_TAIL: dict[str, Any] = {
    "poll_interval": 0.1,
    "poll_overlap": 30.0,
    "poller_linger": 0.3,
    "max_backoff": 0.3,
    "ping_interval": 60.0,
}


def allow_streams(count: int) -> dict[str, Any]:
    """Return the settings that let one client address open ``count`` streams, if limited."""
    if "max_streams_per_client" in Settings.model_fields:
        return {"max_streams_per_client": count, "max_streams": count + 10}
    return {}


class StreamReader:
    """Reads one SSE response event by event and keeps every event read so far."""

    def __init__(self, response: ClientResponse) -> None:
        self.response = response
        self.text = ""
        self.events: list[Event] = []

    async def read_until(self, done: Callable[[list[Event]], bool]) -> list[Event]:
        """Read until ``done(events)`` holds; return every event read so far."""
        async with asyncio.timeout(WAIT):
            while not done(self.events):
                chunk = await self.response.content.readany()
                assert chunk, "the stream ended before the expected events"
                self.text += chunk.decode("utf-8")
                self.events = parse_events(self.text)
        return self.events

    async def read_event(self, name: str) -> Event:
        """Read until one more event called ``name`` than before; return it."""
        before = len(named(self.events, name))
        events = await self.read_until(lambda events: len(named(events, name)) > before)
        return named(events, name)[before]

    async def read_rows(self, request_ids: list[str]) -> list[str]:
        """Read until every one of ``request_ids`` arrived live; return all live request ids."""
        wanted = set(request_ids)
        await self.read_until(lambda events: wanted <= set(live_ids(events)))
        return live_ids(self.events)

    def close(self) -> None:
        self.response.close()


async def open_stream(
    client: TestClient, *, headers: dict[str, str] | None = None, **params: str
) -> StreamReader:
    response = await client.get("/api/spend/stream", params=params, headers=headers or {})
    assert response.status == 200, await response.text()
    return StreamReader(response)


async def open_to_done(
    client: TestClient, *, headers: dict[str, str] | None = None, **params: str
) -> StreamReader:
    """Open a stream and read it to the end of its backfill."""
    reader = await open_stream(client, headers=headers, **params)
    await reader.read_event("done")
    return reader


def named(events: list[Event], name: str) -> list[Event]:
    return [event for event in events if event.event == name]


def ids_of(events: list[Event]) -> list[str]:
    """Return the request ids of every ``entries`` event, in stream order."""
    return [row["request_id"] for event in named(events, "entries") for row in event.json()]


def split_at_done(events: list[Event]) -> tuple[list[Event], list[Event]]:
    """Split events at the first ``done``: the backfill part and the live part."""
    for index, event in enumerate(events):
        if event.event == "done":
            return events[:index], events[index + 1 :]
    return events, []


def backfill_ids(events: list[Event]) -> list[str]:
    return ids_of(split_at_done(events)[0])


def live_ids(events: list[Event]) -> list[str]:
    return ids_of(split_at_done(events)[1])


def add_rows(
    simulator: Simulator, starts: list[datetime], *, visible_in: float = 0.0
) -> list[SimRow]:
    """Add generated rows that started at ``starts`` and become visible in ``visible_in`` s."""
    rows = [simulator.factory.make(start) for start in starts]
    return _show(simulator, rows, time.time() + visible_in)


def add_ended(
    simulator: Simulator, ends: list[datetime], *, duration_ms: int | None = None
) -> list[SimRow]:
    """Add rows whose requests ended at ``ends``, visible now, as LiteLLM records them."""
    rows = []
    for end in ends:
        row = simulator.factory.make(end)
        if duration_ms is not None:
            row.duration_ms = duration_ms
        row.start = end - timedelta(milliseconds=row.duration_ms)
        rows.append(row)
    return _show(simulator, rows, time.time())


def _show(simulator: Simulator, rows: list[SimRow], visible_at: float) -> list[SimRow]:
    for row in rows:
        row.visible_at = visible_at
    simulator.add_rows(rows)
    return rows


def ago(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


def request_ids(rows: list[SimRow]) -> list[str]:
    return [row.request_id for row in rows]


def oldest_first(rows: list[SimRow]) -> list[str]:
    """Return the request ids in the order live events carry them: by start time, then id."""
    return [row.request_id for row in sorted(rows, key=lambda row: (row.start, row.request_id))]


def tail_of(client: TestClient) -> TailService:
    return client.server.app[tail_key]


async def eventually(check: Callable[[], bool], what: str, within: float = WAIT) -> None:
    """Wait until ``check()`` holds; fail naming ``what`` after ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            while not check():  # noqa: ASYNC110 - the state has no event to wait on
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting until {what}") from None


async def polls_pass(client: TestClient, count: int = 2) -> None:
    """Wait until the poller has ended ``count`` more polls without an upstream error."""
    poller = tail_of(client).poller
    target = poller.ok_polls + count
    await eventually(lambda: poller.ok_polls >= target, f"{count} more polls succeeded")


async def all_live(client: TestClient, count: int) -> None:
    """Wait until ``count`` streams have handed over from their backfill to the live tail."""
    tail = tail_of(client)
    await eventually(
        lambda: sum(1 for subscriber in tail.subscribers if subscriber.live) == count,
        f"{count} streams are live",
    )


async def read_exactly(
    client: TestClient,
    simulator: Simulator,
    readers: list[StreamReader],
    expected: list[str],
    *,
    polls: int = 2,
) -> list[list[str]]:
    """Read each stream until ``expected`` and then a marker row arrived; return the live ids.

    The marker is added after ``polls`` more polls, and a stream gets live rows in publication
    order, so a row that those polls send twice arrives before the marker and shows here.
    """
    for reader in readers:
        await reader.read_rows(expected)
    await polls_pass(client, polls)
    marker = add_rows(simulator, [ago(0.5)])[0].request_id
    received = []
    for reader in readers:
        ids = await reader.read_rows([marker])
        assert ids[-1] == marker
        received.append(ids[:-1])
    return received


async def calls_per_poll(client: TestClient, simulator: Simulator, polls: int) -> tuple[int, int]:
    """Return ``(polls, list requests)`` seen over at least ``polls`` successful polls.

    Both counters are read in the pause after a poll, once the simulator has logged its
    requests, so each poll's requests fall on one side.
    """
    poller = tail_of(client).poller
    await polls_pass(client, 1)
    await simulator.wait_until_idle()
    polls_before, calls_before = poller.ok_polls, simulator.list_calls()
    await polls_pass(client, polls)
    await simulator.wait_until_idle()
    return poller.ok_polls - polls_before, simulator.list_calls() - calls_before


def metric_value(client: TestClient, name: str, **labels: str) -> float:
    """Return the current value of one sample of the app's Prometheus registry (0 if absent)."""
    value = tail_of(client).metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


class RawStream:
    """An SSE client on a bare socket with a small receive buffer, read only when asked.

    aiohttp's client keeps reading into its own buffer, but this one reads nothing by itself. So
    the server, down to the kernel's socket buffers, meets a viewer that does not read at all.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.text = ""
        self.events: list[Event] = []
        self.status_line = ""

    @classmethod
    async def open(cls, port: int, target: str, *, receive_buffer: int = 4096) -> RawStream:
        """Connect to 127.0.0.1:``port`` and send ``GET target``; read nothing yet."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=receive_buffer)
        request = (
            f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n"
        )
        writer.write(request.encode("ascii"))
        await writer.drain()
        return cls(reader, writer)

    async def read_event(self, name: str) -> list[Event]:
        """Read until one more event called ``name`` arrived; return every event so far."""
        before = len(named(self.events, name))
        async with asyncio.timeout(WAIT):
            if not self.status_line:
                head = await self.reader.readuntil(b"\r\n\r\n")
                self.status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            while len(named(self.events, name)) <= before:
                chunk = await self._read_chunk()
                assert chunk is not None, "the stream ended before the expected event"
                self.text += chunk.decode("utf-8")
                self.events = parse_events(self.text)
        return self.events

    async def read_to_end(self) -> None:
        """Read until the server closes the connection or resets it."""
        async with asyncio.timeout(WAIT):
            try:
                while await self.reader.read(65536):
                    pass
            except ConnectionResetError:
                pass

    async def _read_chunk(self) -> bytes | None:
        # The body uses chunked transfer coding: a hexadecimal size line, the data, CRLF.
        size_line = await self.reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0], 16)
        if size == 0:
            return None
        data = await self.reader.readexactly(size)
        await self.reader.readexactly(2)
        return data

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
