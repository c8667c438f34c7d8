"""The SSE stream ``GET /api/spend/stream`` read over loopback HTTP from the LiteLLM simulator."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import ClientPayloadError, ClientResponse
from aiohttp.test_utils import TestClient

import aria_stream.stream
from aria_stream.events import EVENT_MAX_BYTES, EVENT_MAX_ROWS, make_cursor
from aria_stream.models import parse_utc
from aria_stream.simulator import Fault, SimRow, Simulator
from aria_stream.simulator.dataset import FAILURES
from tests.conftest import ServerFactory, SimulatorFactory
from tests.sse import Event, parse_events, read_events, rows_of

KEY = "sk-secret-aria-test-key"
# A bound on every read of a stream, so that a stream that never ends fails its test quickly.
READ_TIMEOUT = 10.0


async def stream_events(client: TestClient, **params: str) -> list[Event]:
    """Open the stream with these query parameters and read it to ``done`` or an error."""
    response = await client.get("/api/spend/stream", params=params)
    assert response.status == 200
    async with asyncio.timeout(READ_TIMEOUT):
        events = await read_events(response)
    response.close()
    return events


def named(events: list[Event], name: str) -> list[Event]:
    return [event for event in events if event.event == name]


def v2_queries(simulator: Simulator) -> list[dict[str, str]]:
    return [record.query for record in simulator.requests if record.path == "/spend/logs/v2"]


async def first_v2_query(simulator: Simulator) -> dict[str, str]:
    """Return the query of the first v2 request, once the simulator has logged it.

    The simulator logs a request when its handler returns, which can be after the app has
    read the whole response.
    """
    async with asyncio.timeout(READ_TIMEOUT):
        while not v2_queries(simulator):  # noqa: ASYNC110 - the simulator has no such event
            await asyncio.sleep(0.01)
    return v2_queries(simulator)[0]


def start_time_text(row: SimRow) -> str:
    """Return the ``start_time`` the app reports for a v2 row, which LiteLLM sends in ms."""
    start = row.start.replace(microsecond=row.start.microsecond // 1000 * 1000)
    return start.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class EventReader:
    """Reads a live stream event by event, keeping what arrived after the last event read."""

    def __init__(self, response: ClientResponse) -> None:
        self.response = response
        self.text = ""

    async def read_until(self, name: str) -> list[Event]:
        """Read until an event called ``name`` is complete; return every event so far."""
        events = parse_events(self.text)
        while not any(event.event == name for event in events):
            chunk = await self.response.content.readany()
            assert chunk, f"the stream ended before an {name!r} event"
            self.text += chunk.decode("utf-8")
            events = parse_events(self.text)
        return events


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
    events = await stream_events(client, limit="120")

    names = [event.event for event in events]
    assert names[-2:] == ["progress", "done"]
    assert names.count("done") == 1
    assert events[-1].json() == {"sent": 120, "total": 120, "skipped": 0}


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


async def test_stream_entries_id_is_last_cursor(server: TestClient):
    events = await stream_events(server, limit="300")

    entries = named(events, "entries")
    assert entries
    for event in entries:
        last = event.json()[-1]
        start = parse_utc(last["start_time"])
        assert start is not None
        assert event.id == make_cursor(start, last["request_id"])


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

    assert len(rows_of(events)) == 50
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
    assert events[-1].json() == {"sent": 300, "total": 300, "skipped": 0}


async def test_stream_limit_capped_by_settings(server_factory: ServerFactory, simulator: Simulator):
    client = await server_factory(simulator, backfill_cap=30)
    events = await stream_events(client, limit="500")

    assert events[0].json()["limit"] == 30
    assert len(rows_of(events)) == 30
    assert events[-1].json()["sent"] == 30


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

    query = await first_v2_query(simulator)
    assert query["model"] == "openai/gpt-4o"
    assert query["model_group"] == "gpt-4o"
    assert query["status_filter"] == "failure"
    assert query["error_code"] == "500"
    assert query["start_date"] == "2026-01-02 03:04:05"
    assert query["end_date"] == "2030-06-07 08:09:10"


async def test_stream_since_offset_sent_as_utc(server: TestClient, simulator: Simulator):
    await stream_events(server, since="2026-01-02T05:04:05+02:00", until="2030-01-01")

    query = await first_v2_query(simulator)
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
        await read_events(response)
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
        assert v2_queries(simulator) == []
        assert named(first, "entries")[0].json()

        events = await reader.read_until("done")
    response.close()

    expected = [row.request_id for row in simulator.visible_rows()[:50]]
    assert [row["request_id"] for row in rows_of(events)] == expected


# Upstream failures.

# fault kind -> (fault, settings, error kind, status, meta endpoint, message fragments)
FAULTS: dict[str, tuple[Fault, dict[str, Any], str, int | None, str | None, list[str]]] = {
    "unauthorized": (
        Fault("unauthorized"),
        {},
        "auth",
        401,
        None,
        ["rejected the key with 401", "ARIA_LITELLM_KEY"],
    ),
    "rate_limit": (
        Fault("rate_limit", retry_after=7),
        {},
        "rate_limited",
        429,
        None,
        ["429", "retry after 7 s"],
    ),
    "html_502": (
        Fault("html_502"),
        {},
        "server_error",
        502,
        None,
        ["failed with 502", "502 Bad Gateway"],
    ),
    "html_200": (
        Fault("html_200"),
        {},
        "bad_response",
        200,
        "v2",
        ["HTML page instead of JSON", "Sign in"],
    ),
    "server_error": (
        Fault("server_error"),
        {},
        "server_error",
        500,
        None,
        ["failed with 500", "Database not connected"],
    ),
    "truncate": (
        Fault("truncate"),
        {},
        "truncated",
        200,
        "v2",
        ["closed the connection in the middle of a response after 1 rows"],
    ),
    "stall": (
        Fault("stall"),
        {"idle_timeout": 0.3},
        "timeout",
        None,
        "v2",
        ["stopped sending for 0.3 s", "ARIA_IDLE_TIMEOUT"],
    ),
    "hang": (
        Fault("hang"),
        {"first_byte_timeout": 0.3},
        "timeout",
        None,
        None,
        ["no response headers within 0.3 s", "ARIA_FIRST_BYTE_TIMEOUT"],
    ),
    "reset": (
        Fault("reset"),
        {},
        "unreachable",
        None,
        None,
        ["closed the connection before answering"],
    ),
}


async def faulty_stream(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory, name: str
) -> tuple[Simulator, str]:
    """Stream from a simulator with this fault; return the simulator and the raw body text."""
    fault, settings, *_ = FAULTS[name]
    simulator = await simulator_factory(rows=300, master_key=KEY)
    client = await server_factory(simulator, **settings)
    simulator.fault = fault
    response = await client.get("/api/spend/stream", params={"limit": "20"})
    assert response.status == 200
    reader = EventReader(response)
    async with asyncio.timeout(READ_TIMEOUT):
        await reader.read_until("upstream_error")
    response.close()
    return simulator, reader.text


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
    assert error["kind"] == kind
    assert error["status"] == status
    assert error["retry"] is False
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


async def test_stream_refused_sends_unreachable(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    simulator = await simulator_factory(rows=10, master_key=KEY)
    client = await server_factory(simulator)
    await simulator.stop_listening()
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
    assert error["retry"] is False
    assert error["message"] == (
        f"Cannot reach LiteLLM at {simulator.url}: the connection was refused; check "
        "ARIA_LITELLM_URL and that the proxy is running."
    )
    assert KEY not in reader.text


async def test_stream_unexpected_error_ends_response(
    server: TestClient, monkeypatch: pytest.MonkeyPatch
):
    """A stream that failed after its headers was answered with a second response and hung."""

    def fail(raw: dict[str, Any], full: bool) -> Any:
        raise RuntimeError("projection failed")

    monkeypatch.setattr(aria_stream.stream, "project_entry", fail)
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

# The one entries event for LINE_BREAKS_ROW: every line break and non-ASCII character is a JSON
# escape, so the event has a single data line.
LINE_BREAKS_EVENT = (
    b"id: 1735732801000000-sse-bytes-1\n"
    b"event: entries\n"
    b'data: [{"request_id":"sse-bytes-1","start_time":"2025-01-01T12:00:01.000000Z",'
    b'"duration_ms":null,"model":"cr\\rlf\\ncrlf\\r\\nend","model_group":null,"provider":null,'
    b'"status":"failure","prompt_tokens":0,"completion_tokens":0,"total_tokens":0,"spend":0.0,'
    b'"cache_hit":null,"key_alias":null,"team_id":null,"user":null,"end_user":null,'
    b'"session_id":null,"error_code":"500","error_class":"Err",'
    b'"error_message":"ls\\u2028nel\\u0085ps\\u2029emoji\\ud83d\\ude00 '
    b'</script><script>x()</script>"}]\n'
    b"\n"
)


async def raw_line_breaks_stream(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
) -> bytes:
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
    return body


async def test_stream_line_breaks_exact_bytes(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    body = await raw_line_breaks_stream(simulator_factory, server_factory)

    blocks = [block + b"\n\n" for block in body.split(b"\n\n") if block.startswith(b"id: ")]
    assert blocks[0] == LINE_BREAKS_EVENT


async def test_stream_line_breaks_one_data_line(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    body = await raw_line_breaks_stream(simulator_factory, server_factory)

    block = body[body.index(b"event: entries\n") :].split(b"\n\n")[0]
    assert block.count(b"data:") == 1
    assert b"\r" not in body
    assert body.isascii()


async def test_stream_line_breaks_parse_back(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    body = await raw_line_breaks_stream(simulator_factory, server_factory)

    rows = rows_of(parse_events(body.decode("utf-8")))
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
