"""Property tests: any JSON row survives splitting, projection, SSE framing and an SSE client.

Rows are generated with any Unicode (lone surrogates, U+2028, NUL and CR included) and any
nesting, sent as LiteLLM would send them (UTF-8, surrogates as ``\\u`` escapes), and must parse
back in an SSE client to the same values.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from aria_stream.app import create_app
from aria_stream.events import encode_json, join_rows, make_cursor
from aria_stream.framing import sse_frame
from aria_stream.jsonrows import RowSplitter
from aria_stream.models import KEY_HASH_FIELDS, SECRET_HEADERS, parse_utc, project_full
from aria_stream.redact import contains_secret
from aria_stream.settings import Settings
from aria_stream.simulator import Simulator, SimulatorConfig
from tests.sse import parse_events, read_events, rows_of

# Keys the full form adds or rewrites; generated rows leave them out.
RESERVED_TOP = {"request_id", "startTime", "metadata", "lite", "truncated", "original_bytes"}

any_text = st.text(alphabet=st.characters(codec=None, categories=None), max_size=40)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | any_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(any_text, children, max_size=5)
    ),
    max_leaves=30,
)
request_ids = st.text(alphabet=st.characters(codec=None, categories=None), min_size=1, max_size=60)


def is_rewritten(value: Any) -> bool:
    """Check whether the full form would rewrite part of ``value`` (a key hash or a header)."""
    if isinstance(value, list):
        return any(is_rewritten(item) for item in value)
    if isinstance(value, dict):
        for key, item in value.items():
            if key.lower() in KEY_HASH_FIELDS or key.lower() == "headers":
                return True
            if key.lower() in SECRET_HEADERS or is_rewritten(item):
                return True
    return False


@st.composite
def rows(draw: st.DrawFn, start: datetime = datetime(2026, 12, 4, 20, 0, tzinfo=UTC)) -> dict:
    extra = draw(st.dictionaries(any_text, json_values, max_size=6))
    metadata = draw(st.dictionaries(any_text, json_values, max_size=4))
    extra = {key: value for key, value in extra.items() if key not in RESERVED_TOP}
    assume(not is_rewritten(extra) and not is_rewritten(metadata))
    micros = draw(st.integers(min_value=0, max_value=3_600_000_000))
    moment = start - timedelta(microseconds=micros)
    row = {
        "request_id": draw(request_ids),
        "startTime": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "metadata": metadata,
        **extra,
    }
    # Hypothesis also draws string constants of the code, such as the simulator's key. Apps in
    # this process registered such keys as secrets, and their redaction rewrites them on purpose.
    assume(not contains_secret(json.dumps(row, ensure_ascii=False)))
    return row


def upstream_bytes(row: dict[str, Any]) -> bytes:
    """Encode a row as UTF-8 JSON; a lone surrogate becomes its ``\\uXXXX`` escape."""
    return json.dumps(row, ensure_ascii=False).encode("utf-8", "backslashreplace")


def assert_same_row(received: dict[str, Any], sent: dict[str, Any]) -> None:
    for key, value in sent.items():
        if key == "startTime":
            continue
        assert received[key] == value, key
    assert received["lite"]["request_id"] == sent["request_id"]
    start = parse_utc(sent["startTime"])
    assert start is not None
    assert parse_utc(received["lite"]["start_time"]) == start


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(row=rows(), cuts=st.lists(st.integers(min_value=1, max_value=4000), max_size=6))
def test_row_survives_split_projection_and_framing(row: dict[str, Any], cuts: list[int]):
    body = b'{"data":[' + upstream_bytes(row) + b'],"total":1}'
    splitter = RowSplitter()
    items: list[Any] = []
    position = 0
    for cut in sorted(set(cuts)):
        items.extend(splitter.feed(body[position:cut]))
        position = max(position, cut)
    items.extend(splitter.feed(body[position:]))
    items.extend(splitter.close())
    assert len(items) == 1

    full = project_full(items[0])
    start = parse_utc(row["startTime"])
    assert start is not None
    frame = sse_frame(
        "entries", join_rows([encode_json(full)]), id=make_cursor(start, row["request_id"])
    )
    [event] = parse_events(frame.decode("ascii"))

    assert event.event == "entries"
    [received] = event.json()
    assert_same_row(received, row)


def unique_by_id(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for row in batch:
        seen.setdefault(row["request_id"], row)
    return list(seen.values())


async def stream_through_server(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Serve ``batch`` from a simulator and read it back as full rows from the app's stream."""
    simulator = Simulator(SimulatorConfig(rows=0))
    await simulator.start("127.0.0.1", 0)
    for row in batch:
        start = parse_utc(row["startTime"])
        assert start is not None
        simulator.add_raw(upstream_bytes(row), start, request_id=row["request_id"])
    settings = Settings(litellm_url=simulator.url, litellm_key=simulator.config.master_key)
    client = TestClient(TestServer(create_app(settings), host="127.0.0.1"))
    await client.start_server()
    try:
        response = await client.get(
            "/api/spend/stream", params={"full": "true", "limit": str(len(batch))}
        )
        async with asyncio.timeout(10):
            events = await read_events(response)
        response.close()
    finally:
        await client.close()
        await simulator.stop()
    return rows_of(events)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.lists(
        rows(start=datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)),
        min_size=1,
        max_size=5,
    )
)
def test_rows_survive_server_round_trip(batch: list[dict[str, Any]]):
    batch = unique_by_id(batch)

    received = asyncio.run(stream_through_server(batch))

    assert sorted(row["request_id"] for row in received) == sorted(
        row["request_id"] for row in batch
    )
    by_id = {row["request_id"]: row for row in received}
    for row in batch:
        assert_same_row(by_id[row["request_id"]], row)
