"""The LiteLLM simulator follows LiteLLM's spend-log HTTP contract, checked over loopback HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from aria_stream.simulator import DEFAULT_KEY, Fault, Simulator
from aria_stream.simulator.dataset import PROFILES
from tests.conftest import SimulatorFactory

WIDE = {"start_date": "2000-01-01 00:00:00", "end_date": "2100-01-01 00:00:00"}
AUTH = {"Authorization": f"Bearer {DEFAULT_KEY}"}


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A plain httpx client that sends the simulator's default master key."""
    async with httpx.AsyncClient(headers=AUTH, timeout=10) as client:
        yield client


async def get(
    http: httpx.AsyncClient, simulator: Simulator, path: str, **params: str
) -> httpx.Response:
    return await http.get(simulator.url + path, params=params)


def ids_of(response: httpx.Response) -> list[str]:
    body = response.json()
    rows = body["data"] if isinstance(body, dict) else body
    return [row["request_id"] for row in rows]


def proxy_error(message: str, error_type: str, param: str | None, code: int) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": str(code)}}


def litellm_date(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


# Authentication.


@pytest.mark.parametrize("path", ["/spend/logs/v2", "/spend/logs/ui", "/spend/logs"])
async def test_auth_missing_key_rejected(simulator, path):
    async with httpx.AsyncClient() as client:
        response = await client.get(simulator.url + path, params=WIDE)

    assert response.status_code == 401
    assert response.json() == proxy_error(
        "Authentication Error, No api key passed in.", "auth_error", "None", 401
    )


async def test_auth_wrong_key_rejected(simulator):
    key = "sk-not-the-master-key"
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}) as client:
        response = await client.get(simulator.url + "/spend/logs/v2", params=WIDE)

    assert response.status_code == 401
    hashed = hashlib.sha256(key.encode()).hexdigest()
    assert response.json() == proxy_error(
        f"Authentication Error, Invalid proxy server token passed. key={hashed}, not found in "
        "db. Create key via `/key/generate` call.",
        "token_not_found_in_db",
        "key",
        401,
    )


@pytest.mark.parametrize(
    "header", [f"Basic {DEFAULT_KEY}", f"Bearer {DEFAULT_KEY} extra"], ids=["basic", "two-words"]
)
async def test_auth_malformed_header_rejected(simulator, header):
    async with httpx.AsyncClient(headers={"Authorization": header}) as client:
        response = await client.get(simulator.url + "/spend/logs/v2", params=WIDE)

    assert response.status_code == 401
    assert response.json() == proxy_error(
        "Authentication Error, Malformed API Key passed in. Ensure Key has `Bearer ` prefix.",
        "auth_error",
        "None",
        401,
    )


async def test_auth_litellm_key_header_accepted(simulator):
    async with httpx.AsyncClient(headers={"x-litellm-api-key": DEFAULT_KEY}) as client:
        response = await client.get(simulator.url + "/spend/logs/v2", params=WIDE)

    assert response.status_code == 200


# Dates and parameters.


@pytest.mark.parametrize("path", ["/spend/logs/v2", "/spend/logs/ui"])
@pytest.mark.parametrize(
    "params",
    [{}, {"start_date": "2026-01-01 00:00:00"}, {"end_date": "2026-01-01 00:00:00"}],
    ids=["none", "start-only", "end-only"],
)
async def test_dates_missing_rejected(http, simulator, path, params):
    response = await get(http, simulator, path, **params)

    assert response.status_code == 400
    assert response.json() == proxy_error(
        "Start date and end date are required", "bad_request", "None", 400
    )


async def test_dates_ui_rejects_date_only(http, simulator):
    response = await get(
        http, simulator, "/spend/logs/ui", start_date="2000-01-01", end_date="2100-01-01"
    )

    assert response.status_code == 400
    assert response.json() == proxy_error(
        "Invalid date format: 2000-01-01. Expected: Y-m-d H:M:S",
        "internal_server_error",
        "None",
        400,
    )


async def test_dates_v2_accepts_date_only(http, simulator):
    response = await get(
        http, simulator, "/spend/logs/v2", start_date="2000-01-01", end_date="2100-01-01"
    )

    assert response.status_code == 200
    assert response.json()["total"] == 300


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/spend/logs/v2", "Y-m-d H:M:S or Y-m-d"), ("/spend/logs/ui", "Y-m-d H:M:S")],
)
async def test_dates_iso_format_rejected(http, simulator, path, expected):
    response = await get(
        http, simulator, path, start_date="2000-01-01T00:00:00Z", end_date="2100-01-01 00:00:00"
    )

    assert response.status_code == 400
    assert response.json() == proxy_error(
        f"Invalid date format: 2000-01-01T00:00:00Z. Expected: {expected}",
        "internal_server_error",
        "None",
        400,
    )


async def test_dates_window_inclusive_by_second(http, simulator):
    rows = simulator.visible_rows()
    newest, oldest = rows[0], rows[9]

    response = await get(
        http,
        simulator,
        "/spend/logs/v2",
        start_date=litellm_date(oldest.start),
        end_date=litellm_date(newest.start),
    )

    assert ids_of(response)[0] == newest.request_id
    assert ids_of(response)[-1] == oldest.request_id


async def test_page_size_over_maximum_rejected(http, simulator_factory):
    simulator = await simulator_factory(rows=5, max_page_size=100)

    response = await get(http, simulator, "/spend/logs/v2", page_size="101", **WIDE)

    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {
                "type": "less_than_equal",
                "loc": ["query", "page_size"],
                "msg": "Input should be less than or equal to 100",
                "input": "101",
                "ctx": {"le": 100},
            }
        ]
    }


async def test_page_zero_rejected(http, simulator):
    response = await get(http, simulator, "/spend/logs/ui", page="0", **WIDE)

    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {
                "type": "greater_than_equal",
                "loc": ["query", "page"],
                "msg": "Input should be greater than or equal to 1",
                "input": "0",
                "ctx": {"ge": 1},
            }
        ]
    }


async def test_page_not_a_number_rejected(http, simulator):
    response = await get(http, simulator, "/spend/logs/v2", page="two", **WIDE)

    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {
                "type": "int_parsing",
                "loc": ["query", "page"],
                "msg": "Input should be a valid integer, unable to parse string as an integer",
                "input": "two",
            }
        ]
    }


@pytest.mark.parametrize(
    ("name", "value"), [("sort_by", "cost"), ("sort_order", "up")], ids=["sort-by", "sort-order"]
)
async def test_sort_invalid_value_rejected(http, simulator, name, value):
    response = await get(http, simulator, "/spend/logs/v2", **{name: value}, **WIDE)

    assert response.status_code == 400
    assert response.json() == proxy_error(f"Invalid {name}: {value}", "bad_request", name, 400)


# Pages.


async def test_pages_newest_first(http, simulator):
    response = await get(http, simulator, "/spend/logs/v2", page_size="1000", **WIDE)

    body = response.json()
    assert [row["request_id"] for row in body["data"]] == [
        row.request_id for row in simulator.visible_rows()
    ]
    starts = [row["startTime"] for row in body["data"]]
    assert starts == sorted(starts, reverse=True)
    assert {key: body[key] for key in body if key != "data"} == {
        "total": 300,
        "page": 1,
        "page_size": 1000,
        "total_pages": 1,
        "total_is_capped": False,
    }


async def test_pages_sort_order_ascending(http, simulator):
    response = await get(
        http, simulator, "/spend/logs/v2", page_size="40", sort_order="asc", **WIDE
    )

    expected = [row.request_id for row in reversed(simulator.visible_rows())][:40]
    assert ids_of(response) == expected


@pytest.mark.parametrize(
    ("sort_by", "key"),
    [
        ("endTime", lambda row: row.end),
        ("spend", lambda row: row.spend),
        ("request_duration_ms", lambda row: row.duration_ms),
    ],
    ids=["end-time", "spend", "duration"],
)
async def test_pages_sort_by_column_descending(http, simulator, sort_by, key):
    response = await get(
        http, simulator, "/spend/logs/v2", page_size="1000", sort_by=sort_by, **WIDE
    )

    expected = sorted(simulator.visible_rows(), key=key, reverse=True)
    assert ids_of(response) == [row.request_id for row in expected]
    assert ids_of(response) != [row.request_id for row in simulator.visible_rows()]


async def test_pages_split_by_page_and_size(http, simulator):
    second = await get(http, simulator, "/spend/logs/v2", page="2", page_size="70", **WIDE)
    beyond = await get(http, simulator, "/spend/logs/v2", page="6", page_size="70", **WIDE)

    expected = [row.request_id for row in simulator.visible_rows()]
    assert ids_of(second) == expected[70:140]
    assert second.json()["total_pages"] == 5
    assert ids_of(beyond) == []


@pytest.mark.parametrize(("rows", "capped"), [(10_000, False), (10_001, True)])
async def test_pages_total_capped_at_10000(http, simulator_factory, rows, capped):
    simulator = await simulator_factory(rows=rows)

    last = await get(http, simulator, "/spend/logs/v2", page="10001", page_size="1", **WIDE)

    body = last.json()
    assert body["total"] == 10_000
    assert body["total_is_capped"] is capped
    assert body["total_pages"] == 10_000
    assert len(body["data"]) == (1 if capped else 0)


async def test_pages_ui_rows_enriched_v2_not(http, simulator):
    ui = await get(http, simulator, "/spend/logs/ui", page_size="5", **WIDE)
    v2 = await get(http, simulator, "/spend/logs/v2", page_size="5", **WIDE)

    assert all(row["session_total_count"] == 1 for row in ui.json()["data"])
    assert all("session_total_count" not in row for row in v2.json()["data"])
    assert all(isinstance(row["metadata"], dict) for row in v2.json()["data"])


async def test_pages_v188_metadata_is_string(http, simulator_factory):
    simulator = await simulator_factory(rows=5, variant="v1.88")

    response = await get(http, simulator, "/spend/logs/v2", **WIDE)

    rows = response.json()["data"]
    assert len(rows) == 5
    for row, expected in zip(rows, simulator.visible_rows(), strict=True):
        assert isinstance(row["metadata"], str)
        assert orjson.loads(row["metadata"]) == expected.to_dict("v2")["metadata"]


async def test_pages_filter_by_model_and_status(http, simulator):
    model = PROFILES[0].model

    response = await get(
        http,
        simulator,
        "/spend/logs/v2",
        model=model,
        status_filter="success",
        page_size="1000",
        **WIDE,
    )

    expected = [
        row.request_id
        for row in simulator.visible_rows()
        if row.profile.model == model and not row.failed
    ]
    assert expected
    assert ids_of(response) == expected


async def test_pages_request_id_matches_call_id(http, simulator):
    target = next(row for row in simulator.visible_rows() if row.request_id != row.call_id)

    response = await get(http, simulator, "/spend/logs/v2", request_id=target.call_id, **WIDE)

    assert ids_of(response) == [target.request_id]


@pytest.mark.parametrize("variant", ["ui", "legacy"])
async def test_pages_v2_missing_in_old_variants(http, simulator_factory, variant):
    simulator = await simulator_factory(rows=5, variant=variant)

    response = await get(http, simulator, "/spend/logs/v2", **WIDE)

    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


# Legacy /spend/logs.


async def test_legacy_without_dates_returns_rows(http, simulator):
    response = await get(http, simulator, "/spend/logs")

    rows = response.json()
    assert isinstance(rows, list)
    assert [row["request_id"] for row in rows] == [
        row.request_id for row in simulator.visible_rows()
    ]
    assert "x-litellm-spend-logs-truncated" not in response.headers
    assert rows[0]["startTime"].endswith("Z")
    assert {"messages", "response", "proxy_server_request"} <= rows[0].keys()


async def test_legacy_dates_return_daily_summary(http, simulator):
    rows = simulator.visible_rows()
    start = rows[-1].start.replace(hour=0, minute=0, second=0, microsecond=0)
    end = start + timedelta(days=3)

    response = await get(
        http,
        simulator,
        "/spend/logs",
        start_date=start.strftime("%Y-%m-%d"),
        end_date=end.strftime("%Y-%m-%d"),
    )

    summary = response.json()
    assert response.status_code == 200
    days = sorted({row.start.strftime("%Y-%m-%d") for row in rows})
    later = [(start + timedelta(days=offset)).strftime("%Y-%m-%d") for offset in range(4)]
    assert [day["startTime"] for day in summary] == days + [d for d in later if d > days[-1]]
    for day in summary:
        matching = [row for row in rows if row.start.strftime("%Y-%m-%d") == day["startTime"]]
        assert day["spend"] == pytest.approx(sum(row.spend for row in matching))
        assert set(day["users"]) == {row.user for row in matching}
        assert set(day["models"]) == {row.profile.model for row in matching}
        key_totals = {key for key in day if key not in ("startTime", "spend", "users", "models")}
        assert key_totals == {row.api_key for row in matching}


async def test_legacy_summarize_false_returns_rows(http, simulator):
    rows = simulator.visible_rows()
    start = rows[-1].start.strftime("%Y-%m-%d")
    end = (rows[0].start + timedelta(days=1)).strftime("%Y-%m-%d")

    response = await get(
        http, simulator, "/spend/logs", start_date=start, end_date=end, summarize="false"
    )

    assert ids_of(response) == [row.request_id for row in rows]


async def test_legacy_time_in_date_fails(http, simulator):
    response = await get(
        http,
        simulator,
        "/spend/logs",
        start_date="2026-01-01 00:00:00",
        end_date="2026-01-02 00:00:00",
    )

    assert response.status_code == 500
    assert response.json() == proxy_error(
        "/spend/logs Error(unconverted data remains:  00:00:00)",
        "internal_server_error",
        "None",
        500,
    )


@pytest.mark.parametrize(("rows", "truncated"), [(9_999, False), (10_001, True)])
async def test_legacy_truncated_at_10000_rows(http, simulator_factory, rows, truncated):
    simulator = await simulator_factory(rows=0, variant="legacy")
    moment = datetime.now(UTC) - timedelta(hours=1)
    for index in range(rows):
        simulator.add_raw({"request_id": f"row-{index}"}, moment + timedelta(seconds=index))

    response = await get(http, simulator, "/spend/logs")

    returned = ids_of(response)
    assert len(returned) == min(rows, 10_000)
    assert returned[:2] == [f"row-{rows - 1}", f"row-{rows - 2}"]
    assert response.headers.get("x-litellm-spend-logs-truncated") == ("true" if truncated else None)


async def test_legacy_request_id_filter(http, simulator):
    target = simulator.visible_rows()[3]

    response = await get(http, simulator, "/spend/logs", request_id=target.request_id)

    assert ids_of(response) == [target.request_id]


# Single entries.


async def test_detail_returns_heavy_columns(http, simulator_factory):
    simulator = await simulator_factory(rows=10, prompt_bytes=2_000)
    target = simulator.visible_rows()[2]

    response = await get(http, simulator, f"/spend/logs/ui/{target.request_id}")

    body = response.json()
    assert body == target.detail()
    assert set(body) == {"messages", "response", "proxy_server_request"}
    assert len(body["proxy_server_request"]["messages"][0]["content"]) == 1_000


async def test_detail_unknown_id_returns_null(http, simulator):
    response = await get(http, simulator, "/spend/logs/ui/chatcmpl-unknown")

    assert response.status_code == 200
    assert response.content == b"null"


# Request log.


async def test_request_log_records_each_request(http, simulator):
    ok = await get(http, simulator, "/spend/logs/v2", page_size="7", **WIDE)
    rejected = await get(http, simulator, "/spend/logs/v2")
    async with asyncio.timeout(5):
        await simulator.wait_until_idle()

    records = list(simulator.requests)
    assert [(record.path, record.status, record.completed) for record in records] == [
        ("/spend/logs/v2", 200, True),
        ("/spend/logs/v2", 400, True),
    ]
    assert records[0].query == {**WIDE, "page_size": "7"}
    assert records[0].bytes_sent == len(ok.content)
    assert records[1].bytes_sent == len(rejected.content)
    assert simulator.list_calls() == 2


async def test_request_log_cut_response_incomplete(http, simulator):
    simulator.fault = Fault("truncate", count=1)
    with pytest.raises(httpx.RemoteProtocolError):
        await get(http, simulator, "/spend/logs/v2", **WIDE)
    full = await get(http, simulator, "/spend/logs/v2", **WIDE)
    async with asyncio.timeout(5):
        await simulator.wait_until_idle()

    cut, whole = simulator.requests
    assert (cut.status, cut.completed) == (200, False)
    assert 0 < cut.bytes_sent < len(full.content)
    assert (whole.status, whole.completed) == (200, True)


# Faults.


async def test_fault_count_expires(http, simulator):
    simulator.fault = Fault("server_error", count=2)

    statuses = [(await get(http, simulator, "/spend/logs/v2", **WIDE)).status_code for _ in "abc"]

    assert statuses == [500, 500, 200]
    assert simulator.fault is None


async def test_fault_rate_limit_sends_retry_after(http, simulator):
    simulator.fault = Fault("rate_limit", count=1, retry_after=12)

    response = await get(http, simulator, "/spend/logs/v2", **WIDE)

    assert response.status_code == 429
    assert response.headers["retry-after"] == "12"
    assert response.json()["error"]["type"] == "throttling_error"


async def test_fault_html_502_body(http, simulator):
    simulator.fault = Fault("html_502", count=1)

    response = await get(http, simulator, "/spend/logs/v2", **WIDE)

    assert response.status_code == 502
    assert response.headers["content-type"] == "text/html"
    assert b"<title>502 Bad Gateway</title>" in response.content


async def test_fault_malformed_row_inserted(http, simulator):
    simulator.fault = Fault("malformed_row", count=1)

    response = await get(http, simulator, "/spend/logs/v2", page_size="3", **WIDE)

    assert b'{"request_id": "malformed-row", "spend": NaN, "startTime": },' in response.content
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(response.content)


async def test_fault_set_through_http(http, simulator):
    set_response = await http.post(
        simulator.url + "/_simulator/fault", json={"kind": "server_error", "count": 1}
    )
    failed = await get(http, simulator, "/spend/logs/v2", **WIDE)
    state = await get(http, simulator, "/_simulator/state")

    assert set_response.json() == {"fault": "server_error"}
    assert failed.status_code == 500
    assert state.json()["fault"] is None


async def test_fault_unknown_kind_rejected(http, simulator):
    response = await http.post(simulator.url + "/_simulator/fault", json={"kind": "explode"})

    assert response.status_code == 400
    assert response.text.startswith("kind must be one of reset, hang, unauthorized")
    assert simulator.fault is None


async def test_stop_listening_refuses_then_resumes(http, simulator):
    await simulator.stop_listening()
    with pytest.raises(httpx.ConnectError):
        await get(http, simulator, "/spend/logs/v2", **WIDE)

    await simulator.resume_listening()
    response = await get(http, simulator, "/spend/logs/v2", **WIDE)

    assert response.status_code == 200


async def test_bandwidth_limits_response_speed(http, simulator_factory: SimulatorFactory):
    bandwidth = 1_000_000
    simulator = await simulator_factory(rows=60, bandwidth=bandwidth)
    started = time.monotonic()

    response = await get(http, simulator, "/spend/logs/v2", page_size="60", **WIDE)
    async with asyncio.timeout(5):
        await simulator.wait_until_idle()

    size = len(response.content)
    assert size > 200_000
    assert simulator.requests[-1].at - started >= size / bandwidth


async def test_bandwidth_shared_by_concurrent_responses(http, simulator_factory: SimulatorFactory):
    bandwidth = 1_000_000
    simulator = await simulator_factory(rows=60, bandwidth=bandwidth)
    started = time.monotonic()

    responses = await asyncio.gather(
        get(http, simulator, "/spend/logs/v2", page_size="60", **WIDE),
        get(http, simulator, "/spend/logs/ui", page_size="60", **WIDE),
    )
    async with asyncio.timeout(10):
        await simulator.wait_until_idle()

    size = sum(len(response.content) for response in responses)
    assert len(responses[0].content) > 200_000
    # Both bodies went through one link of 1 MB/s, so together they took their total time.
    assert max(record.at for record in simulator.requests) - started >= size / bandwidth


# Produced rows.


async def test_produced_rows_newest_first(http, simulator):
    later = datetime.now(UTC) + timedelta(minutes=5)

    produced = simulator.produce(3, now=later)

    response = await get(http, simulator, "/spend/logs/v2", page_size="10", **WIDE)
    newest = sorted(produced, key=lambda row: row.start, reverse=True)
    assert ids_of(response)[:3] == [row.request_id for row in newest]
    assert ids_of(response)[3] == simulator.rows[3].request_id
    assert simulator.produced == 3


async def test_produced_rows_hidden_until_visible(http, simulator):
    hidden = simulator.produce(2, delay=3600)

    response = await get(http, simulator, "/spend/logs/v2", page_size="1000", **WIDE)
    legacy = await get(http, simulator, "/spend/logs")
    detail = await get(http, simulator, f"/spend/logs/ui/{hidden[0].request_id}")

    hidden_ids = {row.request_id for row in hidden}
    assert hidden_ids.isdisjoint(ids_of(response))
    assert hidden_ids.isdisjoint(ids_of(legacy))
    assert response.json()["total"] == 300
    assert detail.content == b"null"
    assert hidden_ids <= {row.request_id for row in simulator.rows}
    assert hidden_ids.isdisjoint(row.request_id for row in simulator.visible_rows())
