"""Browser tests: headless Chromium loads the viewer from aria_stream, which reads the simulator.

Chromium is Debian's /usr/bin/chromium, driven by Playwright's async API in the test's event
loop, the same loop that runs the simulator and the app. Without Chromium the tests skip, unless
the CI environment variable is set, where they fail.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

if not os.environ.get("CI"):
    pytest.importorskip(
        "playwright",
        reason="Playwright for Python is missing; install it with: pip install -e '.[test]'",
    )

from playwright.async_api import Browser, async_playwright, expect

from aria_stream.simulator import Fault, Simulator
from tests.browser_support import (
    CHROMIUM_ARGS,
    CHROMIUM_PATH,
    WatchedPage,
    chromium_missing_reason,
    open_watched_page,
)
from tests.conftest import FIXTURES, ServerFactory, SimulatorFactory

pytestmark = pytest.mark.browser

ROWS = "#spend-rows tr"
HOSTILE_MODEL = "<img src=x onerror=window.__pwned=1>"
HOSTILE_ERROR_CLASS = "<svg onload=window.__pwned=3>"
HOSTILE_ERROR_MESSAGE = "</script><script>window.__pwned=2</script>"


@pytest.fixture
def chromium() -> str:
    """Path of Chromium; skips the test when it is missing, or fails it when CI is set."""
    reason = chromium_missing_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return str(CHROMIUM_PATH)


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest.fixture
async def watched(browser: Browser) -> WatchedPage:
    return await open_watched_page(browser)


async def open_viewer(
    server_factory: ServerFactory, simulator: Simulator, watched: WatchedPage, query: str
) -> None:
    server = await server_factory(simulator)
    await watched.page.goto(str(server.make_url(f"/?{query}")))


async def wait_until_live(watched: WatchedPage) -> None:
    await expect(watched.page.locator("#status")).to_have_attribute("data-state", "live")


async def row_ids(watched: WatchedPage) -> list[str]:
    ids: list[str] = await watched.page.locator(ROWS).evaluate_all(
        "rows => rows.map(row => row.dataset.requestId)"
    )
    return ids


def litellm_time(value: datetime) -> str:
    """Format a UTC datetime as LiteLLM's raw SQL path writes it: milliseconds and +00:00."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+00:00"


def hostile_row(start: datetime) -> dict[str, Any]:
    """Return the fixture's LiteLLM row as a failure at ``start`` with markup in its fields."""
    page = json.loads((FIXTURES / "spend_logs_ui.success_page.json").read_text(encoding="utf-8"))
    row: dict[str, Any] = copy.deepcopy(page["data"][0])
    row.update(
        request_id="chatcmpl-hostile-markup",
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
    }
    return row


async def test_viewer_backfill_fills_table(
    watched: WatchedPage,
    simulator_factory: SimulatorFactory,
    server_factory: ServerFactory,
):
    simulator = await simulator_factory(rows=300)
    await open_viewer(server_factory, simulator, watched, "limit=120")
    await wait_until_live(watched)
    await expect(watched.page.locator(ROWS)).to_have_count(120)

    expected = [row.request_id for row in simulator.visible_rows()[:120]]
    ids = await row_ids(watched)
    assert ids[0] == expected[0]
    assert ids == expected
    assert await watched.page.locator("#connection-state").text_content() == "Live"
    assert await watched.page.locator("#row-count").text_content() == "120 rows"
    assert await watched.page.locator("#backfill").is_hidden()


async def test_viewer_first_row_precedes_page_end(
    watched: WatchedPage,
    simulator_factory: SimulatorFactory,
    server_factory: ServerFactory,
):
    # About 11 KB per row at 150 KB/s: the 50-row first page takes about 3.7 s to send.
    simulator = await simulator_factory(rows=300, bandwidth=150_000)
    await open_viewer(server_factory, simulator, watched, "limit=50")
    await watched.page.locator(ROWS).first.wait_for(state="attached")

    # The simulator records a request when its handler returns, after the last byte.
    finished = [record for record in simulator.requests if record.path == "/spend/logs/v2"]
    assert finished == []
    ids = await row_ids(watched)
    assert ids[0] == simulator.visible_rows()[0].request_id

    # The first page's record exists once the page is over, so the empty check above can fail.
    await wait_until_live(watched)
    finished = [record for record in simulator.requests if record.path == "/spend/logs/v2"]
    assert finished[0].query["page"] == "1"
    assert finished[0].query["page_size"] == "50"


async def test_viewer_progress_counts_rows_mid_page(
    watched: WatchedPage,
    simulator_factory: SimulatorFactory,
    server_factory: ServerFactory,
):
    """The progress text stayed at "loaded 0" while rows of the first upstream page showed."""
    # About 11 KB per row at 50 KB/s: each of the 6 rows takes about 0.2 s to arrive.
    simulator = await simulator_factory(rows=300, bandwidth=50_000)
    await open_viewer(server_factory, simulator, watched, "limit=6")
    await watched.page.locator(ROWS).first.wait_for(state="attached")

    # Both values are read in one task, so no event can land between the two reads.
    rows_shown, text = await watched.page.evaluate(
        """() => [
          document.querySelectorAll('#spend-rows tr').length,
          document.querySelector('#backfill-text').textContent,
        ]"""
    )
    assert text.startswith("loaded ")
    loaded = int(text.removeprefix("loaded "))
    # Rows are inserted on the next animation frame, so the count may run ahead of the table.
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
    await open_viewer(server_factory, simulator, watched, "limit=41")
    await wait_until_live(watched)
    page = watched.page
    row = page.locator('#spend-rows tr[data-request-id="chatcmpl-hostile-markup"]')
    await expect(row).to_have_count(1)

    assert await row.locator(".model-name").text_content() == HOSTILE_MODEL
    assert await row.locator("td.col-error").text_content() == f"500 {HOSTILE_ERROR_CLASS}"
    assert await row.locator("td.col-error").get_attribute("title") == HOSTILE_ERROR_MESSAGE
    assert await page.locator("img").count() == 0
    assert await page.locator("#spend-rows svg").count() == 0
    assert await page.evaluate("document.scripts.length") == 1
    assert await page.evaluate("typeof window.__pwned") == "undefined"
    assert watched.dialogs == []
    assert watched.page_errors == []


async def test_viewer_upstream_unauthorized_shows_banner(
    watched: WatchedPage,
    simulator_factory: SimulatorFactory,
    server_factory: ServerFactory,
):
    simulator = await simulator_factory(rows=40, fault=Fault("unauthorized"))
    await open_viewer(server_factory, simulator, watched, "limit=20")
    page = watched.page
    banner = page.locator("#upstream-error")
    await expect(banner).to_be_visible()

    message = await page.locator("#upstream-error-message").text_content()
    assert message is not None
    assert "(Authentication Error, Invalid proxy server token passed.)" in message
    assert message.startswith(f"LiteLLM at {simulator.url} rejected the key with 401")
    detail = await page.locator("#upstream-error-detail").text_content()
    assert detail == "kind: auth · HTTP 401 · not retrying"
    assert await page.locator("#status").get_attribute("data-state") == "upstreamError"
    assert await page.locator("#connection-state").text_content() == "Upstream error"
    assert await page.locator(ROWS).count() == 0


async def test_viewer_upstream_error_hides_progress(
    watched: WatchedPage,
    simulator_factory: SimulatorFactory,
    server_factory: ServerFactory,
):
    """The backfill progress bar kept running after an upstream error had ended the backfill."""
    simulator = await simulator_factory(rows=40, fault=Fault("server_error"))
    await open_viewer(server_factory, simulator, watched, "limit=20")
    await expect(watched.page.locator("#upstream-error")).to_be_visible()

    assert await watched.page.locator("#backfill").is_hidden()


async def test_viewer_normal_load_reports_no_errors(
    watched: WatchedPage,
    simulator_factory: SimulatorFactory,
    server_factory: ServerFactory,
):
    simulator = await simulator_factory(rows=100)
    await open_viewer(server_factory, simulator, watched, "limit=100")
    await wait_until_live(watched)
    await expect(watched.page.locator(ROWS)).to_have_count(100)

    assert watched.console_errors == []
    assert watched.console_warnings == []
    assert watched.page_errors == []
    assert await watched.csp_violations() == []


async def test_viewer_csp_blocks_inline_script(
    watched: WatchedPage,
    simulator_factory: SimulatorFactory,
    server_factory: ServerFactory,
):
    simulator = await simulator_factory(rows=10)
    await open_viewer(server_factory, simulator, watched, "limit=10")
    await wait_until_live(watched)
    page = watched.page

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
    await open_viewer(server_factory, simulator, watched, "limit=10")
    await wait_until_live(watched)

    body = watched.page.locator("body")
    color = await body.evaluate("element => getComputedStyle(element).backgroundColor")
    assert color == background
