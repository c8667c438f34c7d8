"""Browser tests of the filter bar: server-side filters restart the stream, page-side filters
and free text filter the rows held, the URL keeps the whole view, and the export downloads the
filtered rows."""

from __future__ import annotations

import csv
import io
import os
import re
from urllib.parse import parse_qs, urlsplit

import pytest

if not os.environ.get("CI"):
    pytest.importorskip(
        "playwright",
        reason="Playwright for Python is missing; install it with: pip install -e '.[test]'",
    )

from playwright.async_api import expect

from aria_stream.export import COLUMNS
from aria_stream.simulator.dataset import KEYS
from tests import browser_support
from tests.browser_support import (
    DATA_ROWS,
    WatchedPage,
    goto_viewer,
    read_counts,
    rendered_ids,
    wait_for_count,
    wait_until_live,
)
from tests.conftest import ServerFactory, SimulatorFactory

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]
# Fixtures from tests/browser_support.py, bound here so pytest finds them.
chromium = browser_support.chromium
module_browser = browser_support.module_browser
browser = browser_support.browser
watched = browser_support.watched
simulator_factory = browser_support.simulator_factory
server_factory = browser_support.server_factory

STREAM_PATH = "/api/spend/stream"


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


async def test_viewer_status_filter_restarts_stream(
    watched: WatchedPage, simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    simulator = await simulator_factory(rows=300)
    server = await server_factory(simulator)
    await goto_viewer(watched, server, "limit=100")
    page = watched.page
    await wait_until_live(page)
    await wait_for_count(page, "rowCount", 100)

    await page.locator("#filter-status").select_option("failure")
    failures = [row.request_id for row in simulator.visible_rows() if row.failed][:100]
    await wait_for_count(page, "rowCount", len(failures))
    await wait_until_live(page)

    assert query_of(page.url) == {"limit": ["100"], "status": ["failure"]}
    streams = watched.requests_to(STREAM_PATH)
    assert len(streams) == 2
    assert query_of(streams[1]) == {"status": ["failure"], "limit": ["100"]}
    ids = await rendered_ids(page)
    assert ids == failures[: len(ids)]
    assert await page.locator(f"{DATA_ROWS}:not(.row-failure)").count() == 0
    assert (await read_counts(page))["receivedCount"] == len(failures)


async def test_viewer_reload_restores_view(
    watched: WatchedPage, simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    simulator = await simulator_factory(rows=200)
    server = await server_factory(simulator)
    await goto_viewer(watched, server, "limit=200")
    page = watched.page
    await wait_until_live(page)
    await page.locator("#filter-status").select_option("failure")
    await page.locator("#filter-q").fill("ratelimit")
    await page.locator("#order-toggle").click()
    rate_limited = [
        row.request_id
        for row in simulator.visible_rows()
        if row.failed and row.profile.failure == "rate_limit"
    ]
    await wait_until_live(page)
    await wait_for_count(page, "viewCount", len(rate_limited))
    url = page.url
    before = await rendered_ids(page)

    await page.reload()
    await wait_until_live(page)
    await wait_for_count(page, "viewCount", len(rate_limited))

    assert page.url == url
    assert query_of(url) == {
        "limit": ["200"],
        "status": ["failure"],
        "q": ["ratelimit"],
        "order": ["tail"],
    }
    assert await page.locator("#filter-status").input_value() == "failure"
    assert await page.locator("#filter-q").input_value() == "ratelimit"
    assert await page.locator("#order-toggle").get_attribute("aria-pressed") == "true"
    assert await rendered_ids(page) == before
    # Tail order: the oldest matching row on top.
    assert before == rate_limited[::-1][: len(before)]


async def test_viewer_free_text_filters_without_new_stream(
    watched: WatchedPage, simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    simulator = await simulator_factory(rows=200)
    server = await server_factory(simulator)
    await goto_viewer(watched, server, "limit=200")
    page = watched.page
    await wait_until_live(page)
    await wait_for_count(page, "rowCount", 200)

    await page.locator("#filter-q").fill("APIConnectionError")
    connection = [
        row.request_id
        for row in simulator.visible_rows()
        if row.failed and row.profile.failure == "connection"
    ]
    await wait_for_count(page, "viewCount", len(connection))

    ids = await rendered_ids(page)
    assert ids == connection[: len(ids)]
    assert len(ids) >= min(10, len(connection))
    await expect(page.locator("#row-count")).to_have_text(f"{len(connection)} of 200 rows")
    assert len(watched.requests_to(STREAM_PATH)) == 1
    assert query_of(page.url) == {"limit": ["200"], "q": ["APIConnectionError"]}

    await page.locator("#filter-q").fill("")
    await wait_for_count(page, "viewCount", 200)


async def test_viewer_key_alias_filter_matches_exactly(
    watched: WatchedPage, simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    simulator = await simulator_factory(rows=120)
    server = await server_factory(simulator)
    await goto_viewer(watched, server, "limit=120&key_alias=prod-backend")
    page = watched.page
    await wait_until_live(page)
    matching = [row for row in simulator.visible_rows() if KEYS[row.key][0] == "prod-backend"]
    await wait_for_count(page, "viewCount", len(matching))

    assert await page.locator("#filter-key-alias").input_value() == "prod-backend"
    assert (await read_counts(page))["rowCount"] == 120
    ids = await rendered_ids(page)
    assert ids == [row.request_id for row in matching][: len(ids)]


async def test_viewer_export_downloads_filtered_rows(
    watched: WatchedPage, simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    simulator = await simulator_factory(rows=250)
    server = await server_factory(simulator)
    await goto_viewer(watched, server, "limit=5&status=failure&user=alice")
    page = watched.page
    await wait_until_live(page)

    async with page.expect_download() as download_info:
        await page.locator("#export-csv").click()
    download = await download_info.value
    path = await download.path()
    text = path.read_text(encoding="utf-8")

    expected = [row for row in simulator.visible_rows() if row.failed and row.user == "alice"]
    rows = list(csv.DictReader(io.StringIO(text)))
    assert re.fullmatch(r"spend-logs-\d{8}T\d{6}Z\.csv", download.suggested_filename)
    assert text.splitlines()[0] == ",".join(COLUMNS)
    # The export is not limited to the 5 rows of the page's backfill.
    assert len(expected) > 5
    assert [row["request_id"] for row in rows] == [row.request_id for row in expected]
    assert {row["status"] for row in rows} == {"failure"}
    assert {row["user"] for row in rows} == {"alice"}
