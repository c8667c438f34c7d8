"""``--from-file``: the stream and the JSON endpoints serving a saved spend-log dump."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from aria_stream.app import create_app
from aria_stream.appkeys import source_key
from aria_stream.filesource import BLOCK_SIZE, FileSource, FileSourceError
from aria_stream.models import shorten_hash
from aria_stream.settings import Settings
from tests.conftest import FIXTURES, ServerFactory
from tests.sse import Event, parse_events, read_events, rows_of

READ_TIMEOUT = 10.0
MODELS = ("openai/gpt-4o-mini", "openai/gpt-4o", "gemini/gemini-1.5-flash")
BASE_TIME = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)


def load_templates() -> list[dict[str, Any]]:
    """Return the four real LiteLLM rows of the fixtures: legacy and ui, success and failure."""
    templates = [
        json.loads((FIXTURES / "spend_logs.success_row.json").read_text()),
        json.loads((FIXTURES / "spend_logs.failure_row.json").read_text()),
    ]
    for name in ("spend_logs_ui.success_page.json", "spend_logs_ui.failure_page.json"):
        templates.append(json.loads((FIXTURES / name).read_text())["data"][0])
    return templates


def make_rows(count: int) -> list[dict[str, Any]]:
    """Build rows from the fixtures with their own request ids, models and start times.

    Start times are not sorted, so a test can tell file order from time order.
    """
    templates = load_templates()
    rows = []
    for index in range(count):
        row = dict(templates[index % len(templates)])
        row["request_id"] = f"file-row-{index:03d}"
        row["model"] = MODELS[index % len(MODELS)]
        start = BASE_TIME - timedelta(minutes=(index * 7) % count)
        row["startTime"] = start.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        rows.append(row)
    return rows


def start_of(row: dict[str, Any]) -> datetime:
    return datetime.strptime(row["startTime"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def error_code_of(row: dict[str, Any]) -> str | None:
    error = row["metadata"].get("error_information") or {}
    return error.get("error_code")


def as_array(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows)


def as_indented_array(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=2)


def as_envelope(rows: list[dict[str, Any]]) -> str:
    envelope = {
        "data": rows,
        "total": len(rows),
        "page": 1,
        "page_size": len(rows),
        "total_pages": 1,
        "total_is_capped": False,
    }
    return json.dumps(envelope)


def as_lines(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


FORMATS: dict[str, Callable[[list[dict[str, Any]]], str]] = {
    "array": as_array,
    "indented-array": as_indented_array,
    "envelope": as_envelope,
    "lines": as_lines,
}

ROWS = make_rows(40)
ROW_IDS = [row["request_id"] for row in ROWS]


async def start_file_app(server_factory: ServerFactory, path: Path) -> TestClient:
    return await server_factory(Settings(from_file=path))


async def write_and_start(
    server_factory: ServerFactory, tmp_path: Path, text: str, name: str = "dump.json"
) -> TestClient:
    path = tmp_path / name
    path.write_text(text)
    return await start_file_app(server_factory, path)


def through_end(events: list[Event]) -> list[Event]:
    """Return the events up to and including the first ``done`` or ``upstream_error``.

    The stream stays open after either, so heartbeats may follow in the same read.
    """
    names = [event.event for event in events]
    ends = [index for index, name in enumerate(names) if name in {"done", "upstream_error"}]
    assert ends
    return events[: ends[0] + 1]


async def stream_events(client: TestClient, **params: str) -> list[Event]:
    """Open the stream; return its events up to the end of the backfill or its error."""
    response = await client.get("/api/spend/stream", params=params)
    assert response.status == 200
    async with asyncio.timeout(READ_TIMEOUT):
        events = await read_events(response)
    response.close()
    return through_end(events)


async def walk_pages(client: TestClient, **params: str) -> list[str]:
    ids: list[str] = []
    offset: int | None = 0
    while offset is not None:
        response = await client.get("/api/spend/logs", params={"offset": str(offset), **params})
        assert response.status == 200, await response.text()
        body = await response.json()
        ids.extend(row["request_id"] for row in body["data"])
        offset = body["next_offset"]
    return ids


# Every format, every row once, in file order.


@pytest.mark.parametrize("fmt", list(FORMATS))
async def test_file_stream_sends_rows_in_order(
    server_factory: ServerFactory, tmp_path: Path, fmt: str
):
    client = await write_and_start(server_factory, tmp_path, FORMATS[fmt](ROWS))

    events = await stream_events(client, limit="1000")

    assert [row["request_id"] for row in rows_of(events)] == ROW_IDS


@pytest.mark.parametrize("fmt", list(FORMATS))
async def test_file_stream_meta_names_file(server_factory: ServerFactory, tmp_path: Path, fmt: str):
    client = await write_and_start(server_factory, tmp_path, FORMATS[fmt](ROWS), "saved.json")

    events = await stream_events(client, limit="1000")

    assert events[0].json() == {
        "source": "file",
        "origin": "saved.json",
        "endpoint": "file",
        "window": {"since": None, "until": None},
        "limit": 1000,
        "full": False,
        "total": None,
        "live": False,
    }


@pytest.mark.parametrize(
    ("fmt", "total"), [("array", None), ("lines", None), ("envelope", 40)], ids=str
)
async def test_file_stream_done_counts_rows(
    server_factory: ServerFactory, tmp_path: Path, fmt: str, total: int | None
):
    client = await write_and_start(server_factory, tmp_path, FORMATS[fmt](ROWS))

    events = await stream_events(client, limit="1000")

    assert events[-1].event == "done"
    assert events[-1].json() == {"sent": 40, "total": total, "skipped": 0}


@pytest.mark.parametrize("fmt", list(FORMATS))
async def test_file_logs_pages_cover_rows(server_factory: ServerFactory, tmp_path: Path, fmt: str):
    client = await write_and_start(server_factory, tmp_path, FORMATS[fmt](ROWS))

    assert await walk_pages(client, limit="7") == ROW_IDS


def _shown_key(value: str) -> str:
    return shorten_hash(value) if re.fullmatch(r"[0-9a-f]{32,128}", value) else value


async def test_file_stream_full_rows(server_factory: ServerFactory, tmp_path: Path):
    client = await write_and_start(server_factory, tmp_path, as_lines(ROWS))

    events = await stream_events(client, limit="4", full="true")

    rows = rows_of(events)
    assert [row["request_id"] for row in rows] == ROW_IDS[:4]
    # Key hashes (hex) are shown shortened; a named key such as the master key is kept.
    expected = [
        {**row["metadata"], "user_api_key": _shown_key(row["metadata"]["user_api_key"])}
        for row in ROWS[:4]
    ]
    assert [row["metadata"] for row in rows] == expected


async def test_file_stream_limit_stops_early(server_factory: ServerFactory, tmp_path: Path):
    client = await write_and_start(server_factory, tmp_path, as_array(ROWS))

    events = await stream_events(client, limit="9")

    assert [row["request_id"] for row in rows_of(events)] == ROW_IDS[:9]
    assert events[-1].json()["sent"] == 9


# Filters, applied by the app because a file has no query language.

WINDOW_SINCE = BASE_TIME - timedelta(minutes=20)
WINDOW_UNTIL = BASE_TIME - timedelta(minutes=10)

FILE_FILTERS = [
    pytest.param({"status": "failure"}, lambda row: row["status"] == "failure", id="status"),
    pytest.param(
        {"model": "openai/gpt-4o"}, lambda row: row["model"] == "openai/gpt-4o", id="model"
    ),
    pytest.param({"error_code": "429"}, lambda row: error_code_of(row) == "429", id="error_code"),
    pytest.param(
        {
            "since": WINDOW_SINCE.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "until": WINDOW_UNTIL.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        lambda row: WINDOW_SINCE <= start_of(row) <= WINDOW_UNTIL,
        id="window",
    ),
    pytest.param(
        {"status": "success", "model": "gemini/gemini-1.5-flash"},
        lambda row: row["status"] == "success" and row["model"] == "gemini/gemini-1.5-flash",
        id="status+model",
    ),
]


@pytest.mark.parametrize(("filters", "predicate"), FILE_FILTERS)
async def test_file_stream_applies_filters(
    server_factory: ServerFactory, tmp_path: Path, filters, predicate
):
    client = await write_and_start(server_factory, tmp_path, as_array(ROWS))

    events = await stream_events(client, limit="1000", **filters)

    expected = [row["request_id"] for row in ROWS if predicate(row)]
    assert expected
    assert len(expected) < len(ROWS)
    assert [row["request_id"] for row in rows_of(events)] == expected


@pytest.mark.parametrize(("filters", "predicate"), FILE_FILTERS)
async def test_file_logs_apply_filters(
    server_factory: ServerFactory, tmp_path: Path, filters, predicate
):
    client = await write_and_start(server_factory, tmp_path, as_lines(ROWS))

    ids = await walk_pages(client, limit="3", **filters)

    assert ids == [row["request_id"] for row in ROWS if predicate(row)]


# One row.


async def test_file_entry_returns_row(server_factory: ServerFactory, tmp_path: Path):
    client = await write_and_start(server_factory, tmp_path, as_envelope(ROWS))

    response = await client.get("/api/spend/logs/file-row-013")

    assert response.status == 200
    body = await response.json()
    assert body["request_id"] == "file-row-013"
    assert body["metadata"] == ROWS[13]["metadata"]


async def test_file_entry_unknown_is_404(server_factory: ServerFactory, tmp_path: Path):
    client = await write_and_start(server_factory, tmp_path, as_envelope(ROWS))

    response = await client.get("/api/spend/logs/file-row-999")

    assert response.status == 404
    assert (await response.json())["error"] == "not_found"


# Broken files.


def truncated_text(fmt: str, rows_kept: int) -> str:
    """Return the dump in this format, cut in the middle of the row after ``rows_kept`` rows."""
    text = FORMATS[fmt](ROWS)
    cut_row = text.index(f'"file-row-{rows_kept:03d}"')
    return text[: cut_row + 200]


@pytest.mark.parametrize("fmt", ["array", "envelope", "lines"])
async def test_file_truncated_stream_sends_rows_then_error(
    server_factory: ServerFactory, tmp_path: Path, fmt: str
):
    client = await write_and_start(server_factory, tmp_path, truncated_text(fmt, 5), "cut.json")

    events = await stream_events(client, limit="1000")

    names = [event.event for event in events]
    assert names[0] == "meta"
    assert names[-1] == "upstream_error"
    assert "done" not in names
    assert [row["request_id"] for row in rows_of(events)] == ROW_IDS[:5]


async def test_file_truncated_error_is_truncated(server_factory: ServerFactory, tmp_path: Path):
    client = await write_and_start(server_factory, tmp_path, truncated_text("array", 5), "cut.json")

    events = await stream_events(client, limit="1000")

    error = events[-1].json()
    assert error["kind"] == "truncated"
    assert error["status"] is None
    assert error["retry"] is False
    assert error["retry_in"] is None
    assert error["message"].startswith("The spend-log file cut.json ends in the middle of its data")


async def test_file_truncated_stream_not_retried(server_factory: ServerFactory, tmp_path: Path):
    path = tmp_path / "cut.json"
    path.write_text(truncated_text("array", 5))
    # A retry would come after poll_interval, long before the first heartbeat.
    settings = Settings(from_file=path, poll_interval=0.1, max_backoff=0.1, ping_interval=0.5)
    client = await server_factory(settings)
    source = client.server.app[source_key]
    assert isinstance(source, FileSource)

    response = await client.get("/api/spend/stream", params={"limit": "1000"})
    text = ""
    async with asyncio.timeout(READ_TIMEOUT):
        while "event: ping\n" not in text:
            chunk = await response.content.readany()
            assert chunk, "the stream ended before its first ping event"
            text += chunk.decode("utf-8")
    response.close()

    names = [event.event for event in parse_events(text)]
    assert names[names.index("upstream_error") :] == ["upstream_error", "ping"]
    assert [row["request_id"] for row in rows_of(parse_events(text))] == ROW_IDS[:5]
    assert source.bytes_read == path.stat().st_size


async def test_file_truncated_logs_is_502(server_factory: ServerFactory, tmp_path: Path):
    client = await write_and_start(server_factory, tmp_path, truncated_text("array", 5), "cut.json")

    response = await client.get("/api/spend/logs", params={"limit": "100"})

    assert response.status == 502
    body = await response.json()
    assert body["error"] == "upstream_truncated"
    assert body["message"].startswith("The spend-log file cut.json ends in the middle of its data")


async def test_file_truncated_first_page_still_served(
    server_factory: ServerFactory, tmp_path: Path
):
    client = await write_and_start(server_factory, tmp_path, truncated_text("array", 5), "cut.json")

    response = await client.get("/api/spend/logs", params={"limit": "3"})

    assert response.status == 200
    assert [row["request_id"] for row in (await response.json())["data"]] == ROW_IDS[:3]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("<html><body>Sign in</body></html>", "is not JSON", id="html"),
        pytest.param("", "is not a spend-log dump", id="empty"),
    ],
)
async def test_file_not_json_is_bad_response(
    server_factory: ServerFactory, tmp_path: Path, text: str, fragment: str
):
    client = await write_and_start(server_factory, tmp_path, text, "page.html")

    events = await stream_events(client)

    assert [event.event for event in events] == ["meta", "upstream_error"]
    error = events[1].json()
    assert error["kind"] == "bad_response"
    assert error["message"].startswith(f"The spend-log file page.html {fragment}")


async def test_file_missing_fails_startup(tmp_path: Path):
    server = TestServer(create_app(Settings(from_file=tmp_path / "missing.json")))
    try:
        with pytest.raises(FileSourceError, match="does not exist"):
            await server.start_server()
    finally:
        await server.close()


# A large file is read only as far as a request needs.


@pytest.fixture(scope="module")
def large_dump(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    """Write a dump of about 40 MB; return its path and the byte size of each row."""
    template = json.loads((FIXTURES / "spend_logs.success_row.json").read_text())
    template["request_id"] = "PLACEHOLDER"
    encoded = json.dumps(template)
    path = tmp_path_factory.mktemp("large") / "large.json"
    sizes = []
    with path.open("w") as handle:
        handle.write("[")
        for index in range(2200):
            row = encoded.replace("PLACEHOLDER", f"large-{index:05d}")
            handle.write(("," if index else "") + row)
            sizes.append(len(row) + 1)
        handle.write("]")
    assert path.stat().st_size > 30 * 1024 * 1024
    return path, sizes


async def test_file_large_stream_reads_little(
    server_factory: ServerFactory, large_dump: tuple[Path, list[int]]
):
    path, sizes = large_dump
    client = await start_file_app(server_factory, path)
    source = client.server.app[source_key]
    assert isinstance(source, FileSource)

    events = await stream_events(client, limit="5")

    expected = [f"large-{index:05d}" for index in range(5)]
    assert [row["request_id"] for row in rows_of(events)] == expected
    assert 0 < source.bytes_read <= sum(sizes[:5]) + BLOCK_SIZE


async def test_file_large_logs_reads_little(
    server_factory: ServerFactory, large_dump: tuple[Path, list[int]]
):
    path, sizes = large_dump
    client = await start_file_app(server_factory, path)
    source = client.server.app[source_key]
    assert isinstance(source, FileSource)

    response = await client.get("/api/spend/logs", params={"limit": "3"})

    assert response.status == 200
    body = await response.json()
    assert [row["request_id"] for row in body["data"]] == [
        "large-00000",
        "large-00001",
        "large-00002",
    ]
    assert body["next_offset"] == 3
    assert 0 < source.bytes_read <= sum(sizes[:4]) + BLOCK_SIZE


def test_file_rows_fixture_is_varied():
    statuses = {row["status"] for row in ROWS}
    starts = [start_of(row) for row in ROWS]

    assert statuses == {"success", "failure"}
    assert {error_code_of(row) for row in ROWS} == {None, "500", "429"}
    assert starts != sorted(starts, reverse=True)
    assert len(set(starts)) == len(ROWS)
