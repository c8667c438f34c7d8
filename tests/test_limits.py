"""Bounds on query parameters, on open streams and on the size of one row's event."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from aria_stream.broker import LocalBroker, TailRow
from aria_stream.events import encode_json, make_cursor
from aria_stream.limits import STREAM_RETRY_AFTER
from aria_stream.models import (
    FULL_MAX_DEPTH,
    FULL_ROW_MAX_BYTES,
    LITE_TEXT_MAX_CHARS,
    project_full,
    project_lite,
)
from aria_stream.security import limiter_key
from aria_stream.simulator import Simulator
from tests.conftest import ServerFactory, SimulatorFactory
from tests.sse import Event, read_events, rows_of

READ_TIMEOUT = 10.0


def error_shape(status: int, code: str, message: str, param=None, value=None) -> dict[str, Any]:
    return {
        "ok": False,
        "status": status,
        "error": code,
        "message": message,
        "param": param,
        "value": value,
    }


async def stream_events(client: TestClient, **params: str) -> list[Event]:
    response = await client.get("/api/spend/stream", params=params)
    assert response.status == 200
    async with asyncio.timeout(READ_TIMEOUT):
        events = await read_events(response)
    response.close()
    return events


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# Query parameters.

NOW = datetime.now(UTC)
INVALID = [
    pytest.param(
        {"since": "1999-12-31"},
        "since",
        "1999-12-31",
        "since must be a date from 2000 to 2099, got '1999-12-31'",
        id="since-year",
    ),
    pytest.param(
        {"until": "2100-01-01T00:00:00Z"},
        "until",
        "2100-01-01T00:00:00Z",
        "until must be a date from 2000 to 2099, got '2100-01-01T00:00:00Z'",
        id="until-year",
    ),
    pytest.param(
        {"since": iso(NOW - timedelta(days=1832))},
        "since",
        iso(NOW - timedelta(days=1832)),
        "since must be at most 1830 days before until or now, whichever is earlier, got "
        f"since={iso(NOW - timedelta(days=1832))!r}",
        id="window-wide",
    ),
    pytest.param(
        {"model": "m" * 201},
        "model",
        "m" * 201,
        f"model must be a string of 1 to 200 characters, got {'m' * 201!r}",
        id="model-long",
    ),
    pytest.param(
        {"model_group": "g" * 201},
        "model_group",
        "g" * 201,
        f"model_group must be a string of 1 to 200 characters, got {'g' * 201!r}",
        id="model_group-long",
    ),
]


@pytest.mark.parametrize(("params", "param", "value", "message"), INVALID)
@pytest.mark.parametrize("path", ["/api/spend/stream", "/api/spend/logs"])
async def test_params_out_of_bounds_is_400(
    server: TestClient, path: str, params, param: str, value: str, message: str
):
    response = await server.get(path, params=params)

    assert response.status == 400
    assert await response.json() == error_shape(400, "invalid_parameter", message, param, value)


async def test_params_after_too_long_is_400(server: TestClient):
    after = "1:" + "0" * 2047

    response = await server.get("/api/spend/stream", params={"after": after})

    assert response.status == 400
    body = await response.json()
    assert body["param"] == "after"
    assert body["message"] == f"after must be an event id of at most 2048 characters, got {after!r}"


async def test_params_future_part_of_window_not_counted(server: TestClient):
    since = iso(NOW - timedelta(days=1000))
    until = iso(NOW + timedelta(days=3000))

    response = await server.get("/api/spend/logs", params={"since": since, "until": until})

    assert response.status == 200


async def test_params_window_at_bound_accepted(server: TestClient):
    since = iso(NOW - timedelta(days=1829))

    response = await server.get("/api/spend/logs", params={"since": since, "limit": "1"})

    assert response.status == 200


# Open streams.


async def open_stream(client: TestClient, headers: dict[str, str] | None = None):
    """Open a stream and read it to ``done``, so it keeps its slot; return the response."""
    response = await client.get("/api/spend/stream", params={"limit": "3"}, headers=headers)
    if response.status == 200:
        async with asyncio.timeout(READ_TIMEOUT):
            await read_events(response)
    return response


async def wait_for_streams(client: TestClient, count: int) -> None:
    limiter = client.server.app[limiter_key]
    async with asyncio.timeout(READ_TIMEOUT):
        while limiter.total != count:  # noqa: ASYNC110 - the limiter has no event for this
            await asyncio.sleep(0.02)


async def test_streams_over_total_get_503(server_factory: ServerFactory, simulator: Simulator):
    client = await server_factory(simulator, max_streams=2)
    first = await open_stream(client)
    second = await open_stream(client)

    refused = await client.get("/api/spend/stream", params={"limit": "3"})

    assert (first.status, second.status) == (200, 200)
    assert refused.status == 503
    assert refused.headers["Retry-After"] == str(STREAM_RETRY_AFTER)
    assert await refused.json() == error_shape(
        503,
        "too_many_streams",
        "the server has its maximum of 2 open streams; try again in 10 s",
    )
    first.close()
    second.close()


async def test_streams_slot_freed_on_close(server_factory: ServerFactory, simulator: Simulator):
    client = await server_factory(simulator, max_streams=1)
    first = await open_stream(client)
    first.close()
    await wait_for_streams(client, 0)

    second = await open_stream(client)

    assert second.status == 200
    second.close()


async def test_streams_per_client_get_429(server_factory: ServerFactory, simulator: Simulator):
    client = await server_factory(simulator, max_streams_per_client=1, behind_proxy=True)
    first = await open_stream(client, {"X-Forwarded-For": "203.0.113.1"})

    refused = await client.get(
        "/api/spend/stream", params={"limit": "3"}, headers={"X-Forwarded-For": "203.0.113.1"}
    )
    other = await open_stream(client, {"X-Forwarded-For": "203.0.113.2"})

    assert first.status == 200
    assert refused.status == 429
    assert refused.headers["Retry-After"] == str(STREAM_RETRY_AFTER)
    assert await refused.json() == error_shape(
        429,
        "too_many_streams",
        "this address has its maximum of 1 open streams; close one or try again in 10 s",
    )
    assert other.status == 200
    first.close()
    other.close()


async def test_streams_refusals_counted(server_factory: ServerFactory, simulator: Simulator):
    client = await server_factory(simulator, max_streams=1)
    first = await open_stream(client)
    await client.get("/api/spend/stream")
    await client.get("/api/spend/stream")

    metrics = await (await client.get("/metrics")).text()

    assert 'aria_stream_streams_rejected_total{status="503"} 2.0' in metrics
    first.close()


async def test_streams_count_returns_to_zero(server_factory: ServerFactory, simulator: Simulator):
    client = await server_factory(simulator, max_streams_per_client=3)
    streams = [await open_stream(client) for _ in range(3)]
    limiter = client.server.app[limiter_key]
    assert limiter.per_client == {"127.0.0.1": 3}

    for stream in streams:
        stream.close()
    await wait_for_streams(client, 0)

    assert limiter.per_client == {}


# The size of one row.


def big_row(request_id: str, start: datetime, **fields: Any) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "startTime": start.isoformat(),
        "model": "openai/gpt-4o",
        "model_group": "gpt-4o",
        "spend": 0.5,
        "metadata": {"user_api_key_alias": "big-rows"},
        **fields,
    }


async def big_row_server(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory, **fields: Any
) -> tuple[TestClient, Simulator]:
    simulator = await simulator_factory(rows=5)
    start = datetime.now(UTC) - timedelta(seconds=1)
    simulator.add_raw(big_row("big-row", start, **fields), start)
    return await server_factory(simulator), simulator


def big_event(events: list[Event]) -> Event:
    """Return the one ``entries`` event that carries the row ``big-row``."""
    [event] = [
        event
        for event in events
        if event.event == "entries" and any(row["request_id"] == "big-row" for row in event.json())
    ]
    return event


def big_row_of(events: list[Event]) -> dict[str, Any]:
    [row] = [row for row in big_event(events).json() if row["request_id"] == "big-row"]
    return row


async def test_event_two_mb_string_row_cut(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    client, _ = await big_row_server(
        simulator_factory, server_factory, response="r" * 2_000_000, messages="m" * 100_000
    )

    events = await stream_events(client, full="true", limit="6")

    event = big_event(events)
    assert len(event.data) <= FULL_ROW_MAX_BYTES
    row = big_row_of(events)
    assert row["original_bytes"] > 2_100_000
    assert row["truncated"] == {"response": 2_000_000, "messages": 100_000}
    assert row["response"] == "r" * len(row["response"])
    assert row["lite"]["request_id"] == "big-row"
    assert len(rows_of(events)) == 6


async def test_event_many_small_strings_cut(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    client, _ = await big_row_server(
        simulator_factory, server_factory, messages=[f"part {index}" for index in range(200_000)]
    )

    events = await stream_events(client, full="true", limit="6")

    event = big_event(events)
    assert len(event.data) <= FULL_ROW_MAX_BYTES
    row = big_row_of(events)
    assert row["truncated"]["messages"] == 200_000
    assert row["messages"][:3] == ["part 0", "part 1", "part 2"]
    assert row["original_bytes"] > 2_000_000


async def test_event_wide_object_cut(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    wide = {f"key-{index}": index for index in range(150_000)}
    client, _ = await big_row_server(simulator_factory, server_factory, response={"wide": wide})

    events = await stream_events(client, full="true", limit="6")

    event = big_event(events)
    assert len(event.data) <= FULL_ROW_MAX_BYTES
    row = big_row_of(events)
    assert row["truncated"]["response.wide"] == 150_000
    assert row["response"]["wide"]["key-0"] == 0


async def test_event_big_row_lite_form_whole(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    client, _ = await big_row_server(simulator_factory, server_factory, response="r" * 2_000_000)

    events = await stream_events(client, limit="6")

    row = big_row_of(events)
    assert row["request_id"] == "big-row"
    assert row["model"] == "openai/gpt-4o"
    assert row["spend"] == 0.5
    assert row["key_alias"] == "big-rows"
    assert len(json.dumps(row)) < 1000


async def test_event_small_row_unchanged(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    client, _ = await big_row_server(simulator_factory, server_factory, response="r" * 1000)

    events = await stream_events(client, full="true", limit="6")

    row = big_row_of(events)
    assert row["response"] == "r" * 1000
    assert "original_bytes" not in row
    assert "truncated" not in row


async def test_event_size_follows_setting(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    simulator = await simulator_factory(rows=5)
    start = datetime.now(UTC) - timedelta(seconds=1)
    simulator.add_raw(big_row("big-row", start, response="r" * 100_000), start)
    client = await server_factory(simulator, max_event_bytes=32 * 1024)

    events = await stream_events(client, full="true", limit="6")

    assert len(big_event(events).data) <= 32 * 1024


def test_full_row_fits_any_budget():
    row = big_row(
        "fits",
        datetime(2026, 12, 4, tzinfo=UTC),
        **{f"column_{index}": "v" * 5000 for index in range(400)},
    )

    full = project_full(row, max_bytes=20_000)

    assert len(json.dumps(full, separators=(",", ":"))) <= 20_000
    assert full["request_id"] == "fits"
    assert full["original_bytes"] > 2_000_000


def test_full_row_deep_nesting_emptied():
    deep: Any = "bottom"
    for _ in range(FULL_MAX_DEPTH + 50):
        deep = {"down": deep}
    row = big_row("deep", datetime(2026, 12, 4, tzinfo=UTC), response=deep)

    full = project_full(row)

    node = full["response"]
    depth = 1
    while node:
        node = node["down"]
        depth += 1
    assert depth == FULL_MAX_DEPTH
    path = "response" + ".down" * (FULL_MAX_DEPTH - 1)
    assert full["truncated"] == {path: 1}


def test_full_row_truncated_map_bounded():
    row = big_row(
        "many",
        datetime(2026, 12, 4, tzinfo=UTC),
        parts=[{"text": "t" * 70_000} for _ in range(150)],
    )

    full = project_full(row, max_bytes=50 * 1024 * 1024)

    assert len(full["truncated"]) == 100
    assert full["truncated"]["parts[0].text"] == 70_000


def test_lite_text_fields_cut():
    row = big_row("long-model", datetime(2026, 12, 4, tzinfo=UTC), model="m" * 10_000)

    lite = project_lite(row)

    assert lite["model"] == "m" * (LITE_TEXT_MAX_CHARS - 1) + "…"


def test_lite_long_request_id_rejected():
    row = big_row("r" * 257, datetime(2026, 12, 4, tzinfo=UTC))

    with pytest.raises(ValueError, match="row has a request_id of 257 characters, more than 256"):
        project_lite(row)


async def test_stream_long_request_id_skipped(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    simulator = await simulator_factory(rows=5)
    start = datetime.now(UTC) - timedelta(seconds=1)
    simulator.add_raw(big_row("r" * 5000, start), start)
    client = await server_factory(simulator)

    events = await stream_events(client, limit="10")

    assert [row["request_id"] for row in rows_of(events)] == [
        row.request_id for row in simulator.visible_rows() if row.request_id != "r" * 5000
    ]
    assert events[-1].event == "done"
    assert events[-1].json()["skipped"] == 1


def test_replay_buffer_bounded_by_setting():
    broker = LocalBroker(replay_bytes=100_000)
    for index in range(50):
        raw = big_row(f"row-{index}", datetime(2026, 12, 4, tzinfo=UTC), response="x" * 50_000)
        lite = project_lite(raw)
        cursor = make_cursor(lite["start_time"], lite["request_id"])
        broker.publish([TailRow.from_lite(cursor, lite, raw)], cursor)

    kept = sum(len(encode_json(row.raw)) for batch in broker._ring for row in batch.rows)

    assert kept <= 100_000
