"""Scenario: headless Chromium showing rows, the viewer next to the baseline page.

Part one opens aria_stream's viewer and the baseline page (``bench/static/baseline.html``) on
the same slow upstream as the backfill scenario. Part two streams many rows through the live
tail into the viewer at a steady rate. A script injected before each page's own scripts records
when the first row element (a ``tr`` with ``data-request-id`` in a ``tbody``) was added and
how many were added. It also records every long task that Chromium reports, which is a
main-thread task of 50 ms or more.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from aria_stream.simulator.dataset import RowFactory
from bench.backfill import baseline_query
from bench.config import BackfillConfig, BrowserConfig
from bench.procs import ProcessGroup
from bench.simctl import add_rows
from bench.stats import ratio, summarize

VIEWPORT = {"width": 1280, "height": 800}
PAGE_TIMEOUT = 60.0
# A stream whose row count has not grown for this long is taken as finished.
SETTLE_SECONDS = 3.0
LIVE_SETTLE_SECONDS = 10.0

RECORD_ROWS_AND_LONG_TASKS = """
(() => {
  const state = {
    firstRowAt: null, firstRowWall: null, lastRowAt: null, rows: 0, streamRows: 0, longTasks: [],
    lagged: 0, skipped: 0,
  };
  window.__bench = state;
  // Count the rows that arrive on any EventSource, by their request_id keys; a viewer that
  // renders only the visible rows, or keeps a limited number, still receives all of them.
  const NativeEventSource = window.EventSource;
  if (NativeEventSource) {
    window.EventSource = class extends NativeEventSource {
      constructor(...args) {
        super(...args);
        this.addEventListener('entries', (event) => {
          state.streamRows += event.data.split('"request_id"').length - 1;
        });
        this.addEventListener('lagged', (event) => {
          state.lagged += 1;
          state.skipped += JSON.parse(event.data).skipped || 0;
        });
      }
    };
  }
  try {
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        state.longTasks.push([entry.startTime, entry.duration]);
      }
    }).observe({ type: 'longtask', buffered: true });
  } catch (error) {
    state.longTaskError = String(error);
  }
  function countRows(node) {
    if (node.nodeType !== 1) {
      return 0;
    }
    let count = node.matches('tr[data-request-id]') && node.closest('tbody') ? 1 : 0;
    count += node.querySelectorAll('tbody tr[data-request-id]').length;
    return count;
  }
  new MutationObserver((records) => {
    let added = 0;
    for (const record of records) {
      for (const node of record.addedNodes) {
        added += countRows(node);
      }
    }
    if (added > 0) {
      const now = performance.now();
      if (state.firstRowAt === null) {
        state.firstRowAt = now;
        state.firstRowWall = Date.now();
      }
      state.lastRowAt = now;
      state.rows += added;
    }
  }).observe(document, { childList: true, subtree: true });
})();
"""


async def open_page(browser: Any) -> Any:
    context = await browser.new_context(viewport=VIEWPORT)
    await context.add_init_script(RECORD_ROWS_AND_LONG_TASKS)
    return await context.new_page()


async def read_state(page: Any) -> dict[str, Any]:
    """Return the recorded state, with the viewer's own row count when the page shows one."""
    state: dict[str, Any] = await page.evaluate("window.__bench")
    text = await page.evaluate("(document.querySelector('#row-count') || {}).textContent || ''")
    digits = "".join(character for character in text.split(" ")[0] if character.isdigit())
    state["shown"] = int(digits) if digits else None
    return state


async def wait_for_rows(
    page: Any, expected: int, limit_seconds: float, settle_seconds: float = SETTLE_SECONDS
) -> dict[str, Any]:
    """Poll the page until it has ``expected`` rows or stops changing.

    The row count is the largest of the row elements added, the count the viewer shows in
    ``#row-count`` and the rows received on its EventSource, because a viewer that renders only
    the visible rows adds fewer elements.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_seconds
    last_seen: tuple[int, int | None, int] = (-1, None, -1)
    last_change = loop.time()
    while True:
        state = await read_state(page)
        now = loop.time()
        seen = (state["rows"], state["shown"], state["streamRows"])
        if seen != last_seen:
            last_seen, last_change = seen, now
        if max(state["rows"], state["shown"] or 0, state["streamRows"]) >= expected:
            break
        if now > deadline:
            break
        if state["rows"] > 0 and now - last_change > settle_seconds:
            break
        await asyncio.sleep(0.05)
    # Long tasks are reported after they end; give the last render a moment to be reported.
    await asyncio.sleep(0.5)
    return await read_state(page)


def page_result(state: dict[str, Any]) -> dict[str, Any]:
    durations = [duration for _, duration in state["longTasks"]]
    return {
        "first_row_ms": state["firstRowAt"],
        "last_row_element_ms": state["lastRowAt"],
        "rows": max(state["rows"], state["shown"] or 0),
        "row_elements_added": state["rows"],
        "rows_received": state["streamRows"],
        "lagged_events": state["lagged"],
        "rows_skipped_by_server": state["skipped"],
        "long_tasks": len(durations),
        "longest_long_task_ms": max(durations, default=0.0),
        "long_task_total_ms": sum(durations),
    }


async def measure_page(browser: Any, url: str, expected: int) -> dict[str, Any]:
    page = await open_page(browser)
    try:
        await page.goto(url)
        state = await wait_for_rows(page, expected, PAGE_TIMEOUT)
    finally:
        await page.context.close()
    return page_result(state)


async def side_by_side(browser: Any, config: BrowserConfig, slow: BackfillConfig) -> dict[str, Any]:
    """Measure the viewer and the baseline page on the backfill scenario's slow upstream."""
    async with ProcessGroup() as group:
        simulator = await group.simulator(
            rows=slow.rows,
            bandwidth=slow.bandwidth,
            latency_base=slow.latency_base,
            latency_per_row=slow.latency_per_row,
        )
        aria = await group.aria(simulator)
        baseline = await group.baseline(simulator)
        viewer_url = f"{aria.url}/?limit={slow.rows}"
        reps: list[dict[str, Any]] = []
        for rep in range(config.reps):
            order = ["baseline", "aria"] if rep % 2 == 0 else ["aria", "baseline"]
            pair: dict[str, Any] = {}
            for system in order:
                if system == "baseline":
                    query = baseline_query(slow.rows)
                    url = f"{baseline.url}/baseline/?path=/spend/logs/v2&{query}"
                else:
                    url = viewer_url
                pair[system] = await measure_page(browser, url, slow.rows)
            reps.append(pair)
    summary: dict[str, Any] = {
        system: {
            key: summarize(rep[system][key] for rep in reps)
            for key in ("first_row_ms", "longest_long_task_ms", "long_task_total_ms", "rows")
        }
        for system in ("baseline", "aria")
    }
    summary["first_row_speedup"] = summarize(
        ratio(rep["baseline"]["first_row_ms"], rep["aria"]["first_row_ms"]) for rep in reps
    )
    return {"reps": reps, "summary": summary}


async def live_stream(browser: Any, config: BrowserConfig) -> dict[str, Any]:
    """Stream rows produced at a steady rate through the live tail into the viewer."""
    async with ProcessGroup() as group:
        simulator = await group.simulator(rows=0)
        aria = await group.aria(
            simulator, poll_interval=config.poll_interval, poll_overlap=config.poll_overlap
        )
        page = await open_page(browser)
        try:
            await page.goto(f"{aria.url}/?limit=1")
            # The backfill is empty; give the viewer a moment to go live.
            await asyncio.sleep(1.5)
            batch = max(1, round(config.live_rows_per_second * config.live_batch_seconds))
            batches = max(1, config.live_rows // batch)
            since = time.time()
            loop = asyncio.get_running_loop()
            started = loop.time()
            async with httpx.AsyncClient(base_url=simulator.url) as client:
                for index in range(batches):
                    due = started + index * config.live_batch_seconds
                    await asyncio.sleep(max(0.0, due - loop.time()))
                    await add_rows(client, batch)
            produce_seconds = loop.time() - started
            # A poll that falls behind reads for seconds before it publishes anything.
            state = await wait_for_rows(page, batch * batches, PAGE_TIMEOUT, LIVE_SETTLE_SECONDS)
        finally:
            await page.context.close()
    result = page_result(state)
    first_wall = state["firstRowWall"]
    result.update(
        {
            "rows_produced": batch * batches,
            "produce_seconds": produce_seconds,
            "rows_per_second": batch * batches / produce_seconds,
            "first_row_after_production_ms": None
            if first_wall is None
            else first_wall - since * 1000,
        }
    )
    return result


def baseline_live_estimate(config: BrowserConfig) -> dict[str, Any]:
    """Estimate the size and arrival time of the one response the baseline page would need."""
    rows = RowFactory(seed=7).history(200, datetime.now(UTC))
    bytes_per_row = statistics.mean(len(row.render("v2")) for row in rows)
    return {
        "measured": False,
        "bytes_per_row": bytes_per_row,
        "response_bytes_estimate": bytes_per_row * config.live_rows,
        "first_row_after_production_s_estimate": config.live_rows / config.live_rows_per_second,
    }


async def run(config: BrowserConfig, slow: BackfillConfig) -> dict[str, Any]:
    """Run both parts in one Chromium; return results, or the reason the scenario was skipped."""
    try:
        from playwright.async_api import async_playwright

        from tests.browser_support import CHROMIUM_ARGS, CHROMIUM_PATH, chromium_missing_reason
    except ImportError as error:
        reason = f"Playwright for Python is missing ({error}); install the test extra"
        return {"config": vars(config), "skipped": reason, "targets": [], "complete": False}
    missing = chromium_missing_reason()
    if missing is not None:
        return {"config": vars(config), "skipped": missing, "targets": [], "complete": False}

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM_PATH), args=CHROMIUM_ARGS
        )
        try:
            backfill = await side_by_side(browser, config, slow)
            live = await live_stream(browser, config)
        finally:
            await browser.close()
    complete = (
        all(rep[system]["rows"] == slow.rows for rep in backfill["reps"] for system in rep)
        and live["rows"] > 0
    )
    return {
        "config": vars(config),
        "backfill": backfill,
        "live": live,
        "live_baseline": baseline_live_estimate(config),
        # No numeric target applies to the browser; its numbers are reported as measured.
        "targets": [],
        "complete": complete,
    }
