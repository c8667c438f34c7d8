"""Browser tests of the virtual table and the summary strip: a screenful of rows in the DOM,
follow mode and the "new rows" pill, pause, tail order, the row cap and the totals.

New live rows come from ``simulator.produce``; the server polls every 0.2 s, so they show up
well within an expectation's time-out.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest

if not os.environ.get("CI"):
    pytest.importorskip(
        "playwright",
        reason="Playwright for Python is missing; install it with: pip install -e '.[test]'",
    )

from playwright.async_api import Page, expect

from aria_stream.simulator import Simulator
from aria_stream.simulator.dataset import SimRow
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

ROW_HEIGHT = 30
POLL_INTERVAL = 0.2

TOP_VISIBLE_ROW = """() => {
  const scroller = document.querySelector('#table-scroll');
  const header = document.querySelector('#spend-table thead th').getBoundingClientRect().bottom;
  const rows = [...document.querySelectorAll('#spend-rows tr.data-row')];
  const row = rows.find((candidate) => candidate.getBoundingClientRect().top >= header - 1);
  return { id: row ? row.dataset.requestId : null, scrollTop: scroller.scrollTop };
}"""


def newest_first(rows: list[SimRow]) -> list[str]:
    """Return request ids in the order the viewer shows one live batch: newest start first."""
    return [row.request_id for row in sorted(rows, key=lambda row: (row.start, row.request_id))][
        ::-1
    ]


async def start_live(
    watched: WatchedPage,
    simulator_factory: SimulatorFactory,
    server_factory: ServerFactory,
    *,
    rows: int,
    query: str,
) -> Simulator:
    simulator = await simulator_factory(rows=rows)
    server = await server_factory(simulator, poll_interval=POLL_INTERVAL)
    await goto_viewer(watched, server, query)
    await wait_until_live(watched.page)
    return simulator


async def scroll_to(page: Page, scroll_top: int) -> None:
    await page.locator("#table-scroll").evaluate(
        "(scroller, top) => { scroller.scrollTop = top; }", scroll_top
    )


async def test_viewer_dom_holds_one_screenful(
    watched: WatchedPage, simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    simulator = await start_live(
        watched, simulator_factory, server_factory, rows=2000, query="limit=2000"
    )
    page = watched.page
    await wait_for_count(page, "rowCount", 2000)
    expected = [row.request_id for row in simulator.visible_rows()[:2000]]

    await scroll_to(page, 1000 * ROW_HEIGHT)
    await expect(page.locator(DATA_ROWS).first).not_to_have_attribute(
        "data-request-id", expected[0]
    )
    top = await page.evaluate(TOP_VISIBLE_ROW)
    assert top == {"id": expected[1000], "scrollTop": 1000 * ROW_HEIGHT}
    ids = await rendered_ids(page)
    assert len(ids) < 60
    start = expected.index(ids[0])
    assert ids == expected[start : start + len(ids)]


async def test_viewer_scrolled_view_stays_and_counts_new_rows(
    watched: WatchedPage, simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    simulator = await start_live(
        watched, simulator_factory, server_factory, rows=200, query="limit=200"
    )
    page = watched.page
    await wait_for_count(page, "rowCount", 200)
    await scroll_to(page, 30 * ROW_HEIGHT)
    await expect(page.locator(DATA_ROWS).first).not_to_have_attribute(
        "data-request-id", simulator.visible_rows()[0].request_id
    )
    before = await page.evaluate(TOP_VISIBLE_ROW)

    produced = simulator.produce(5)
    await wait_for_count(page, "rowCount", 205)
    pill = page.locator("#new-rows")
    await expect(pill).to_have_text("↑ 5 new")
    after = await page.evaluate(TOP_VISIBLE_ROW)
    assert after == {"id": before["id"], "scrollTop": before["scrollTop"] + 5 * ROW_HEIGHT}

    await pill.click()
    await expect(pill).to_be_hidden()
    await expect(page.locator(DATA_ROWS).first).to_have_attribute(
        "data-request-id", newest_first(produced)[0]
    )
    assert (await page.evaluate(TOP_VISIBLE_ROW))["scrollTop"] == 0


async def test_viewer_follow_mode_shows_new_rows_on_top(
    watched: WatchedPage, simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    simulator = await start_live(watched, simulator_factory, server_factory, rows=60, query="")
    page = watched.page
    await wait_for_count(page, "rowCount", 60)
    newest_before = simulator.visible_rows()[0].request_id

    produced = simulator.produce(3)
    await wait_for_count(page, "rowCount", 63)
    ids = await rendered_ids(page)
    assert ids[:3] == newest_first(produced)
    assert ids[3] == newest_before
    assert await page.locator("#new-rows").is_hidden()


async def test_viewer_pause_keeps_new_rows_waiting(
    watched: WatchedPage, simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    simulator = await start_live(
        watched, simulator_factory, server_factory, rows=40, query="limit=40"
    )
    page = watched.page
    await wait_for_count(page, "rowCount", 40)
    pause = page.locator("#pause-toggle")
    await pause.click()
    await expect(pause).to_have_attribute("aria-pressed", "true")
    assert "paused=1" in page.url
    rows_before = await rendered_ids(page)

    produced = simulator.produce(4)
    await wait_for_count(page, "heldCount", 4)
    await expect(page.locator("#held-note")).to_have_text("paused: 4 new rows waiting")
    # The held note may change the toolbar's height and so the number of rows in view.
    waiting = await rendered_ids(page)
    assert waiting == rows_before[: len(waiting)]
    counts = await read_counts(page)
    assert (counts["rowCount"], counts["receivedCount"]) == (40, 44)

    await pause.click()
    await wait_for_count(page, "rowCount", 44)
    await expect(page.locator("#held-note")).to_be_hidden()
    assert (await rendered_ids(page))[:4] == newest_first(produced)


async def test_viewer_space_key_toggles_pause(
    watched: WatchedPage, simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    await start_live(watched, simulator_factory, server_factory, rows=10, query="limit=10")
    page = watched.page
    pause = page.locator("#pause-toggle")

    await page.locator("#table-scroll").focus()
    await page.keyboard.press("Space")
    await expect(pause).to_have_attribute("aria-pressed", "true")
    await expect(pause).to_have_text("Resume")
    await page.keyboard.press("Space")
    await expect(pause).to_have_attribute("aria-pressed", "false")
    assert "paused" not in page.url


async def test_viewer_tail_order_keeps_newest_at_bottom(
    watched: WatchedPage, simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    """Tail order stopped following when the summary grew after the page had scrolled down."""
    simulator = await start_live(
        watched, simulator_factory, server_factory, rows=100, query="limit=100&order=tail"
    )
    page = watched.page
    await wait_for_count(page, "rowCount", 100)
    await expect(page.locator(DATA_ROWS).last).to_have_attribute(
        "data-request-id", simulator.visible_rows()[0].request_id
    )

    produced = simulator.produce(2)
    await wait_for_count(page, "rowCount", 102)
    await expect(page.locator(DATA_ROWS).last).to_have_attribute(
        "data-request-id", newest_first(produced)[0]
    )
    at_bottom = await page.locator("#table-scroll").evaluate(
        "scroller => scroller.scrollHeight - scroller.clientHeight - scroller.scrollTop < 1"
    )
    assert at_bottom
    assert await page.locator("#order-toggle").get_attribute("aria-pressed") == "true"


async def test_viewer_row_cap_drops_oldest_rows(
    watched: WatchedPage, simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    simulator = await start_live(
        watched, simulator_factory, server_factory, rows=300, query="limit=300&max_rows=100"
    )
    page = watched.page
    await wait_for_count(page, "droppedCount", 200)

    counts = await read_counts(page)
    assert counts["rowCount"] == 100
    assert counts["receivedCount"] == 300
    await expect(page.locator("#dropped-note")).to_have_text("200 older rows dropped (keeping 100)")
    assert await page.locator("#max-rows").input_value() == "100"
    assert (await rendered_ids(page))[0] == simulator.visible_rows()[0].request_id


async def test_viewer_summary_totals_match_rows(
    watched: WatchedPage, simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    simulator = await start_live(
        watched, simulator_factory, server_factory, rows=150, query="limit=150"
    )
    page = watched.page
    rows = simulator.visible_rows()[:150]
    await wait_for_count(page, "rowCount", 150)
    await expect(page.locator("#summary-count")).to_have_text("150")

    failures = [row for row in rows if row.failed]
    rate_limited = [row for row in failures if row.profile.failure == "rate_limit"]
    connection = [row for row in failures if row.profile.failure == "connection"]
    tokens = sum(row.prompt_tokens + row.completion_tokens for row in rows)
    expected_spend, expected_rate = await page.evaluate(
        """async ([spend, rate]) => {
          const format = await import('/static/format.js');
          return [format.formatCost(spend), format.formatPercent(rate)];
        }""",
        [sum(row.spend for row in rows), len(failures) / len(rows)],
    )
    assert await page.locator("#summary-spend").text_content() == expected_spend
    assert await page.locator("#summary-tokens").text_content() == f"{tokens:,}"
    assert await page.locator("#summary-error-rate").text_content() == expected_rate
    assert await page.locator("#summary-rate-limited").text_content() == str(len(rate_limited))
    assert await page.locator("#summary-connection-errors").text_content() == str(len(connection))
    assert await page.locator("#summary-rate-limited").get_attribute("class") == "alert"

    per_model = Counter(row.profile.group for row in rows)
    table = await page.locator("#model-rows tr").evaluate_all(
        "rows => rows.map(row => [...row.children].map(cell => cell.textContent))"
    )
    assert [line[0] for line in table] == [
        name for name, _ in sorted(per_model.items(), key=lambda item: (-item[1], item[0]))
    ]
    free = next(line for line in table if line[0] == "free-llama")
    free_rows = [row for row in rows if row.profile.group == "free-llama"]
    assert free[1:5] == [
        str(len(free_rows)),
        str(sum(row.failed for row in free_rows)),
        str(sum(row.failed for row in free_rows)),
        "0",
    ]
