"""Browser tests of the viewer's basics: backfill, progress, hostile rows, the upstream error
banner, console and CSP hygiene, themes and the README screenshots.

Headless Chromium loads the viewer from aria_stream, which reads the simulator; see
tests/browser_support.py for the fixtures and for what happens without Chromium.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

if not os.environ.get("CI"):
    pytest.importorskip(
        "playwright",
        reason="Playwright for Python is missing; install it with: pip install -e '.[test]'",
    )

from aiohttp.test_utils import TestClient
from playwright.async_api import Browser, expect

from aria_stream.appkeys import tail_key
from aria_stream.simulator import Fault
from tests import browser_support
from tests.browser_support import (
    DATA_ROWS,
    STATUS,
    VIEWPORT,
    WatchedPage,
    goto_viewer,
    open_watched_page,
    read_counts,
    rendered_ids,
    take_screenshots,
    wait_for_count,
    wait_until_live,
)
from tests.conftest import FIXTURES, ServerFactory, SimulatorFactory

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]
# Fixtures from tests/browser_support.py, bound here so pytest finds them.
chromium = browser_support.chromium
module_browser = browser_support.module_browser
browser = browser_support.browser
watched = browser_support.watched
simulator_factory = browser_support.simulator_factory
server_factory = browser_support.server_factory

HOSTILE_ID = "chatcmpl-hostile-markup"
HOSTILE_MODEL = "<img src=x onerror=window.__pwned=1>"
HOSTILE_ERROR_CLASS = "<svg onload=window.__pwned=3>"
HOSTILE_ERROR_MESSAGE = "</script><script>window.__pwned=2</script>"
PAGE_SCRIPTS = ["/static/theme-init.js", "/static/viewer.js"]


def litellm_time(value: datetime) -> str:
    """Format a UTC datetime as LiteLLM's raw SQL path writes it: milliseconds and +00:00."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+00:00"


def hostile_row(start: datetime) -> dict[str, Any]:
    """Return the fixture's LiteLLM row as a failure at ``start`` with markup in its fields."""
    page = json.loads((FIXTURES / "spend_logs_ui.success_page.json").read_text(encoding="utf-8"))
    row: dict[str, Any] = copy.deepcopy(page["data"][0])
    row.update(
        request_id=HOSTILE_ID,
        litellm_call_id="hostile-markup-call",
        startTime=litellm_time(start),
        endTime=litellm_time(start + timedelta(milliseconds=80)),
        model=HOSTILE_MODEL,
        status="failure",
    )
    row["metadata"]["error_information"] = {
        "error_code": "500",
        "error_class": HOSTILE_ERROR_CLASS,
        "error_message": HOSTILE_ERROR_MESSAGE,
        "traceback": HOSTILE_ERROR_MESSAGE,
    }
    return row


async def start_poller(server: TestClient) -> None:
    """Read one stream to ``done``, then wait until the poller it started has polled once."""
    response = await server.get("/api/spend/stream", params={"limit": "1"})
    text = ""
    async with asyncio.timeout(10):
        while "event: done\n" not in text:
            chunk = await response.content.readany()
            assert chunk, "the stream ended before its done event"
            text += chunk.decode("utf-8")
        response.close()
        poller = server.server.app[tail_key].poller
        while poller.last_ok_at is None:  # noqa: ASYNC110 - the poller has no such event
            await asyncio.sleep(0.01)


async def test_viewer_backfill_fills_table(
    watched: WatchedPage,
    simulator_factory: SimulatorFactory,
    server_factory: ServerFactory,
):
    simulator = await simulator_factory(rows=300)
    server = await server_factory(simulator)
    await goto_viewer(watched, server, "limit=120")
    page = watched.page
    await wait_until_live(page)
    await wait_for_count(page, "rowCount", 120)

    expected = [row.request_id for row in simulator.visible_rows()[:120]]
    ids = await rendered_ids(page)
    assert ids == expected[: len(ids)]
    # Only the rows in view exist in the DOM; 120 rows are more than a screenful.
    assert 10 <= len(ids) < 60
    assert await page.locator("#connection-state").text_content() == "Live"
    assert await page.locator("#row-count").text_content() == "120 rows"
    assert await page.locator("#backfill").is_hidden()
    assert await page.locator("#spend-table").get_attribute("aria-rowcount") == "121"


async def test_viewer_first_row_precedes_page_end(
    watched: WatchedPage,
    simulator_factory: SimulatorFactory,
    server_factory: ServerFactory,
):
    # About 11 KB per row at 150 KB/s: the 20-row first page takes about 1.5 s to send.
    simulator = await simulator_factory(rows=300, bandwidth=150_000)
    server = await server_factory(simulator, first_page_size=20)
    await goto_viewer(watched, server, "limit=20")
    page = watched.page
    await page.locator(DATA_ROWS).first.wait_for(state="attached")

    # The simulator records a request when its handler returns, after the last byte. The
    # poller's requests ask for 1 or 1000 rows, so the backfill's first page is the 20-row one.
    def backfill_pages() -> list[dict[str, str]]:
        return [
            record.query
            for record in simulator.requests
            if record.path == "/spend/logs/v2" and record.query.get("page_size") == "20"
        ]

    assert backfill_pages() == []
    ids = await rendered_ids(page)
    assert ids[0] == simulator.visible_rows()[0].request_id

    # The first page's record exists once the page is over, so the empty check above can fail.
    await wait_until_live(page)
    finished = backfill_pages()
    assert finished[0]["page"] == "1"
    assert len(finished) == 1


async def test_viewer_progress_counts_rows_mid_page(
    watched: WatchedPage,
    simulator_factory: SimulatorFactory,
    server_factory: ServerFactory,
):
    """The progress text stayed at "loaded 0" while rows of the first upstream page showed."""
    # About 11 KB per row at 50 KB/s: each of the 6 rows takes about 0.2 s to arrive.
    simulator = await simulator_factory(rows=300, bandwidth=50_000)
    server = await server_factory(simulator)
    await goto_viewer(watched, server, "limit=6")
    page = watched.page
    await page.locator(DATA_ROWS).first.wait_for(state="attached")

    # Both values are read in one task, so no event can land between the two reads.
    rows_shown, text = await page.evaluate(
        """() => [
          document.querySelectorAll('#spend-rows tr.data-row').length,
          document.querySelector('#backfill-text').textContent,
        ]"""
    )
    assert text.startswith("loaded ")
    loaded = int(text.removeprefix("loaded "))
    # Rows are drawn on the next animation frame, so the count may run ahead of the table.
    assert loaded >= rows_shown >= 1
    # The backfill of 6 rows was still running when the values were read.
    assert loaded < 6


async def test_viewer_hostile_row_renders_as_text(
    watched: WatchedPage,
    simulator_factory: SimulatorFactory,
    server_factory: ServerFactory,
):
    simulator = await simulator_factory(rows=40)
    start = datetime.now(UTC) - timedelta(seconds=1)
    simulator.add_raw(hostile_row(start), start)
    server = await server_factory(simulator)
    await goto_viewer(watched, server, "limit=41")
    page = watched.page
    await wait_until_live(page)
    row = page.locator(f'{DATA_ROWS}[data-request-id="{HOSTILE_ID}"]')
    await expect(row).to_have_count(1)

    assert await row.locator(".model-name").text_content() == HOSTILE_MODEL
    assert await row.locator("td.col-error").text_content() == f"500 {HOSTILE_ERROR_CLASS}"
    assert await row.locator("td.col-error").get_attribute("title") == HOSTILE_ERROR_MESSAGE

    # The detail panel shows the same fields, and the traceback, as text.
    await row.click()
    traceback = page.locator("#details .details-traceback")
    await expect(traceback).to_have_text(HOSTILE_ERROR_MESSAGE)
    assert await page.locator("#details-title").text_content() == HOSTILE_MODEL
    assert await page.locator("#details .details-error-message").text_content() == (
        HOSTILE_ERROR_MESSAGE
    )

    assert await page.locator("img").count() == 0
    assert await page.locator("svg").count() == 0
    scripts = await page.evaluate(
        "[...document.scripts].map(script => new URL(script.src).pathname)"
    )
    assert scripts == PAGE_SCRIPTS
    assert await page.evaluate("typeof window.__pwned") == "undefined"
    assert watched.dialogs == []
    assert watched.page_errors == []
    assert await watched.csp_violations() == []


async def test_viewer_upstream_unauthorized_shows_banner(
    watched: WatchedPage,
    simulator_factory: SimulatorFactory,
    server_factory: ServerFactory,
):
    simulator = await simulator_factory(rows=40)
    # The poller, started by another stream first, polls again only after poll_interval, so
    # the page's stream reports its own backfill's error, retried after poll_interval.
    server = await server_factory(simulator, poll_interval=30, max_backoff=30)
    await start_poller(server)
    simulator.fault = Fault("unauthorized")
    await goto_viewer(watched, server, "limit=20")
    page = watched.page
    banner = page.locator("#upstream-error")
    await expect(banner).to_be_visible()

    message = await page.locator("#upstream-error-message").text_content()
    assert message is not None
    assert "(Authentication Error, Invalid proxy server token passed.)" in message
    assert message.startswith(f"LiteLLM at {simulator.url} rejected the key with 401")
    detail = await page.locator("#upstream-error-detail").text_content()
    assert detail == "kind: auth · HTTP 401 · retrying in 30 s"
    assert await page.locator(STATUS).get_attribute("data-state") == "upstreamError"
    assert await page.locator("#connection-state").text_content() == "Upstream error"
    assert await page.locator(DATA_ROWS).count() == 0


async def test_viewer_upstream_error_hides_progress(
    watched: WatchedPage,
    simulator_factory: SimulatorFactory,
    server_factory: ServerFactory,
):
    """The backfill progress bar kept running after an upstream error had ended the backfill."""
    simulator = await simulator_factory(rows=40, fault=Fault("server_error"))
    server = await server_factory(simulator)
    await goto_viewer(watched, server, "limit=20")
    await expect(watched.page.locator("#upstream-error")).to_be_visible()

    assert await watched.page.locator("#backfill").is_hidden()


async def test_viewer_normal_load_reports_no_errors(
    watched: WatchedPage,
    simulator_factory: SimulatorFactory,
    server_factory: ServerFactory,
):
    simulator = await simulator_factory(rows=100)
    server = await server_factory(simulator)
    await goto_viewer(watched, server, "limit=100")
    await wait_until_live(watched.page)
    await wait_for_count(watched.page, "rowCount", 100)

    assert watched.console_errors == []
    assert watched.console_warnings == []
    assert watched.page_errors == []
    assert await watched.csp_violations() == []
    counts = await read_counts(watched.page)
    assert counts["duplicateCount"] == 0
    assert counts["droppedCount"] == 0


async def test_viewer_csp_blocks_inline_script(
    watched: WatchedPage,
    simulator_factory: SimulatorFactory,
    server_factory: ServerFactory,
):
    simulator = await simulator_factory(rows=10)
    server = await server_factory(simulator)
    await goto_viewer(watched, server, "limit=10")
    page = watched.page
    await wait_until_live(page)

    await page.evaluate(
        """() => {
          const script = document.createElement('script');
          script.textContent = 'window.__inlineRan = true';
          document.body.append(script);
        }"""
    )
    assert await page.evaluate("typeof window.__inlineRan") == "undefined"
    assert await watched.csp_violations() == ["script-src-elem inline"]


@pytest.mark.parametrize(
    ("scheme", "background"),
    [("light", "rgb(255, 255, 255)"), ("dark", "rgb(20, 23, 28)")],
)
async def test_viewer_theme_follows_color_scheme(
    browser: Browser,
    simulator_factory: SimulatorFactory,
    server_factory: ServerFactory,
    scheme: str,
    background: str,
):
    watched = await open_watched_page(browser, color_scheme=scheme)
    simulator = await simulator_factory(rows=10)
    server = await server_factory(simulator)
    await goto_viewer(watched, server, "limit=10")
    await wait_until_live(watched.page)

    body = watched.page.locator("body")
    color = await body.evaluate("element => getComputedStyle(element).backgroundColor")
    assert color == background


async def test_viewer_theme_toggle_survives_reload(
    browser: Browser,
    simulator_factory: SimulatorFactory,
    server_factory: ServerFactory,
):
    watched = await open_watched_page(browser, color_scheme="light")
    simulator = await simulator_factory(rows=10)
    server = await server_factory(simulator)
    await goto_viewer(watched, server, "limit=10")
    page = watched.page
    toggle = page.locator("#theme-toggle")
    body = page.locator("body")
    background = "element => getComputedStyle(element).backgroundColor"

    # system -> light -> dark
    await toggle.click()
    await toggle.click()
    await expect(toggle).to_have_text("Theme: dark")
    assert await body.evaluate(background) == "rgb(20, 23, 28)"

    await page.reload()
    await expect(toggle).to_have_text("Theme: dark")
    assert await page.evaluate("document.documentElement.dataset.theme") == "dark"
    assert await body.evaluate(background) == "rgb(20, 23, 28)"


def png_size(path: Path) -> tuple[int, int]:
    """Return (width, height) from a PNG file's IHDR chunk."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


async def test_viewer_screenshots_light_and_dark(browser: Browser, tmp_path: Path):
    """The README screenshots come from take_screenshots; this checks that it still works."""
    written = await take_screenshots(browser, tmp_path)

    assert [path.name for path in written] == ["viewer-light.png", "viewer-dark.png"]
    for path in written:
        assert png_size(path) == (VIEWPORT["width"], VIEWPORT["height"])
