"""Tests of the viewer's ES modules on their own, run in headless Chromium.

Each test loads a page from aria_stream (reading a saved dump, so no simulator is needed),
imports the modules it checks from /static/ and returns plain values to assert on. The
connection tests drive connection.js with a fake EventSource and fake timers, so a watchdog or
a backoff of many seconds runs in no time.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import pytest_asyncio

if not os.environ.get("CI"):
    pytest.importorskip(
        "playwright",
        reason="Playwright for Python is missing; install it with: pip install -e '.[test]'",
    )

from playwright.async_api import Page

from aria_stream.settings import Settings
from tests import browser_support
from tests.browser_support import WatchedPage
from tests.conftest import FIXTURES, ServerFactory

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]
# Fixtures from tests/browser_support.py, bound here so pytest finds them.
chromium = browser_support.chromium
module_browser = browser_support.module_browser
browser = browser_support.browser
watched = browser_support.watched
simulator_factory = browser_support.simulator_factory
server_factory = browser_support.server_factory

# A fake EventSource and fake timers, defined in the page before each test's code.
FAKES = """
const timers = (() => {
  let now = 0;
  let nextId = 1;
  const pending = new Map();
  return {
    now: () => now,
    setTimeout: (callback, delay) => {
      pending.set(nextId, { at: now + delay, callback, every: 0 });
      return nextId++;
    },
    clearTimeout: (id) => pending.delete(id),
    setInterval: (callback, delay) => {
      pending.set(nextId, { at: now + delay, callback, every: delay });
      return nextId++;
    },
    clearInterval: (id) => pending.delete(id),
    advance(milliseconds) {
      const end = now + milliseconds;
      for (;;) {
        let nextTimer = null;
        for (const [id, timer] of pending) {
          if (timer.at <= end && (nextTimer === null || timer.at < pending.get(nextTimer).at)) {
            nextTimer = id;
          }
        }
        if (nextTimer === null) {
          break;
        }
        const timer = pending.get(nextTimer);
        now = timer.at;
        if (timer.every) {
          timer.at += timer.every;
        } else {
          pending.delete(nextTimer);
        }
        timer.callback();
      }
      now = end;
    },
  };
})();
const sources = [];
class FakeSource {
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.listeners = {};
    sources.push(this);
  }
  addEventListener(name, listener) {
    (this.listeners[name] ??= []).push(listener);
  }
  close() {
    this.readyState = 2;
  }
  open() {
    this.readyState = 1;
    for (const listener of this.listeners.open ?? []) {
      listener({});
    }
  }
  emit(name, data, id = '') {
    for (const listener of this.listeners[name] ?? []) {
      listener({ data: JSON.stringify(data), lastEventId: id });
    }
  }
  fail() {
    for (const listener of this.listeners.error ?? []) {
      listener({});
    }
  }
}
const openSources = () => sources.filter((source) => source.readyState !== 2).length;
"""


@pytest_asyncio.fixture(loop_scope="module")
async def page(watched: WatchedPage, server_factory: ServerFactory) -> Page:
    """A page on aria_stream's origin, so that it may import the viewer's modules."""
    dump = FIXTURES / "spend_logs_ui.success_page.json"
    server = await server_factory(Settings(from_file=dump))
    await watched.page.goto(str(server.make_url("/healthz")))
    return watched.page


async def run(page: Page, body: str) -> Any:
    """Run ``body`` as an async function with the fakes defined, and return its result."""
    return await page.evaluate(f"async () => {{ {FAKES}\n{body} }}")


async def test_viewer_backoff_doubles_up_to_cap(page: Page):
    delays = await run(
        page,
        """
        const { backoffDelay } = await import('/static/connection.js');
        return {
          shortest: [0, 1, 2, 3, 4, 5, 6].map((attempt) => backoffDelay(attempt, () => 0)),
          longest: [0, 1, 2, 3, 4, 5, 6].map((attempt) => backoffDelay(attempt, () => 1)),
        };
        """,
    )
    assert delays["longest"] == [1000, 2000, 4000, 8000, 16000, 30000, 30000]
    assert delays["shortest"] == [500, 1000, 2000, 4000, 8000, 15000, 15000]


async def test_viewer_dropped_stream_reopens_after_last_id(page: Page):
    result = await run(
        page,
        """
        const { createConnection } = await import('/static/connection.js');
        const phases = [];
        const connection = createConnection({
          buildUrl: (after) => `/stream?after=${after}`,
          handlers: { entries: () => {} },
          onStatus: (status) => phases.push([status.phase, status.reason, status.retryAt]),
          connect: (url) => new FakeSource(url),
          timers,
          random: () => 0,
        });
        connection.start();
        sources[0].open();
        sources[0].emit('entries', [], 'id-1');
        sources[0].emit('entries', [], 'id-2');
        sources[0].fail();
        const beforeRetry = sources.length;
        timers.advance(499);
        const justBefore = sources.length;
        timers.advance(1);
        return { urls: sources.map((source) => source.url), beforeRetry, justBefore, phases,
                 open: openSources() };
        """,
    )
    assert result["urls"] == ["/stream?after=", "/stream?after=id-2"]
    assert result["beforeRetry"] == 1
    assert result["justBefore"] == 1
    assert result["phases"] == [
        ["connecting", "", None],
        ["open", "", None],
        ["waiting", "dropped", 500],
        ["connecting", "", None],
    ]
    assert result["open"] == 1


async def test_viewer_watchdog_rebuilds_after_three_missed_pings(page: Page):
    result = await run(
        page,
        """
        const { createConnection } = await import('/static/connection.js');
        const phases = [];
        const connection = createConnection({
          buildUrl: (after) => `/stream?after=${after}`,
          handlers: { entries: () => {} },
          onStatus: (status) => phases.push(`${status.phase}:${status.reason}`),
          connect: (url) => new FakeSource(url),
          timers,
          random: () => 0,
        });
        connection.start();
        sources[0].emit('entries', [], 'id-7');
        // The default interval is 15 s: 3 missed pings plus 1 s of slack is 46 s.
        timers.advance(46_000);
        const atDeadline = sources.length;
        timers.advance(1000);
        const afterTick = phases.slice();
        timers.advance(500);
        return { atDeadline, afterTick, urls: sources.map((source) => source.url) };
        """,
    )
    assert result["atDeadline"] == 1
    assert result["afterTick"] == ["connecting:", "waiting:heartbeat"]
    assert result["urls"] == ["/stream?after=", "/stream?after=id-7"]


async def test_viewer_watchdog_learns_ping_interval(page: Page):
    result = await run(
        page,
        """
        const { createConnection } = await import('/static/connection.js');
        const connection = createConnection({
          buildUrl: (after) => `/stream?after=${after}`,
          connect: (url) => new FakeSource(url),
          timers,
          random: () => 0,
        });
        connection.start();
        for (let ping = 0; ping < 3; ping += 1) {
          timers.advance(2000);
          sources[0].emit('ping', { time: '2026-12-04T20:00:00Z' });
        }
        const learned = connection.pingIntervalMs;
        // 3 x 2 s + 1 s of slack: still open after 7 s of silence, rebuilt after 8 s.
        timers.advance(7000);
        const after7 = sources.length;
        timers.advance(1000 + 500);
        return { learned, after7, after8: sources.length };
        """,
    )
    assert result == {"learned": 2000, "after7": 1, "after8": 2}


async def test_viewer_meta_resets_backoff(page: Page):
    retry_times = await run(
        page,
        """
        const { createConnection } = await import('/static/connection.js');
        const waits = [];
        const connection = createConnection({
          buildUrl: () => '/stream',
          handlers: { meta: () => {} },
          onStatus: (status) => {
            if (status.phase === 'waiting') {
              waits.push(status.retryAt - timers.now());
            }
          },
          connect: (url) => new FakeSource(url),
          timers,
          random: () => 1,
        });
        connection.start();
        sources.at(-1).fail();
        timers.advance(1000);
        sources.at(-1).fail();
        timers.advance(2000);
        sources.at(-1).emit('meta', {});
        sources.at(-1).fail();
        return waits;
        """,
    )
    assert retry_times == [1000, 2000, 1000]


async def test_viewer_connection_keeps_one_source(page: Page):
    result = await run(
        page,
        """
        const { createConnection } = await import('/static/connection.js');
        const connection = createConnection({
          buildUrl: (after) => `/stream?after=${after}`,
          connect: (url) => new FakeSource(url),
          timers,
        });
        connection.start();
        connection.reconnectNow();
        connection.resumeFrom('cursor-1');
        connection.start();
        const whileRunning = openSources();
        connection.stop('pagehide');
        timers.advance(120_000);
        return { whileRunning, afterStop: openSources(), created: sources.length,
                 urls: sources.map((source) => source.url) };
        """,
    )
    assert result["whileRunning"] == 1
    assert result["afterStop"] == 0
    assert result["created"] == 4
    # start() begins a new query, so it drops the last event id.
    assert result["urls"] == [
        "/stream?after=",
        "/stream?after=",
        "/stream?after=cursor-1",
        "/stream?after=",
    ]


async def test_viewer_store_drops_duplicate_request_ids(page: Page):
    result = await run(
        page,
        """
        const { createRowStore } = await import('/static/store.js');
        const store = createRowStore({ maxRows: 10 });
        store.addBackfill([{ request_id: 'b' }, { request_id: 'a' }]);
        store.addLive([{ request_id: 'c' }, { request_id: 'b' }]);
        store.addBackfill([{ request_id: 'a' }]);
        const ids = [];
        for (let index = 0; index < store.view.length; index += 1) {
          ids.push(store.view.at(index).entry.request_id);
        }
        return { ids, counters: store.counters };
        """,
    )
    assert result["ids"] == ["a", "b", "c"]
    assert result["counters"] == {"received": 3, "dropped": 0, "duplicates": 2}


async def test_viewer_store_cap_drops_oldest(page: Page):
    result = await run(
        page,
        """
        const { createRowStore } = await import('/static/store.js');
        const store = createRowStore({ maxRows: 3 });
        store.addBackfill([{ request_id: 'r3' }, { request_id: 'r2' }, { request_id: 'r1' },
                           { request_id: 'r0' }]);
        const afterBackfill = store.takeChanges();
        store.addLive([{ request_id: 'r4' }, { request_id: 'r5' }]);
        const ids = [];
        for (let index = 0; index < store.view.length; index += 1) {
          ids.push(store.view.at(index).entry.request_id);
        }
        return { ids, counters: store.counters, afterBackfill, changes: store.takeChanges() };
        """,
    )
    assert result["ids"] == ["r3", "r4", "r5"]
    assert result["counters"] == {"received": 6, "dropped": 3, "duplicates": 0}
    assert result["afterBackfill"] == {
        "newestAdded": 0,
        "oldestAdded": 3,
        "oldestRemoved": 0,
        "rebuilt": False,
    }
    assert result["changes"] == {
        "newestAdded": 2,
        "oldestAdded": 0,
        "oldestRemoved": 2,
        "rebuilt": False,
    }


async def test_viewer_store_pause_holds_live_rows(page: Page):
    result = await run(
        page,
        """
        const { createRowStore } = await import('/static/store.js');
        const store = createRowStore({ maxRows: 100, paused: true });
        store.addBackfill([{ request_id: 'old' }]);
        store.addLive([{ request_id: 'new-1' }, { request_id: 'new-2' }]);
        const whilePaused = { view: store.view.length, held: store.heldCount };
        store.setPaused(false);
        const ids = [];
        for (let index = 0; index < store.view.length; index += 1) {
          ids.push(store.view.at(index).entry.request_id);
        }
        return { whilePaused, ids, held: store.heldCount };
        """,
    )
    assert result["whilePaused"] == {"view": 1, "held": 2}
    assert result["ids"] == ["old", "new-1", "new-2"]
    assert result["held"] == 0


async def test_viewer_store_filter_rebuilds_view_and_stats(page: Page):
    result = await run(
        page,
        """
        const { createRowStore } = await import('/static/store.js');
        const { createRowMatcher, parseViewState } = await import('/static/filters.js');
        const store = createRowStore({ maxRows: 100 });
        store.addLive([
          { request_id: 'a', key_alias: 'prod', model: 'gpt-4o', spend: 0.5 },
          { request_id: 'b', key_alias: 'dev', model: 'gpt-4o', spend: 0.25 },
          { request_id: 'c', key_alias: 'prod', model: 'Claude', spend: 0.125,
            error_message: 'Rate LIMIT reached' },
        ]);
        store.setMatcher(createRowMatcher(parseViewState('?key_alias=prod')));
        const byKey = [store.view.length, store.stats.snapshot().spend];
        store.setMatcher(createRowMatcher(parseViewState('?q=rate%20limit')));
        const byText = [store.view.length, store.view.at(0).entry.request_id];
        store.setMatcher(null);
        return { byKey, byText, all: store.view.length };
        """,
    )
    assert result["byKey"] == [2, 0.625]
    assert result["byText"] == [1, "c"]
    assert result["all"] == 3


async def test_viewer_stats_count_errors_and_percentiles(page: Page):
    snapshot = await run(
        page,
        """
        const { createStats } = await import('/static/stats.js');
        const stats = createStats();
        const rows = [];
        for (let index = 1; index <= 20; index += 1) {
          rows.push({ model_group: 'fast', status: 'success', duration_ms: index, spend: 0.001,
                      total_tokens: 10 });
        }
        rows.push({ model_group: 'free', status: 'failure', error_code: '429',
                    error_class: 'RateLimitError', duration_ms: 5, total_tokens: 3 });
        rows.push({ model_group: 'free', status: 'failure', error_code: '500',
                    error_class: 'APIConnectionError', duration_ms: 7, total_tokens: 4 });
        for (const row of rows) {
          stats.add(row);
        }
        return stats.snapshot();
        """,
    )
    assert snapshot["requests"] == 22
    assert snapshot["failures"] == 2
    assert snapshot["rateLimited"] == 1
    assert snapshot["connectionErrors"] == 1
    assert snapshot["tokens"] == 207
    assert snapshot["spend"] == 0.02
    assert snapshot["errorRate"] == 2 / 22
    assert [line["model"] for line in snapshot["models"]] == ["fast", "free"]
    fast, free = snapshot["models"]
    # Nearest rank of 1..20 ms: p50 is the 10th value, p95 the 19th.
    assert (fast["p50"], fast["p95"]) == (10, 19)
    assert (free["p50"], free["p95"]) == (5, 7)
    assert (free["failures"], free["rateLimited"], free["connectionErrors"]) == (2, 1, 1)


async def test_viewer_stats_remove_restores_totals(page: Page):
    result = await run(
        page,
        """
        const { createStats } = await import('/static/stats.js');
        const stats = createStats();
        const remaining = { model: 'a', status: 'success', spend: 0.1, total_tokens: 5,
                            duration_ms: 1234 };
        const removed = { model: 'b', status: 'failure', spend: 0.2, total_tokens: 7,
                          duration_ms: 9 };
        stats.add(remaining);
        stats.add(removed);
        stats.remove(removed);
        return stats.snapshot();
        """,
    )
    assert result["requests"] == 1
    assert result["spend"] == 0.1
    assert result["failures"] == 0
    assert [line["model"] for line in result["models"]] == ["a"]
    # Above 100 ms a duration is counted in a bucket 2 % wide, so p50 is within 1 %.
    assert abs(result["models"][0]["p50"] - 1234) <= 12.34


async def test_viewer_view_state_round_trips_url(page: Page):
    result = await run(
        page,
        """
        const { parseViewState, serializeViewState } = await import('/static/filters.js');
        const search = '?model=gpt-4o&status=failure&error_code=429&team=team-ml&q=timeout'
          + '&range=1h&order=tail&paused=1&max_rows=1000&limit=500';
        const state = parseViewState(search);
        return { state, again: serializeViewState(state),
                 empty: serializeViewState(parseViewState('')) };
        """,
    )
    state = result["state"]
    assert state["model"] == "gpt-4o"
    assert state["status"] == "failure"
    assert state["error_code"] == "429"
    assert state["team"] == "team-ml"
    assert state["q"] == "timeout"
    assert state["range"] == "1h"
    assert state["order"] == "tail"
    assert state["paused"] is True
    assert state["maxRows"] == 1000
    assert state["limit"] == 500
    assert result["again"] == (
        "?model=gpt-4o&status=failure&error_code=429&team=team-ml&q=timeout&range=1h"
        "&order=tail&paused=1&max_rows=1000&limit=500"
    )
    assert result["empty"] == ""


async def test_viewer_view_state_drops_invalid_values(page: Page):
    state = await run(
        page,
        """
        const { parseViewState } = await import('/static/filters.js');
        return parseViewState('?status=maybe&error_code=42x&since=yesterday&order=sideways'
          + '&max_rows=5&limit=0&paused=yes');
        """,
    )
    assert state["status"] == ""
    assert state["error_code"] == ""
    assert state["since"] == ""
    assert state["range"] == ""
    assert state["order"] == "newest"
    assert state["maxRows"] == 50_000
    assert state["limit"] == 1000
    assert state["paused"] is False


async def test_viewer_stream_url_carries_filters_and_after(page: Page):
    urls = await run(
        page,
        """
        const { parseViewState, streamUrl, exportUrl } = await import('/static/filters.js');
        const now = Date.parse('2026-12-04T20:00:00Z');
        const state = parseViewState('?model_group=gpt-4o&range=15m&user=alice&q=x');
        return {
          stream: streamUrl(state, { now, after: '1:abc::0:e:3' }),
          export: exportUrl(state, 'jsonl', { now }),
        };
        """,
    )
    assert urls["stream"] == (
        "/api/spend/stream?model_group=gpt-4o&since=2026-12-04T19%3A45%3A00.000Z&limit=1000"
        "&after=1%3Aabc%3A%3A0%3Ae%3A3"
    )
    assert urls["export"] == (
        "/api/spend/export?model_group=gpt-4o&since=2026-12-04T19%3A45%3A00.000Z&user=alice&q=x"
        "&format=jsonl"
    )


FORMAT_CASES = {
    "formatCost(0.000412)": "$0.00041",
    "formatCost(1234.5)": "$1,234.50",
    "formatCount(1234567)": "1,234,567",
    "formatDuration(999)": "999 ms",
    "formatDuration(1250)": "1.3 s",
    "formatPercent(0.0315)": "3.2%",
    "formatUtcTime('2026-12-04T20:15:03.123456Z')": "2026-12-04 20:15:03.123 UTC",
    "formatRowCount(1)": "1 row",
    "formatRowCount(12345)": "12,345 rows",
}


async def test_viewer_format_helpers(page: Page):
    calls = ", ".join(f"[{call!r}, {call}]" for call in FORMAT_CASES)
    results = await run(
        page,
        f"""
        const {{ formatCost, formatCount, formatDuration, formatPercent, formatUtcTime,
                 formatRowCount }} = await import('/static/format.js');
        return Object.fromEntries([{calls}]);
        """,
    )
    for call, expected in FORMAT_CASES.items():
        assert results[call] == expected, call
