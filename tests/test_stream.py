"""The SSE stream ``GET /api/spend/stream`` read over loopback HTTP from the LiteLLM simulator.

After ``done`` the stream stays open for the live tail, so the tests read to ``done`` and check
the backfill that precedes it.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import ClientPayloadError, ClientResponse
from aiohttp.test_utils import TestClient

import aria_stream.backfill
from aria_stream.appkeys import tail_key
from aria_stream.events import EVENT_MAX_BYTES, EVENT_MAX_ROWS, make_cursor
from aria_stream.models import parse_utc
from aria_stream.position import StreamPosition, parse_position
from aria_stream.simulator import Fault, SimRow, Simulator
from aria_stream.simulator.dataset import FAILURES
from tests.conftest import ServerFactory, SimulatorFactory
from tests.sse import Event, parse_events, rows_of

KEY = "sk-secret-aria-test-key"
# A bound on every read of a stream, so that a stream that never ends fails its test quickly.
READ_TIMEOUT = 10.0
# Settings.first_page_size: the page size of a backfill's first upstream request. The poller
# requests page_size=1 (its count request) or at least 11 rows, never this size.
FIRST_PAGE_SIZE = "5"


class EventReader:
    """Reads a live stream event by event, keeping what arrived after the last event read."""

    def __init__(self, response: ClientResponse) -> None:
        self.response = response
        self.text = ""

    async def read_until(self, name: str, *, after: int = 0) -> list[Event]:
        """Read until an event called ``name`` follows the first ``after`` events.

        Return every event read so far.
        """
        events = parse_events(self.text)
        while not any(event.event == name for event in events[after:]):
            chunk = await self.response.content.readany()
            assert chunk, f"the stream ended before an {name!r} event"
            self.text += chunk.decode("utf-8")
            events = parse_events(self.text)
        return events


def through_done(events: list[Event]) -> list[Event]:
    """Return the events up to and including the first ``done``.

    Live ``entries``, ``ping`` and upstream status events may follow ``done`` in the same read.
    """
    names = [event.event for event in events]
    assert "done" in names
    return events[: names.index("done") + 1]


async def stream_events(client: TestClient, **params: str) -> list[Event]:
    """Open the stream with these query parameters; return its events up to ``done``."""
    response = await client.get("/api/spend/stream", params=params)
    assert response.status == 200
    reader = EventReader(response)
    async with asyncio.timeout(READ_TIMEOUT):
        events = await reader.read_until("done")
    response.close()
    return through_done(events)


def named(events: list[Event], name: str) -> list[Event]:
    return [event for event in events if event.event == name]


def v2_queries(simulator: Simulator) -> list[dict[str, str]]:
    return [record.query for record in simulator.requests if record.path == "/spend/logs/v2"]


def first_page_queries(simulator: Simulator) -> list[dict[str, str]]:
    """Return the queries of backfill first pages, whose size the poller never requests."""
    return [query for query in v2_queries(simulator) if query["page_size"] == FIRST_PAGE_SIZE]


async def first_backfill_query(simulator: Simulator) -> dict[str, str]:
    """Return the query of the first backfill request, once the simulator has logged it.

    The simulator logs a request when its handler returns, which can be after the app has
    read the whole response.
    """
    async with asyncio.timeout(READ_TIMEOUT):
        while not first_page_queries(simulator):  # noqa: ASYNC110 - the simulator has no such event
            await asyncio.sleep(0.01)
    return first_page_queries(simulator)[0]


def start_time_text(row: SimRow) -> str:
    """Return the ``start_time`` the app reports for a v2 row, which LiteLLM sends in ms."""
    start = row.start.replace(microsecond=row.start.microsecond // 1000 * 1000)
    return start.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def cursor_of(row: dict[str, Any]) -> str:
    """Return the cursor of a row as the stream sent it."""
    start = parse_utc(row["start_time"])
    assert start is not None
    return make_cursor(start, row["request_id"])


def backfill_positions(
    entries: list[Event], *, limit: int, epoch: str, seq: int
) -> list[StreamPosition]:
    """Return the position that each backfill ``entries`` event must carry as its id.

    ``top`` is the first (newest) row of the backfill, ``low`` the last row of the event and
    ``remaining`` the rows still owed after it.
    """
    top = cursor_of(entries[0].json()[0])
    positions = []
    sent = 0
    for event in entries:
        rows = event.json()
        sent += len(rows)
        positions.append(
            StreamPosition(
                top=top, low=cursor_of(rows[-1]), remaining=limit - sent, epoch=epoch, seq=seq
            )
        )
    return positions


# Event order, meta and progress.


async def test_stream_meta_comes_first(server: TestClient):
    events = await stream_events(server, limit="120")

    assert events[0].event == "meta"
    assert [event.event for event in events].count("meta") == 1


async def test_stream_meta_describes_backfill(server_factory: ServerFactory, simulator: Simulator):
    client = await server_factory(simulator, retry_ms=1234)
    events = await stream_events(
        client, limit="120", since="2026-01-02T03:04:05Z", until="2030-01-01T00:00:00Z"
    )

    meta = events[0]
    assert meta.json() == {
        "source": "litellm",
        "origin": "127.0.0.1",
        "endpoint": "v2",
        "window": {"since": "2026-01-02T03:04:05Z", "until": "2030-01-01T00:00:00Z"},
        "limit": 120,
        "full": False,
        "total": None,
        "live": True,
    }


async def test_stream_meta_sets_retry(server_factory: ServerFactory, simulator: Simulator):
    client = await server_factory(simulator, retry_ms=1234)
    events = await stream_events(client, limit="5")

    assert events[0].retry == 1234


async def test_stream_default_window_is_lookback(
    server_factory: ServerFactory, simulator: Simulator
):
    client = await server_factory(simulator, lookback_hours=5)
    before = datetime.now(UTC).replace(microsecond=0)
    events = await stream_events(client, limit="5")
    after = datetime.now(UTC)

    window = events[0].json()["window"]
    since = datetime.strptime(window["since"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    until = datetime.strptime(window["until"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before <= until <= after
    assert until - since == timedelta(hours=5)


async def test_stream_progress_counts_rows(server_factory: ServerFactory, simulator: Simulator):
    client = await server_factory(simulator, first_page_size=50)
    events = await stream_events(client, limit="120")

    progress = [event.json() for event in named(events, "progress")]
    assert progress[0] == {"sent": 50, "total": 120, "skipped": 0}
    assert progress[-1] == {"sent": 120, "total": 120, "skipped": 0}
    assert [item["sent"] for item in progress] == sorted(item["sent"] for item in progress)


async def test_stream_done_ends_backfill(server_factory: ServerFactory, simulator: Simulator):
    client = await server_factory(simulator)
    response = await client.get("/api/spend/stream", params={"limit": "120"})
    reader = EventReader(response)
    async with asyncio.timeout(READ_TIMEOUT):
        events = await reader.read_until("done")
    response.close()

    backfill = through_done(events)
    names = [event.event for event in backfill]
    assert [event.event for event in events].count("done") == 1
    assert backfill[-1].json() == {"sent": 120, "total": 120, "skipped": 0}
    assert names[-2:] == ["progress", "done"]


async def test_stream_pings_after_done(server_factory: ServerFactory, simulator: Simulator):
    client = await server_factory(simulator, ping_interval=0.5)
    before = datetime.now(UTC)
    response = await client.get("/api/spend/stream", params={"limit": "20"})
    reader = EventReader(response)
    async with asyncio.timeout(READ_TIMEOUT):
        backfill = through_done(await reader.read_until("done"))
        events = await reader.read_until("ping", after=len(backfill))
    after = datetime.now(UTC)
    response.close()

    # The simulator adds no rows, so the live tail has nothing to send before the heartbeat.
    ping = events[len(backfill)]
    assert ping.event == "ping"
    assert list(ping.json()) == ["time"]
    sent_at = datetime.strptime(ping.json()["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert before <= sent_at.replace(tzinfo=UTC) <= after


# Rows and their events.


async def test_stream_rows_match_simulator(server: TestClient, simulator: Simulator):
    events = await stream_events(server, limit="120")

    rows = rows_of(events)
    expected = simulator.visible_rows()[:120]
    assert [row["request_id"] for row in rows] == [row.request_id for row in expected]
    for row, sim_row in zip(rows, expected, strict=True):
        assert row["start_time"] == start_time_text(sim_row)
        assert row["model"] == sim_row.profile.model
        assert row["model_group"] == sim_row.profile.group
        assert row["status"] == ("failure" if sim_row.failed else "success")
        assert row["duration_ms"] == sim_row.duration_ms
        assert row["prompt_tokens"] == sim_row.prompt_tokens
        assert row["spend"] == sim_row.spend


async def test_stream_lite_rows_have_no_metadata(server: TestClient):
    events = await stream_events(server, limit="20")

    rows = rows_of(events)
    assert len(rows) == 20
    assert all("metadata" not in row for row in rows)


async def test_stream_entries_id_is_position(server: TestClient, simulator: Simulator):
    broker = server.server.app[tail_key].broker
    events = await stream_events(server, limit="300")

    entries = named(events, "entries")
    assert entries[0].json()[0]["request_id"] == simulator.visible_rows()[0].request_id
    # No batch was published before this first stream subscribed, so its sequence is 0.
    expected = backfill_positions(entries, limit=300, epoch=broker.epoch, seq=0)
    assert [parse_position(event.id or "") for event in entries] == expected
    assert [event.id for event in entries] == [position.encode() for position in expected]
    assert expected[-1].remaining == 0


async def test_stream_entries_within_row_limit(server: TestClient):
    events = await stream_events(server, limit="300")

    counts = [len(event.json()) for event in named(events, "entries")]
    assert sum(counts) == 300
    assert max(counts) <= EVENT_MAX_ROWS


async def test_stream_entries_within_byte_limit(server: TestClient):
    events = await stream_events(server, limit="60", full="true")

    entries = named(events, "entries")
    assert sum(len(event.json()) for event in entries) == 60
    for event in entries:
        size = len(event.data.encode("utf-8"))
        assert size <= EVENT_MAX_BYTES or len(event.json()) == 1


async def test_stream_full_rows_have_metadata(server: TestClient, simulator: Simulator):
    events = await stream_events(server, limit="30", full="true")

    rows = rows_of(events)
    expected = simulator.visible_rows()[:30]
    assert [row["request_id"] for row in rows] == [row.request_id for row in expected]
    for row, sim_row in zip(rows, expected, strict=True):
        assert isinstance(row["metadata"], dict)
        assert row["metadata"]["litellm_call_id"] == sim_row.call_id
        assert row["lite"]["request_id"] == sim_row.request_id


async def test_stream_full_rows_hide_key(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    simulator = await simulator_factory(rows=50, master_key=KEY)
    client = await server_factory(simulator)
    response = await client.get("/api/spend/stream", params={"full": "true"})
    reader = EventReader(response)
    async with asyncio.timeout(READ_TIMEOUT):
        events = await reader.read_until("done")
    response.close()

    assert len(rows_of(through_done(events))) == 50
    assert KEY not in reader.text


async def test_stream_meta_reports_full(server: TestClient):
    events = await stream_events(server, limit="3", full="true")

    assert events[0].json()["full"] is True


# Limits.


async def test_stream_limit_defaults_to_200(server: TestClient, simulator: Simulator):
    events = await stream_events(server)

    assert events[0].json()["limit"] == 200
    rows = rows_of(events)
    assert [row["request_id"] for row in rows] == [
        row.request_id for row in simulator.visible_rows()[:200]
    ]


async def test_stream_limit_max_is_accepted(server: TestClient, simulator: Simulator):
    events = await stream_events(server, limit="10000")

    assert events[0].json()["limit"] == 10000
    assert len(rows_of(events)) == len(simulator.visible_rows())
    assert named(events, "done")[0].json() == {"sent": 300, "total": 300, "skipped": 0}


async def test_stream_limit_capped_by_settings(server_factory: ServerFactory, simulator: Simulator):
    client = await server_factory(simulator, backfill_cap=30)
    events = await stream_events(client, limit="500")

    assert events[0].json()["limit"] == 30
    assert len(rows_of(events)) == 30
    assert named(events, "done")[0].json()["sent"] == 30


# Filters.


async def test_stream_filters_sent_upstream(server: TestClient, simulator: Simulator):
    await stream_events(
        server,
        model="openai/gpt-4o",
        model_group="gpt-4o",
        status="failure",
        error_code="500",
        since="2026-01-02T03:04:05.678Z",
        until="2030-06-07T08:09:10Z",
    )

    query = await first_backfill_query(simulator)
    assert query["model"] == "openai/gpt-4o"
    assert query["model_group"] == "gpt-4o"
    assert query["status_filter"] == "failure"
    assert query["error_code"] == "500"
    assert query["start_date"] == "2026-01-02 03:04:05"
    assert query["end_date"] == "2030-06-07 08:09:10"


async def test_stream_since_offset_sent_as_utc(server: TestClient, simulator: Simulator):
    await stream_events(server, since="2026-01-02T05:04:05+02:00", until="2030-01-01")

    query = await first_backfill_query(simulator)
    assert query["start_date"] == "2026-01-02 03:04:05"
    assert query["end_date"] == "2030-01-01 00:00:00"


def _error_code(row: SimRow) -> str | None:
    return FAILURES[row.profile.failure][0] if row.failed else None


LOCAL_FILTERS = [
    pytest.param({"status": "failure"}, lambda row: row.failed, id="status"),
    pytest.param(
        {"model": "openai/gpt-4o"}, lambda row: row.profile.model == "openai/gpt-4o", id="model"
    ),
    pytest.param(
        {"model_group": "free-llama"},
        lambda row: row.profile.group == "free-llama",
        id="model_group",
    ),
    pytest.param({"error_code": "429"}, lambda row: _error_code(row) == "429", id="error_code"),
    pytest.param(
        {"status": "failure", "model_group": "local-qwen"},
        lambda row: row.failed and row.profile.group == "local-qwen",
        id="status+model_group",
    ),
]


@pytest.mark.parametrize(("filters", "predicate"), LOCAL_FILTERS)
async def test_stream_filters_applied_locally(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory, filters, predicate
):
    # Legacy /spend/logs ignores every filter, so only the app's own filtering can apply them.
    simulator = await simulator_factory(rows=300, variant="legacy")
    client = await server_factory(simulator)
    events = await stream_events(client, limit="10000", **filters)

    expected = [row.request_id for row in simulator.visible_rows() if predicate(row)]
    assert expected
    assert [row["request_id"] for row in rows_of(events)] == expected


async def test_stream_window_applied_locally(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    simulator = await simulator_factory(rows=300, variant="legacy")
    client = await server_factory(simulator)
    visible = simulator.visible_rows()
    since, until = visible[100].start, visible[20].start
    events = await stream_events(client, limit="10000", since=iso(since), until=iso(until))

    expected = [row.request_id for row in visible[20:101]]
    assert [row["request_id"] for row in rows_of(events)] == expected


async def test_stream_legacy_meta_has_endpoint(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    simulator = await simulator_factory(rows=30, variant="legacy")
    client = await server_factory(simulator)
    events = await stream_events(client, limit="10")

    assert events[0].json()["endpoint"] == "legacy"
    assert len(rows_of(events)) == 10


# Response headers.


async def test_stream_headers_mark_event_stream(server: TestClient):
    response = await server.get(
        "/api/spend/stream", params={"limit": "1"}, headers={"Accept-Encoding": "gzip"}
    )
    async with asyncio.timeout(READ_TIMEOUT):
        await EventReader(response).read_until("done")
    response.close()

    assert response.headers["Content-Type"] == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache, no-transform"
    assert response.headers["X-Accel-Buffering"] == "no"
    assert "Content-Encoding" not in response.headers


# Incremental delivery.


async def test_stream_rows_arrive_before_page_ends(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    # A v2 row is about 11 KB, so the first page of 50 rows takes more than a second to send.
    simulator = await simulator_factory(rows=300, bandwidth=400_000)
    client = await server_factory(simulator, first_page_size=50)
    response = await client.get("/api/spend/stream", params={"limit": "50"})
    reader = EventReader(response)

    async with asyncio.timeout(READ_TIMEOUT):
        first = await reader.read_until("entries")
        # The simulator logs a request only when its handler returns, after the last byte.
        assert first_page_queries(simulator) == []
        assert named(first, "entries")[0].json()

        events = await reader.read_until("done")
    response.close()

    expected = [row.request_id for row in simulator.visible_rows()[:50]]
    assert [row["request_id"] for row in rows_of(through_done(events))] == expected


# Upstream failures.
#
# A simulator fault meets every spend-log request, the poller's too. The poller polls once as
# soon as the first stream opens, then sleeps poll_interval, so most tests below start it first
# (start_poller) and set a fault with count=1 afterwards. The next stream's backfill then meets
# the fault well before the poller polls again.

FAULT_LIMIT = 20
# Equal poll_interval and max_backoff make every backfill retry wait 0.5 s. A first page larger
# than FAULT_LIMIT makes the backfill end inside it, before LiteLLM's total arrives.
FAULT_SETTINGS: dict[str, Any] = {"poll_interval": 0.5, "max_backoff": 0.5, "first_page_size": 50}
RETRY_IN = 0.5

# fault kind -> (fault, settings, error kind, status, meta endpoint, message fragments)
FAULTS: dict[str, tuple[Fault, dict[str, Any], str, int | None, str | None, list[str]]] = {
    "unauthorized": (
        Fault("unauthorized", count=1),
        {},
        "auth",
        401,
        None,
        ["rejected the key with 401", "ARIA_LITELLM_KEY"],
    ),
    "rate_limit": (
        Fault("rate_limit", count=1, retry_after=7),
        {},
        "rate_limited",
        429,
        None,
        ["429", "retry after 7 s"],
    ),
    "html_502": (
        Fault("html_502", count=1),
        {},
        "server_error",
        502,
        None,
        ["failed with 502", "502 Bad Gateway"],
    ),
    "html_200": (
        Fault("html_200", count=1),
        {},
        "bad_response",
        200,
        "v2",
        ["HTML page instead of JSON", "Sign in"],
    ),
    "server_error": (
        Fault("server_error", count=1),
        {},
        "server_error",
        500,
        None,
        ["failed with 500", "Database not connected"],
    ),
    "truncate": (
        Fault("truncate", count=1),
        {},
        "truncated",
        200,
        "v2",
        ["closed the connection in the middle of a response after 1 rows"],
    ),
    "stall": (
        Fault("stall", count=1),
        {"idle_timeout": 0.3},
        "timeout",
        None,
        "v2",
        ["stopped sending for 0.3 s", "ARIA_IDLE_TIMEOUT"],
    ),
    "hang": (
        Fault("hang", count=1),
        {"first_byte_timeout": 0.3},
        "timeout",
        None,
        None,
        ["no response headers within 0.3 s", "ARIA_FIRST_BYTE_TIMEOUT"],
    ),
    "reset": (
        Fault("reset", count=1),
        {},
        "unreachable",
        None,
        None,
        ["closed the connection before answering"],
    ),
}


async def start_poller(client: TestClient) -> None:
    """Open and read one stream, then wait until the poller it started has polled once."""
    await stream_events(client, limit="1")
    poller = client.server.app[tail_key].poller
    async with asyncio.timeout(READ_TIMEOUT):
        while poller.last_ok_at is None:  # noqa: ASYNC110 - the poller has no such event
            await asyncio.sleep(0.01)


@dataclass
class FaultyStream:
    """A stream opened while the simulator has a fault, and the broker state it started at."""

    simulator: Simulator
    response: ClientResponse
    epoch: str
    seq: int


async def open_faulty_stream(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory, name: str
) -> FaultyStream:
    """Start the poller, set the fault ``name`` and open a stream of ``FAULT_LIMIT`` rows."""
    fault, settings, *_ = FAULTS[name]
    simulator = await simulator_factory(rows=300, master_key=KEY)
    client = await server_factory(simulator, **FAULT_SETTINGS, **settings)
    await start_poller(client)
    broker = client.server.app[tail_key].broker
    epoch, seq = broker.epoch, broker.seq
    # The simulator decrements the count of its fault, so each test gets its own copy.
    simulator.fault = replace(fault)
    response = await client.get("/api/spend/stream", params={"limit": str(FAULT_LIMIT)})
    assert response.status == 200
    return FaultyStream(simulator, response, epoch, seq)


async def faulty_stream(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory, name: str
) -> tuple[Simulator, str]:
    """Stream with the fault ``name`` to the first ``upstream_error``; return the raw text."""
    stream = await open_faulty_stream(simulator_factory, server_factory, name)
    reader = EventReader(stream.response)
    async with asyncio.timeout(READ_TIMEOUT):
        await reader.read_until("upstream_error")
    stream.response.close()
    return stream.simulator, reader.text


async def recovered_stream(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory, name: str
) -> tuple[FaultyStream, list[Event]]:
    """Stream with the fault ``name`` to ``done``; return the stream and its backfill events."""
    stream = await open_faulty_stream(simulator_factory, server_factory, name)
    reader = EventReader(stream.response)
    async with asyncio.timeout(READ_TIMEOUT):
        events = await reader.read_until("done")
    stream.response.close()
    return stream, through_done(events)


@pytest.mark.parametrize("name", list(FAULTS))
async def test_stream_fault_sends_one_error(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory, name: str
):
    _, _, kind, status, endpoint, _ = FAULTS[name]
    _, text = await faulty_stream(simulator_factory, server_factory, name)
    events = parse_events(text)

    assert events[0].event == "meta"
    assert events[0].json()["endpoint"] == endpoint
    errors = named(events, "upstream_error")
    assert len(errors) == 1
    assert events[-1] is errors[0]
    error = errors[0].json()
    assert list(error) == ["kind", "status", "message", "retry", "retry_in"]
    assert error["kind"] == kind
    assert error["status"] == status
    assert error["retry"] is True
    assert error["retry_in"] == RETRY_IN
    assert named(events, "done") == []


@pytest.mark.parametrize("name", list(FAULTS))
async def test_stream_fault_message_explains(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory, name: str
):
    fragments = FAULTS[name][5]
    simulator, text = await faulty_stream(simulator_factory, server_factory, name)
    message = named(parse_events(text), "upstream_error")[0].json()["message"]

    assert message.startswith(f"LiteLLM at {simulator.url} ")
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize("name", list(FAULTS))
async def test_stream_fault_hides_key(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory, name: str
):
    _, text = await faulty_stream(simulator_factory, server_factory, name)

    assert KEY not in text
    assert "secret-aria" not in text


@pytest.mark.parametrize("name", ["truncate", "stall"])
async def test_stream_fault_keeps_rows_before_cut(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory, name: str
):
    simulator, text = await faulty_stream(simulator_factory, server_factory, name)
    events = parse_events(text)

    # The simulator cuts its body in the middle of the second row.
    names = [event.event for event in events]
    assert names == ["meta", "entries", "upstream_error"]
    assert [row["request_id"] for row in rows_of(events)] == [
        simulator.visible_rows()[0].request_id
    ]


@pytest.mark.parametrize("name", list(FAULTS))
async def test_stream_fault_backfill_recovers(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory, name: str
):
    stream, events = await recovered_stream(simulator_factory, server_factory, name)

    names = [event.event for event in events]
    assert names[0] == "meta"
    assert names.count("meta") == 1
    assert names.count("upstream_error") == 1
    error_at = names.index("upstream_error")
    before = [row["request_id"] for row in rows_of(events[:error_at])]
    after = [row["request_id"] for row in rows_of(events[error_at:])]
    expected = [row.request_id for row in stream.simulator.visible_rows()[:FAULT_LIMIT]]
    assert len(after) > 0
    assert before + after == expected
    # The backfill stops inside its first page, before LiteLLM's total arrives.
    assert events[-1].json() == {"sent": FAULT_LIMIT, "total": None, "skipped": 0}


@pytest.mark.parametrize("name", ["truncate", "stall"])
async def test_stream_fault_positions_continue(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory, name: str
):
    stream, events = await recovered_stream(simulator_factory, server_factory, name)

    entries = named(events, "entries")
    # The one row before the cut, then the other rows, each event naming the same newest row.
    assert len(entries[0].json()) == 1
    expected = backfill_positions(entries, limit=FAULT_LIMIT, epoch=stream.epoch, seq=stream.seq)
    assert [parse_position(event.id or "") for event in entries] == expected
    assert expected[0].remaining == FAULT_LIMIT - 1
    assert expected[-1].remaining == 0


async def test_stream_refused_sends_unreachable(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    simulator = await simulator_factory(rows=10, master_key=KEY)
    client = await server_factory(simulator, **FAULT_SETTINGS)
    await start_poller(client)
    # Stopping the simulator also closes the connections the app keeps alive to it.
    await simulator.stop()
    response = await client.get("/api/spend/stream", params={"limit": "5"})
    reader = EventReader(response)
    async with asyncio.timeout(READ_TIMEOUT):
        events = await reader.read_until("upstream_error")
    response.close()

    assert [event.event for event in events] == ["meta", "upstream_error"]
    assert events[0].json()["endpoint"] is None
    error = events[1].json()
    assert error["kind"] == "unreachable"
    assert error["status"] is None
    assert error["retry"] is True
    assert error["retry_in"] == RETRY_IN
    assert error["message"] == (
        f"Cannot reach LiteLLM at {simulator.url}: the connection was refused; check "
        "ARIA_LITELLM_URL and that the proxy is running."
    )
    assert KEY not in reader.text


async def test_stream_shared_failure_sends_one_error(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    # The first two requests fail: the poller's first poll and the backfill's first page.
    simulator = await simulator_factory(rows=300, fault=Fault("server_error", count=2))
    client = await server_factory(simulator, **FAULT_SETTINGS)
    events = await stream_events(client, limit=str(FAULT_LIMIT))

    names = [event.event for event in events]
    expected = [row.request_id for row in simulator.visible_rows()[:FAULT_LIMIT]]
    assert [row["request_id"] for row in rows_of(events)] == expected
    assert names[0] == "meta"
    assert names.count("upstream_error") == 1


async def test_stream_retry_in_includes_retry_after(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    simulator = await simulator_factory(rows=300)
    client = await server_factory(simulator, poll_interval=0.5, max_backoff=5.0)
    await start_poller(client)
    simulator.fault = Fault("rate_limit", count=1, retry_after=1.5)
    response = await client.get("/api/spend/stream", params={"limit": str(FAULT_LIMIT)})
    reader = EventReader(response)
    async with asyncio.timeout(READ_TIMEOUT):
        events = await reader.read_until("upstream_error")
    response.close()

    error = named(events, "upstream_error")[0].json()
    assert error["kind"] == "rate_limited"
    assert error["retry_in"] == 1.5


async def test_stream_unexpected_error_ends_response(
    server: TestClient, monkeypatch: pytest.MonkeyPatch
):
    """A stream that failed after its headers was answered with a second response and hung."""

    def fail(raw: dict[str, Any], full: bool) -> Any:
        raise RuntimeError("projection failed")

    monkeypatch.setattr(aria_stream.backfill, "project_entry", fail)
    response = await server.get("/api/spend/stream", params={"limit": "5"})
    assert response.status == 200

    with pytest.raises(ClientPayloadError):
        async with asyncio.timeout(READ_TIMEOUT):
            await response.read()


# Exact bytes on the wire.

LINE_BREAKS_ROW = {
    "request_id": "sse-bytes-1",
    "startTime": "2025-01-01T12:00:01.000+00:00",
    "model": "cr\rlf\ncrlf\r\nend",
    "status": "failure",
    "metadata": {
        "error_information": {
            "error_code": "500",
            "error_class": "Err",
            "error_message": "ls\u2028nel\u0085ps\u2029emoji\U0001f600 "
            "</script><script>x()</script>",
        }
    },
}

LINE_BREAKS_CURSOR = "1735732801000000-sse-bytes-1"
# The one entries event for LINE_BREAKS_ROW after its id line: every line break and non-ASCII
# character is a JSON escape, so the event has a single data line.
LINE_BREAKS_EVENT = (
    b"event: entries\n"
    b'data: [{"request_id":"sse-bytes-1","start_time":"2025-01-01T12:00:01.000000Z",'
    b'"model":"cr\\rlf\\ncrlf\\r\\nend",'
    b'"status":"failure","prompt_tokens":0,"completion_tokens":0,"total_tokens":0,"spend":0.0,'
    b'"error_code":"500","error_class":"Err",'
    b'"error_message":"ls\\u2028nel\\u0085ps\\u2029emoji\\ud83d\\ude00 '
    b'</script><script>x()</script>"}]\n'
    b"\n"
)


def line_breaks_id(epoch: str) -> bytes:
    """Return the id line of LINE_BREAKS_EVENT.

    Its row is both the newest and the oldest row of the backfill, 199 rows of the default
    limit of 200 are still owed, and no live batch was published before the stream subscribed.
    """
    position = f"1:{LINE_BREAKS_CURSOR}:{LINE_BREAKS_CURSOR}:199:{epoch}:0"
    return f"id: {position}\n".encode()


async def raw_line_breaks_stream(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
) -> tuple[bytes, str]:
    """Stream LINE_BREAKS_ROW to ``done``; return the raw body and the broker's epoch."""
    simulator = await simulator_factory(rows=0)
    simulator.add_raw(LINE_BREAKS_ROW, datetime(2025, 1, 1, 12, 0, 1, tzinfo=UTC))
    client = await server_factory(simulator)
    response = await client.get(
        "/api/spend/stream",
        params={"since": "2025-01-01T00:00:00Z", "until": "2025-01-02T00:00:00Z"},
    )
    body = b""
    async with asyncio.timeout(READ_TIMEOUT):
        while b"event: done\n" not in body:
            chunk = await response.content.readany()
            assert chunk, "the stream ended before its done event"
            body += chunk
    response.close()
    return body, client.server.app[tail_key].broker.epoch


async def test_stream_line_breaks_exact_bytes(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    body, epoch = await raw_line_breaks_stream(simulator_factory, server_factory)

    blocks = [block + b"\n\n" for block in body.split(b"\n\n") if block.startswith(b"id: ")]
    assert blocks[0] == line_breaks_id(epoch) + LINE_BREAKS_EVENT


async def test_stream_line_breaks_one_data_line(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    body, _ = await raw_line_breaks_stream(simulator_factory, server_factory)

    block = body[body.index(b"event: entries\n") :].split(b"\n\n")[0]
    assert block.count(b"data:") == 1
    assert b"\r" not in body
    assert body.isascii()


async def test_stream_line_breaks_parse_back(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    body, _ = await raw_line_breaks_stream(simulator_factory, server_factory)

    rows = rows_of(through_done(parse_events(body.decode("utf-8"))))
    error_information = LINE_BREAKS_ROW["metadata"]["error_information"]  # type: ignore[index]
    assert len(rows) == 1
    assert rows[0]["model"] == LINE_BREAKS_ROW["model"]
    assert rows[0]["error_message"] == error_information["error_message"]
    assert json.loads(LINE_BREAKS_EVENT.split(b"data: ")[1])[0] == rows[0]


# Invalid parameters.

STREAM_INVALID = [
    pytest.param(
        {"limit": "10001"},
        "limit",
        "10001",
        "limit must be an integer from 1 to 10000, got '10001'",
        id="limit-too-large",
    ),
    pytest.param(
        {"limit": "0"},
        "limit",
        "0",
        "limit must be an integer from 1 to 10000, got '0'",
        id="limit-zero",
    ),
    pytest.param(
        {"full": "maybe"}, "full", "maybe", "full must be true or false, got 'maybe'", id="full"
    ),
    pytest.param(
        {"status": "broken"},
        "status",
        "broken",
        "status must be one of: success, failure, got 'broken'",
        id="status",
    ),
    pytest.param(
        {"since": "2026-12-05", "until": "2026-12-04"},
        "since",
        "2026-12-05",
        "since must not be later than until, got since='2026-12-05' and until='2026-12-04'",
        id="since-after-until",
    ),
]


@pytest.mark.parametrize(("params", "param", "value", "message"), STREAM_INVALID)
async def test_stream_invalid_parameter_is_400(
    server: TestClient, simulator: Simulator, params, param, value, message
):
    response = await server.get("/api/spend/stream", params=params)

    assert response.status == 400
    assert response.content_type == "application/json"
    assert await response.json() == {
        "ok": False,
        "status": 400,
        "error": "invalid_parameter",
        "message": message,
        "param": param,
        "value": value,
    }
    assert v2_queries(simulator) == []
