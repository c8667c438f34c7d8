"""Browser tests of the row detail panel and the keyboard: one request per open, the sections
of a failed row, J/K/Enter/Esc and "/"."""

from __future__ import annotations

import json
import os

import pytest

if not os.environ.get("CI"):
    pytest.importorskip(
        "playwright",
        reason="Playwright for Python is missing; install it with: pip install -e '.[test]'",
    )

from playwright.async_api import Page, expect

from aria_stream.simulator import Simulator
from tests import browser_support
from tests.browser_support import (
    DATA_ROWS,
    WatchedPage,
    goto_viewer,
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

PANEL = "#details"
SECTION_TITLES = "#details .details-section > h3"


def entry_requests(watched: WatchedPage, request_id: str) -> list[str]:
    return watched.requests_to(f"/api/spend/logs/{request_id}")


async def open_viewer(
    watched: WatchedPage,
    simulator_factory: SimulatorFactory,
    server_factory: ServerFactory,
    rows: int = 50,
) -> Simulator:
    simulator = await simulator_factory(rows=rows)
    server = await server_factory(simulator)
    await goto_viewer(watched, server, f"limit={rows}")
    await wait_until_live(watched.page)
    await wait_for_count(watched.page, "rowCount", rows)
    return simulator


async def wait_for_sections(page: Page, request_id: str) -> None:
    await expect(page.locator(PANEL)).to_have_attribute("data-request-id", request_id)
    await expect(page.locator(SECTION_TITLES).first).to_have_text("Timing")


async def test_viewer_details_fetch_once_per_open(
    watched: WatchedPage, simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    simulator = await open_viewer(watched, simulator_factory, server_factory)
    page = watched.page
    first = simulator.visible_rows()[0]
    assert [url for url in watched.requests if "/api/spend/logs/" in url] == []

    await page.locator(DATA_ROWS).first.click()
    await wait_for_sections(page, first.request_id)

    assert len(entry_requests(watched, first.request_id)) == 1
    assert [url for url in watched.requests if "/api/spend/logs/" in url] == entry_requests(
        watched, first.request_id
    )
    assert await page.locator("#details-subtitle").text_content() == first.request_id
    titles = await page.locator(SECTION_TITLES).all_text_contents()
    expected = ["Timing", "Tokens and cost", "Key, team and user"]
    if first.failed:
        expected.append("Error")
    assert titles == [*expected, "Request and response", "Metadata"]


async def test_viewer_details_keys_move_and_close(
    watched: WatchedPage, simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    simulator = await open_viewer(watched, simulator_factory, server_factory)
    page = watched.page
    first, second = (row.request_id for row in simulator.visible_rows()[:2])

    await page.locator(DATA_ROWS).first.click()
    await wait_for_sections(page, first)
    await page.keyboard.press("j")
    await wait_for_sections(page, second)
    selected = page.locator(f'{DATA_ROWS}[aria-selected="true"]')
    await expect(selected).to_have_attribute("data-request-id", second)
    await page.keyboard.press("k")
    await wait_for_sections(page, first)

    assert len(entry_requests(watched, first)) == 2
    assert len(entry_requests(watched, second)) == 1
    await page.keyboard.press("Escape")
    await expect(page.locator(PANEL)).to_be_hidden()
    # Closing makes no request, and the selection stays on the row.
    assert len(entry_requests(watched, first)) == 2
    await expect(selected).to_have_attribute("data-request-id", first)


async def test_viewer_enter_opens_selected_row(
    watched: WatchedPage, simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    simulator = await open_viewer(watched, simulator_factory, server_factory)
    page = watched.page
    third = simulator.visible_rows()[2].request_id

    await page.locator("#table-scroll").focus()
    for _ in range(3):
        await page.keyboard.press("j")
    assert entry_requests(watched, third) == []
    await page.keyboard.press("Enter")
    await wait_for_sections(page, third)

    assert len(entry_requests(watched, third)) == 1
    focused = await page.evaluate("document.activeElement.dataset.requestId")
    assert focused == third


async def test_viewer_details_show_failure_traceback(
    watched: WatchedPage, simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    simulator = await open_viewer(watched, simulator_factory, server_factory, rows=200)
    page = watched.page
    failed = next(
        row
        for row in simulator.visible_rows()
        if row.profile.failure == "rate_limit" and row.failed
    )
    await page.locator("#filter-q").fill(failed.request_id)
    await wait_for_count(page, "viewCount", 1)
    assert await rendered_ids(page) == [failed.request_id]

    await page.locator(DATA_ROWS).first.click()
    await wait_for_sections(page, failed.request_id)
    traceback = page.locator("#details .details-traceback")
    await expect(traceback).to_contain_text("RateLimitError: litellm.RateLimitError")
    font = await traceback.evaluate("element => getComputedStyle(element).fontFamily")
    assert "monospace" in font
    assert await page.locator("#details .details-error-message").text_content() == (
        "litellm.RateLimitError: RateLimitError: GroqException - Rate limit reached for model "
        "`llama-3.1-8b-instant` on tokens per minute (TPM): Limit 6000, Used 5871, Requested "
        "412. Please try again in 2.83s."
    )
    metadata = page.locator("#details .json-tree > details.json-node", has_text="metadata")
    await expect(metadata).not_to_have_attribute("open", "")
    await metadata.locator("summary").first.click()
    await expect(metadata.locator(".json-key", has_text="user_api_key_alias")).to_be_visible()


async def test_viewer_details_copy_request_id(
    watched: WatchedPage, simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    simulator = await open_viewer(watched, simulator_factory, server_factory, rows=5)
    page = watched.page
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    first = simulator.visible_rows()[0].request_id

    await page.locator(DATA_ROWS).first.click()
    await wait_for_sections(page, first)
    await page.locator("#details-copy-id").click()

    await expect(page.locator("#details-copy-id")).to_have_text("Copied")
    assert await page.evaluate("navigator.clipboard.readText()") == first
    await page.locator("#details-copy-json").click()
    copied = await page.evaluate("navigator.clipboard.readText()")
    assert json.loads(copied)["request_id"] == first


async def test_viewer_slash_focuses_search(
    watched: WatchedPage, simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    await open_viewer(watched, simulator_factory, server_factory, rows=5)
    page = watched.page

    await page.locator("#table-scroll").focus()
    await page.keyboard.press("/")
    assert await page.evaluate("document.activeElement.id") == "filter-q"
    # The slash starts a search; it is not typed into the field.
    assert await page.locator("#filter-q").input_value() == ""
    await page.keyboard.type("j")
    assert await page.locator("#filter-q").input_value() == "j"
    await page.keyboard.press("Escape")
    assert await page.evaluate("document.activeElement.id") != "filter-q"
