"""The viewer under load: 100,000 rows streamed at about 2,000 rows per second.

A 10,000-row backfill comes first. Then the test adds 90,000 rows to the simulator at 2,000 rows
per second, and aria_stream's poller (every 0.1 s) turns them into live batches. The page keeps
its default cap of 50,000 rows, so half of the rows are dropped. Every row must be accounted
for: received once, then kept or counted as dropped.

While the rows stream in, the test also scrolls the table. Chromium reports every main-thread
task over 50 ms; the test prints the maximum (run pytest with -s to see it) and checks it
against a generous bound, because shared CI machines are noisy.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta

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
    read_counts,
    wait_for_count,
    wait_until_live,
)
from tests.conftest import ServerFactory, SimulatorFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]
# Fixtures from tests/browser_support.py, bound here so pytest finds them.
chromium = browser_support.chromium
module_browser = browser_support.module_browser
browser = browser_support.browser
watched = browser_support.watched
simulator_factory = browser_support.simulator_factory
server_factory = browser_support.server_factory

BACKFILL_ROWS = 10_000
LIVE_ROWS = 90_000
ROWS_PER_SECOND = 2_000
TICK_SECONDS = 0.05
DEFAULT_MAX_ROWS = 50_000
# Far above the 50 ms that makes a task "long"; a task this long would be a visible freeze.
LONG_TASK_BOUND_MS = 1_500


async def produce_steadily(simulator: Simulator, total: int) -> None:
    """Add ``total`` rows at ROWS_PER_SECOND, each a request of under 100 ms that just ended."""
    per_tick = round(ROWS_PER_SECOND * TICK_SECONDS)
    started = time.monotonic()
    produced = 0
    while produced < total:
        now = datetime.now(UTC)
        rows = []
        for index in range(min(per_tick, total - produced)):
            row = simulator.factory.make(now)
            row.duration_ms = 5 + index % 90
            row.start = now - timedelta(milliseconds=row.duration_ms)
            rows.append(row)
        simulator.add_rows(rows)
        produced += len(rows)
        due = started + produced / ROWS_PER_SECOND
        await asyncio.sleep(max(0.0, due - time.monotonic()))


async def scroll_back_and_forth(page: Page, stop: asyncio.Event) -> None:
    """Scroll the table with the mouse wheel, 60 rows down and 30 up, until ``stop`` is set."""
    await page.mouse.move(640, 650)
    steps = 0
    while not stop.is_set():
        await page.mouse.wheel(0, 1800 if steps % 3 != 2 else -900)
        steps += 1
        await asyncio.sleep(0.2)


async def test_viewer_streams_100k_rows_with_bounded_dom(
    watched: WatchedPage, simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    simulator = await simulator_factory(rows=BACKFILL_ROWS)
    # The poll window only has to cover rows that take under 100 ms, so 2 s is plenty and
    # LiteLLM's count for the window stays exact (it is capped at 10,000).
    server = await server_factory(simulator, poll_interval=0.1, poll_overlap=2.0)
    await goto_viewer(watched, server, f"limit={BACKFILL_ROWS}")
    page = watched.page
    await wait_until_live(page)
    await wait_for_count(page, "rowCount", BACKFILL_ROWS)

    # Someone reads the table while rows stream in, so rendering runs on scroll as well.
    stop_scrolling = asyncio.Event()
    scrolling = asyncio.create_task(scroll_back_and_forth(page, stop_scrolling))
    started = time.monotonic()
    try:
        await produce_steadily(simulator, LIVE_ROWS)
    finally:
        stop_scrolling.set()
        await scrolling
    produce_seconds = time.monotonic() - started
    total = BACKFILL_ROWS + LIVE_ROWS
    await expect(page.locator("body")).to_have_attribute(
        "data-received-count", str(total), timeout=30_000
    )
    counts = await read_counts(page)
    long_tasks = await watched.long_tasks()
    long_frames = await watched.long_frames()
    longest = max(long_tasks, default=0.0)
    lagged = [text for text in watched.console_warnings if "dropped" in text]
    print(
        f"\n100k rows: produced in {produce_seconds:.1f} s, all received "
        f"{time.monotonic() - started:.1f} s after the first live row was added; "
        f"{len(long_tasks)} long tasks (longest {longest:.0f} ms), {len(long_frames)} long "
        f"animation frames (longest {max(long_frames, default=0.0):.0f} ms); "
        f"{len(lagged)} lagged events, {counts['duplicateCount']} rows sent twice and dropped"
    )

    # Rows are counted once by request id, so 100,000 received means every row arrived. A
    # "lagged" recovery may send rows twice; the page drops those and counts them apart.
    assert counts["receivedCount"] == total
    assert counts["rowCount"] + counts["droppedCount"] == total
    assert counts["rowCount"] == DEFAULT_MAX_ROWS
    assert counts["droppedCount"] == total - DEFAULT_MAX_ROWS
    assert counts["renderedRows"] < 60
    assert await page.locator(DATA_ROWS).count() == counts["renderedRows"]
    await expect(page.locator("#dropped-note")).to_have_text(
        "50,000 older rows dropped (keeping 50,000)"
    )
    assert await page.evaluate("window.__longTasksUnsupported ?? null") is None
    assert longest < LONG_TASK_BOUND_MS
    assert watched.page_errors == []

    # The reader scrolled away from the newest rows, so the pill offers to jump back.
    pill = page.locator("#new-rows")
    await expect(pill).to_be_visible()
    await pill.click()
    await expect(pill).to_be_hidden()
    assert await page.locator("#table-scroll").evaluate("scroller => scroller.scrollTop") == 0
