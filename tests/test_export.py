"""``GET /api/spend/export``: CSV and JSON Lines downloads of the filtered rows, over loopback HTTP
against the simulator (and one saved dump)."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import ClientPayloadError
from aiohttp.test_utils import TestClient

from aria_stream.export import COLUMNS, csv_cell, export_filename
from aria_stream.settings import Settings
from aria_stream.simulator import Fault, Simulator
from aria_stream.simulator.dataset import KEYS
from tests.conftest import FIXTURES, ServerFactory, SimulatorFactory

EXPORT = "/api/spend/export"


async def read_csv(server: TestClient, **params: str) -> list[dict[str, str]]:
    response = await server.get(EXPORT, params=params)
    assert response.status == 200, await response.text()
    return list(csv.DictReader(io.StringIO(await response.text())))


def failure_ids(simulator: Simulator) -> list[str]:
    return [row.request_id for row in simulator.visible_rows() if row.failed]


async def test_export_csv_sends_filtered_rows(server: TestClient, simulator: Simulator):
    response = await server.get(EXPORT, params={"format": "csv", "status": "failure"})
    text = await response.text()

    assert response.status == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Transfer-Encoding"] == "chunked"
    disposition = response.headers["Content-Disposition"]
    assert re.fullmatch(r"attachment; filename=spend-logs-\d{8}T\d{6}Z\.csv", disposition)
    lines = text.split("\r\n")
    assert lines[0] == ",".join(COLUMNS)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["request_id"] for row in rows] == failure_ids(simulator)
    assert {row["status"] for row in rows} == {"failure"}


async def test_export_csv_is_the_default_format(server: TestClient, simulator: Simulator):
    response = await server.get(EXPORT, params={"limit": "3"})

    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    assert [row["request_id"] for row in rows] == [
        row.request_id for row in simulator.visible_rows()[:3]
    ]


async def test_export_jsonl_sends_one_lite_row_per_line(server: TestClient, simulator: Simulator):
    response = await server.get(EXPORT, params={"format": "jsonl", "limit": "25"})
    text = await response.text()

    assert response.status == 200
    assert response.headers["Content-Type"] == "application/x-ndjson; charset=utf-8"
    assert response.headers["Content-Disposition"].endswith(".jsonl")
    assert text.endswith("\n")
    rows = [json.loads(line) for line in text.splitlines()]
    assert [row["request_id"] for row in rows] == [
        row.request_id for row in simulator.visible_rows()[:25]
    ]
    assert all(list(row) == list(COLUMNS) for row in rows)


async def test_export_limit_caps_rows(server: TestClient, simulator: Simulator):
    rows = await read_csv(server, limit="7", model_group="gpt-4o-mini")

    expected = [
        row.request_id for row in simulator.visible_rows() if row.profile.group == "gpt-4o-mini"
    ]
    assert [row["request_id"] for row in rows] == expected[:7]


async def test_export_default_limit_is_backfill_cap_at_most(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    simulator = await simulator_factory(rows=60)
    server = await server_factory(simulator, backfill_cap=40)

    rows = await read_csv(server)
    assert len(rows) == 40


async def test_export_page_filters_match_exactly(server: TestClient, simulator: Simulator):
    rows = await read_csv(server, key_alias="prod-backend", user="alice", team="team-search")

    expected = [
        row.request_id
        for row in simulator.visible_rows()
        if KEYS[row.key][0] == "prod-backend" and row.user == "alice"
    ]
    assert len(expected) > 0
    assert [row["request_id"] for row in rows] == expected


async def test_export_free_text_searches_text_fields(server: TestClient, simulator: Simulator):
    rows = await read_csv(server, q="  ollamaexception ")

    expected = [
        row.request_id
        for row in simulator.visible_rows()
        if row.failed and row.profile.failure == "connection"
    ]
    assert len(expected) > 0
    assert [row["request_id"] for row in rows] == expected


async def test_export_csv_quotes_formula_cells(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    simulator = await simulator_factory(rows=3)
    start = datetime.now(UTC) - timedelta(seconds=1)
    hostile = simulator.add_raw(
        {
            "request_id": "formula-row",
            "startTime": start.isoformat(),
            "model": '=HYPERLINK("http://example.invalid","x")',
            "model_group": "+1+1",
            "user": "@SUM(A1)",
            "end_user": "-2+3",
            "session_id": "\tcmd",
            "status": "failure",
            "spend": 0.25,
            "metadata": {"error_information": {"error_message": "\r=1"}},
        },
        start,
    )
    server = await server_factory(simulator)

    response = await server.get(EXPORT, params={"limit": "1"})
    text = await response.text()
    row = next(csv.DictReader(io.StringIO(text)))

    assert row["request_id"] == hostile.request_id
    assert row["model"] == '\'=HYPERLINK("http://example.invalid","x")'
    assert row["model_group"] == "'+1+1"
    assert row["user"] == "'@SUM(A1)"
    assert row["end_user"] == "'-2+3"
    assert row["session_id"] == "'\tcmd"
    assert row["error_message"] == "'\r=1"
    assert row["spend"] == "0.25"


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        (None, ""),
        (True, "true"),
        (False, "false"),
        (-3, -3),
        (0.5, 0.5),
        ("plain", "plain"),
        ("=1+2", "'=1+2"),
        ("a=b", "a=b"),
    ],
    ids=["null", "true", "false", "negative-int", "float", "text", "formula", "inner-equals"],
)
def test_export_csv_cell_values(value: Any, cell: Any):
    assert csv_cell(value) == cell


def test_export_filename_uses_utc():
    moment = datetime(2026, 12, 4, 21, 15, 3, tzinfo=UTC) + timedelta(hours=0)
    assert export_filename("jsonl", moment) == "spend-logs-20261204T211503Z.jsonl"


@pytest.mark.parametrize(
    ("params", "param", "value", "message"),
    [
        ({"format": "xml"}, "format", "xml", "format must be one of: csv, jsonl, got 'xml'"),
        ({"limit": "0"}, "limit", "0", "limit must be an integer from 1 to 10000, got '0'"),
        (
            {"limit": "10001"},
            "limit",
            "10001",
            "limit must be an integer from 1 to 10000, got '10001'",
        ),
        ({"limit": "1e3"}, "limit", "1e3", "limit must be an integer from 1 to 10000, got '1e3'"),
        (
            {"status": "maybe"},
            "status",
            "maybe",
            "status must be one of: success, failure, got 'maybe'",
        ),
        (
            {"q": "x" * 201},
            "q",
            "x" * 201,
            f"q must be a string of 1 to 200 characters, got {'x' * 201!r}",
        ),
    ],
    ids=["format", "limit-zero", "limit-above-cap", "limit-float", "status", "q-too-long"],
)
async def test_export_invalid_parameter_is_400(
    server: TestClient, params: dict[str, str], param: str, value: str, message: str
):
    response = await server.get(EXPORT, params=params)

    assert response.status == 400
    assert response.headers["Content-Type"].startswith("application/json")
    assert await response.json() == {
        "ok": False,
        "status": 400,
        "error": "invalid_parameter",
        "message": message,
        "param": param,
        "value": value,
    }


async def test_export_upstream_failure_before_first_byte_is_502(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    simulator = await simulator_factory(rows=20, fault=Fault("unauthorized"))
    server = await server_factory(simulator)

    response = await server.get(EXPORT, params={"format": "csv"})
    body = await response.json()

    assert response.status == 502
    assert "Content-Disposition" not in response.headers
    assert body["ok"] is False
    assert body["status"] == 502
    assert body["error"] == "upstream_auth"
    assert body["message"].startswith(f"LiteLLM at {simulator.url} rejected the key with 401")


async def test_export_upstream_failure_mid_body_cuts_download(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    # The simulator cuts its first response in the middle of the second row.
    simulator = await simulator_factory(rows=20, fault=Fault("truncate", count=1))
    server = await server_factory(simulator)

    response = await server.get(EXPORT, params={"format": "jsonl"})
    assert response.status == 200
    received = b""
    with pytest.raises(ClientPayloadError):
        async for chunk in response.content.iter_any():
            received += chunk

    lines = received.decode().splitlines()
    assert [json.loads(line)["request_id"] for line in lines] == [
        simulator.visible_rows()[0].request_id
    ]


async def test_export_reads_saved_dump(server_factory: ServerFactory):
    dump = FIXTURES / "spend_logs_ui.failure_page.json"
    server = await server_factory(Settings(from_file=dump))

    response = await server.get(EXPORT, params={"format": "jsonl"})
    rows = [json.loads(line) for line in (await response.text()).splitlines()]

    page = json.loads(dump.read_text(encoding="utf-8"))
    assert [row["request_id"] for row in rows] == [row["request_id"] for row in page["data"]]
    assert rows[0]["status"] == "failure"
