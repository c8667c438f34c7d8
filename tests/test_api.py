"""The JSON endpoints, the viewer page and the health check, over loopback HTTP."""

from __future__ import annotations

import asyncio
import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from aria_stream.simulator import Fault, Simulator
from tests.conftest import ServerFactory, SimulatorFactory

KEY = "sk-secret-aria-test-key"
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


async def get_json(client: TestClient, path: str, **params: str) -> Any:
    response = await client.get(path, params=params)
    assert response.status == 200, await response.text()
    return await response.json()


async def walk_pages(client: TestClient, **params: str) -> list[str]:
    """Follow ``next_offset`` from offset 0 to the last page; return the request ids read."""
    ids: list[str] = []
    offset: int | None = 0
    while offset is not None:
        body = await get_json(client, "/api/spend/logs", offset=str(offset), **params)
        assert body["offset"] == offset
        ids.extend(row["request_id"] for row in body["data"])
        offset = body["next_offset"]
    return ids


async def logged_request(simulator: Simulator, path: str) -> dict[str, str]:
    """Return the query of the first request to ``path``, once the simulator has logged it."""
    async with asyncio.timeout(5):
        while True:
            for record in simulator.requests:
                if record.path == path:
                    return record.query
            await asyncio.sleep(0.01)


def error_shape(status: int, error: str, message: str, param: str | None, value: str | None):
    return {
        "ok": False,
        "status": status,
        "error": error,
        "message": message,
        "param": param,
        "value": value,
    }


# Pages.


async def test_logs_default_limit_is_20(server: TestClient, simulator: Simulator):
    body = await get_json(server, "/api/spend/logs")

    assert body["limit"] == 20
    assert body["offset"] == 0
    assert body["next_offset"] == 20
    expected = [row.request_id for row in simulator.visible_rows()[:20]]
    assert [row["request_id"] for row in body["data"]] == expected


async def test_logs_offset_skips_rows(server: TestClient, simulator: Simulator):
    body = await get_json(server, "/api/spend/logs", limit="10", offset="35")

    expected = [row.request_id for row in simulator.visible_rows()[35:45]]
    assert [row["request_id"] for row in body["data"]] == expected
    assert body["next_offset"] == 45


async def test_logs_last_page_has_no_next(server: TestClient, simulator: Simulator):
    body = await get_json(server, "/api/spend/logs", limit="20", offset="290")

    expected = [row.request_id for row in simulator.visible_rows()[290:]]
    assert [row["request_id"] for row in body["data"]] == expected
    assert body["next_offset"] is None


async def test_logs_exact_last_page_has_no_next(server: TestClient):
    body = await get_json(server, "/api/spend/logs", limit="20", offset="280")

    assert len(body["data"]) == 20
    assert body["next_offset"] is None


async def test_logs_offset_past_end_is_empty(server: TestClient):
    body = await get_json(server, "/api/spend/logs", offset="5000")

    assert body == {"data": [], "limit": 20, "offset": 5000, "next_offset": None}


@pytest.mark.parametrize("variant", ["v2", "ui", "legacy"])
@pytest.mark.parametrize("limit", ["100", "47"])
async def test_logs_pages_cover_every_row(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory, variant: str, limit: str
):
    simulator = await simulator_factory(rows=150, variant=variant)
    client = await server_factory(simulator)

    ids = await walk_pages(client, limit=limit)

    assert ids == [row.request_id for row in simulator.visible_rows()]


@pytest.mark.parametrize("variant", ["v2", "legacy"])
async def test_logs_filtered_pages_cover_matches(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory, variant: str
):
    simulator = await simulator_factory(rows=150, variant=variant)
    client = await server_factory(simulator)

    ids = await walk_pages(client, limit="6", status="failure")

    expected = [row.request_id for row in simulator.visible_rows() if row.failed]
    assert len(expected) > 12
    assert ids == expected


async def test_logs_legacy_first_offset_counts_matches(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    """A first request with an offset to a legacy proxy skipped rows before filtering them."""
    simulator = await simulator_factory(rows=300, variant="legacy")
    client = await server_factory(simulator)

    first = await get_json(client, "/api/spend/logs", status="failure", offset="5", limit="5")
    again = await get_json(client, "/api/spend/logs", status="failure", offset="5", limit="5")

    failed = [row.request_id for row in simulator.visible_rows() if row.failed]
    assert [row["request_id"] for row in first["data"]] == failed[5:10]
    assert [row["request_id"] for row in again["data"]] == failed[5:10]


async def test_logs_filters_sent_upstream(server: TestClient, simulator: Simulator):
    body = await get_json(
        server, "/api/spend/logs", model="openai/gpt-4o", status="success", limit="5"
    )

    query = await logged_request(simulator, "/spend/logs/v2")
    assert query["model"] == "openai/gpt-4o"
    assert query["status_filter"] == "success"
    expected = [
        row.request_id
        for row in simulator.visible_rows()
        if row.profile.model == "openai/gpt-4o" and not row.failed
    ][:5]
    assert [row["request_id"] for row in body["data"]] == expected


async def test_logs_lite_rows_by_default(server: TestClient):
    body = await get_json(server, "/api/spend/logs", limit="3")

    assert all("metadata" not in row for row in body["data"])
    assert all("start_time" in row for row in body["data"])


async def test_logs_full_rows_have_metadata(server: TestClient, simulator: Simulator):
    body = await get_json(server, "/api/spend/logs", limit="3", full="true")

    expected = simulator.visible_rows()[:3]
    assert [row["request_id"] for row in body["data"]] == [row.request_id for row in expected]
    for row, sim_row in zip(body["data"], expected, strict=True):
        assert row["metadata"]["litellm_call_id"] == sim_row.call_id
        assert row["lite"]["request_id"] == sim_row.request_id


# Compression.


async def test_logs_gzip_when_accepted(server: TestClient):
    plain = await get_json(server, "/api/spend/logs", limit="50")
    response = await server.get(
        "/api/spend/logs",
        params={"limit": "50"},
        headers={"Accept-Encoding": "gzip"},
        auto_decompress=False,
    )

    assert response.status == 200
    assert response.headers["Content-Encoding"] == "gzip"
    assert json.loads(gzip.decompress(await response.read())) == plain


async def test_logs_plain_without_accept_encoding(server: TestClient):
    response = await server.get(
        "/api/spend/logs",
        params={"limit": "5"},
        headers={"Accept-Encoding": "identity"},
        auto_decompress=False,
    )

    assert "Content-Encoding" not in response.headers
    assert len(json.loads(await response.read())["data"]) == 5


# Invalid parameters.

DATE_RULE = "an ISO 8601 date or datetime, such as 2026-12-04 or 2026-12-04T20:00:00Z"

INVALID_PARAMETERS = [
    pytest.param(
        {"limit": "0"},
        "limit",
        "0",
        "limit must be an integer from 1 to 100, got '0'",
        id="limit-0",
    ),
    pytest.param(
        {"limit": "-1"},
        "limit",
        "-1",
        "limit must be an integer from 1 to 100, got '-1'",
        id="limit-negative",
    ),
    pytest.param(
        {"limit": "101"},
        "limit",
        "101",
        "limit must be an integer from 1 to 100, got '101'",
        id="limit-101",
    ),
    pytest.param(
        {"limit": "abc"},
        "limit",
        "abc",
        "limit must be an integer from 1 to 100, got 'abc'",
        id="limit-text",
    ),
    pytest.param(
        {"offset": "-1"},
        "offset",
        "-1",
        "offset must be an integer from 0 to 1000000, got '-1'",
        id="offset-negative",
    ),
    pytest.param(
        {"offset": "abc"},
        "offset",
        "abc",
        "offset must be an integer from 0 to 1000000, got 'abc'",
        id="offset-text",
    ),
    pytest.param(
        {"since": "yesterday"},
        "since",
        "yesterday",
        f"since must be {DATE_RULE}, got 'yesterday'",
        id="since-text",
    ),
    pytest.param(
        {"until": "2026-13-01"},
        "until",
        "2026-13-01",
        f"until must be {DATE_RULE}, got '2026-13-01'",
        id="until-month-13",
    ),
    pytest.param(
        {"since": "2026-12-05T00:00:00Z", "until": "2026-12-04T00:00:00Z"},
        "since",
        "2026-12-05T00:00:00Z",
        "since must not be later than until, got since='2026-12-05T00:00:00Z' and "
        "until='2026-12-04T00:00:00Z'",
        id="since-after-until",
    ),
    pytest.param(
        {"status": "ok"},
        "status",
        "ok",
        "status must be one of: success, failure, got 'ok'",
        id="status-unknown",
    ),
    pytest.param(
        {"error_code": "42"},
        "error_code",
        "42",
        "error_code must be an HTTP status code of 3 digits, such as 429, got '42'",
        id="error_code-short",
    ),
    pytest.param(
        {"error_code": "abc"},
        "error_code",
        "abc",
        "error_code must be an HTTP status code of 3 digits, such as 429, got 'abc'",
        id="error_code-text",
    ),
    pytest.param(
        {"full": "maybe"}, "full", "maybe", "full must be true or false, got 'maybe'", id="full"
    ),
]


@pytest.mark.parametrize(("params", "param", "value", "message"), INVALID_PARAMETERS)
async def test_logs_invalid_parameter_is_400(server: TestClient, params, param, value, message):
    response = await server.get("/api/spend/logs", params=params)

    assert response.status == 400
    assert response.content_type == "application/json"
    assert await response.json() == error_shape(400, "invalid_parameter", message, param, value)


async def test_logs_empty_parameter_is_default(server: TestClient):
    body = await get_json(server, "/api/spend/logs", limit="", status="")

    assert body["limit"] == 20
    assert len(body["data"]) == 20


# Upstream failures.

# fault kind -> (fault, settings, HTTP status, error code)
JSON_FAULTS: dict[str, tuple[Fault, dict[str, Any], int, str]] = {
    "unauthorized": (Fault("unauthorized"), {}, 502, "upstream_auth"),
    "rate_limit": (Fault("rate_limit", retry_after=7), {}, 502, "upstream_rate_limited"),
    "html_502": (Fault("html_502"), {}, 502, "upstream_server_error"),
    "html_200": (Fault("html_200"), {}, 502, "upstream_bad_response"),
    "server_error": (Fault("server_error"), {}, 502, "upstream_server_error"),
    "truncate": (Fault("truncate"), {}, 502, "upstream_truncated"),
    "stall": (Fault("stall"), {"idle_timeout": 0.3}, 504, "upstream_timeout"),
    "hang": (Fault("hang"), {"first_byte_timeout": 0.3}, 504, "upstream_timeout"),
    "reset": (Fault("reset"), {}, 502, "upstream_unreachable"),
}


@pytest.mark.parametrize("name", list(JSON_FAULTS))
async def test_logs_upstream_fault_in_error_shape(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory, name: str
):
    fault, settings, status, code = JSON_FAULTS[name]
    simulator = await simulator_factory(rows=100, master_key=KEY)
    client = await server_factory(simulator, **settings)
    simulator.fault = fault

    async with asyncio.timeout(10):
        response = await client.get("/api/spend/logs")
        text = await response.text()

    assert response.status == status
    body = json.loads(text)
    assert body == error_shape(status, code, body["message"], None, None)
    assert body["message"].startswith(f"LiteLLM at {simulator.url} ")
    assert KEY not in text


async def test_logs_rate_limit_sends_retry_after(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    simulator = await simulator_factory(rows=10)
    client = await server_factory(simulator)
    simulator.fault = Fault("rate_limit", retry_after=7)

    response = await client.get("/api/spend/logs")

    assert response.status == 502
    assert response.headers["Retry-After"] == "7"


async def test_logs_refused_is_502(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    simulator = await simulator_factory(rows=10)
    client = await server_factory(simulator)
    await simulator.stop_listening()

    response = await client.get("/api/spend/logs")

    assert response.status == 502
    assert await response.json() == error_shape(
        502,
        "upstream_unreachable",
        f"Cannot reach LiteLLM at {simulator.url}: the connection was refused; check "
        "ARIA_LITELLM_URL and that the proxy is running.",
        None,
        None,
    )


async def test_entry_upstream_fault_is_502(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    simulator = await simulator_factory(rows=10)
    client = await server_factory(simulator)
    request_id = simulator.visible_rows()[0].request_id
    simulator.fault = Fault("server_error")

    response = await client.get(f"/api/spend/logs/{request_id}")

    assert response.status == 502
    assert (await response.json())["error"] == "upstream_server_error"


# One row.


async def test_entry_returns_full_row(server: TestClient, simulator: Simulator):
    sim_row = simulator.visible_rows()[7]

    body = await get_json(server, f"/api/spend/logs/{sim_row.request_id}")

    assert body["request_id"] == sim_row.request_id
    assert body["lite"]["request_id"] == sim_row.request_id
    assert body["metadata"]["litellm_call_id"] == sim_row.call_id
    assert (
        body["proxy_server_request"]["messages"]
        == (sim_row.detail()["proxy_server_request"]["messages"])
    )


async def test_entry_reads_detail_endpoint(server: TestClient, simulator: Simulator):
    request_id = simulator.visible_rows()[7].request_id

    await get_json(server, f"/api/spend/logs/{request_id}")

    await logged_request(simulator, f"/spend/logs/ui/{request_id}")


async def test_entry_unknown_id_is_404(server: TestClient):
    response = await server.get("/api/spend/logs/chatcmpl-unknown")

    assert response.status == 404
    assert await response.json() == error_shape(
        404,
        "not_found",
        "no spend log has request id 'chatcmpl-unknown'",
        "request_id",
        "chatcmpl-unknown",
    )


REQUEST_ID_RULE = "1 to 200 letters, digits, '.', '_', ':' or '-'"


@pytest.mark.parametrize(
    ("path_id", "value"),
    [
        pytest.param("a%20b", "a b", id="space"),
        pytest.param("a%3Cb%3E", "a<b>", id="angle-brackets"),
        pytest.param("x" * 300, "x" * 300, id="300-chars"),
    ],
)
async def test_entry_bad_id_is_400(
    server: TestClient, simulator: Simulator, path_id: str, value: str
):
    response = await server.get(f"/api/spend/logs/{path_id}")

    assert response.status == 400
    assert await response.json() == error_shape(
        400,
        "invalid_parameter",
        f"request_id must be {REQUEST_ID_RULE}, got {value!r}",
        "request_id",
        value,
    )
    assert not any(record.path.startswith("/spend/logs/ui/") for record in simulator.requests)


# The viewer page and the health check.


async def test_index_serves_viewer(server: TestClient):
    response = await server.get("/")

    assert response.status == 200
    assert response.content_type == "text/html"
    assert await response.read() == (STATIC_DIR / "index.html").read_bytes()


async def test_index_sends_security_headers(server: TestClient):
    response = await server.get("/")

    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "default-src 'self'" in policy
    assert "'unsafe-inline'" not in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"


async def test_healthz_returns_ok(server: TestClient):
    response = await server.get("/healthz")

    assert response.status == 200
    assert await response.json() == {"ok": True}


async def test_unknown_path_in_error_shape(server: TestClient):
    response = await server.get("/api/nothing-here")

    assert response.status == 404
    assert await response.json() == error_shape(404, "http_error", "Not Found", None, None)
