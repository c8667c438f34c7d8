"""Browser test support: Chromium launch options, fixtures, a page that records what went wrong,
and helpers that read the viewer's state.

A browser test module runs all its tests in one event loop
(``pytest.mark.asyncio(loop_scope="module")``) and binds the fixtures below at module level
(``browser = browser_support.browser``), because importing them by name would shadow them in the
test signatures. The simulator and server factories here replace those of tests/conftest.py in
such a module. Chromium is
Debian's /usr/bin/chromium, driven by Playwright's async API in the test's event loop, the same
loop that runs the simulator and the app. Without Chromium the tests skip, unless the CI
environment variable is set, where they fail.

Run as a script to write the viewer screenshots in docs/::

    .venv/bin/python -m tests.browser_support [OUTPUT_DIR]
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Dialog,
    Page,
    Request,
    async_playwright,
    expect,
)

from aria_stream.app import create_app
from aria_stream.settings import Settings
from aria_stream.simulator import Simulator, SimulatorConfig
from tests.conftest import ServerFactory, SimulatorFactory, settings_for

CHROMIUM_PATH = Path("/usr/bin/chromium")
CHROMIUM_INSTALL = "apt-get install -y --no-install-recommends chromium"
# Chromium does not start as root without --no-sandbox. The other flags turn off background
# network traffic, component updates and sync, so a test run stays on loopback.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}
# Expectations that fail should fail well before pytest's 120 s timeout.
PAGE_TIMEOUT_MS = 10_000

# Selectors of the viewer page.
DATA_ROWS = "#spend-rows tr.data-row"
STATUS = "#status"

# Runs before the page's own scripts in every document. Playwright injects it over CDP, so the
# page's Content-Security-Policy does not block it. It records CSP violations and the durations
# of main-thread long tasks and long animation frames (both over 50 ms), as Chromium reports
# them. Code run through page.evaluate is not reported as a long task.
RECORD_PAGE_PROBLEMS = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (event) => {
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
window.__longTasks = [];
window.__longFrames = [];
for (const [type, list] of [['longtask', window.__longTasks],
                            ['long-animation-frame', window.__longFrames]]) {
  try {
    new PerformanceObserver((entries) => {
      for (const entry of entries.getEntries()) {
        list.push(entry.duration);
      }
    }).observe({ type, buffered: true });
  } catch (error) {
    window.__longTasksUnsupported = String(error);
  }
}
"""


def chromium_missing_reason() -> str | None:
    """Return why the browser tests cannot run here, or None when they can."""
    if not (CHROMIUM_PATH.is_file() and os.access(CHROMIUM_PATH, os.X_OK)):
        return f"Chromium is not installed at {CHROMIUM_PATH}; install it with: {CHROMIUM_INSTALL}"
    return None


@dataclass
class WatchedPage:
    """A page and the problems it reported: console messages, uncaught errors and dialogs.

    ``requests`` lists the URL of every request the page made, in order.
    """

    page: Page
    console_errors: list[str] = field(default_factory=list)
    console_warnings: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)
        elif message.type == "warning":
            self.console_warnings.append(message.text)

    async def _on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        await dialog.dismiss()

    def _on_request(self, request: Request) -> None:
        self.requests.append(request.url)

    def requests_to(self, path: str) -> list[str]:
        """Return the URLs of the requests whose path is ``path``."""
        pattern = re.compile(rf"^https?://[^/]+{re.escape(path)}(\?|$)")
        return [url for url in self.requests if pattern.match(url)]

    async def csp_violations(self) -> list[str]:
        """Return the CSP violations of the current document as ``"<directive> <blocked URI>"``."""
        violations: list[str] = await self.page.evaluate("window.__cspViolations")
        return violations

    async def long_tasks(self) -> list[float]:
        """Return the durations in ms of the main-thread long tasks of the current document."""
        durations: list[float] = await self.page.evaluate("window.__longTasks")
        return durations

    async def long_frames(self) -> list[float]:
        """Return the durations in ms of the long animation frames of the current document."""
        durations: list[float] = await self.page.evaluate("window.__longFrames")
        return durations


async def open_watched_page(browser: Browser, **context_options: Any) -> WatchedPage:
    """Open a page in a new context (1280x800 unless ``viewport`` is given) and record its
    problems."""
    context = await browser.new_context(**{"viewport": VIEWPORT, **context_options})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    await context.add_init_script(RECORD_PAGE_PROBLEMS)
    page = await context.new_page()
    watched = WatchedPage(page)
    page.on("console", watched._on_console)
    page.on("pageerror", lambda error: watched.page_errors.append(str(error)))
    page.on("dialog", watched._on_dialog)
    page.on("request", watched._on_request)
    return watched


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of Chromium; skips the tests when it is missing, or fails them when CI is set."""
    reason = chromium_missing_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return str(CHROMIUM_PATH)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_browser(chromium: str) -> AsyncIterator[Browser]:
    """Headless Chromium for all the tests of one module, which run in one event loop.

    Starting Playwright's driver and Chromium takes about a second, more than most browser
    tests themselves, so a module starts them once.
    """
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest_asyncio.fixture(loop_scope="module")
async def browser(module_browser: Browser) -> AsyncIterator[Browser]:
    """The module's Chromium; every context a test opens is closed after the test."""
    yield module_browser
    for context in list(module_browser.contexts):
        await context.close()


@pytest_asyncio.fixture(loop_scope="module")
async def watched(browser: Browser) -> WatchedPage:
    """A fresh page that records console messages, errors, dialogs and requests."""
    return await open_watched_page(browser)


# The fixtures of tests/conftest.py run in each test's own event loop, but the browser tests run
# in their module's loop, so these versions start the same simulators and apps in that loop.


@pytest_asyncio.fixture(loop_scope="module")
async def simulator_factory() -> AsyncIterator[SimulatorFactory]:
    """Start simulators with the given ``SimulatorConfig`` fields; all stop after the test."""
    started: list[Simulator] = []

    async def start(**config: Any) -> Simulator:
        simulator = Simulator(SimulatorConfig(**config))
        await simulator.start("127.0.0.1", 0)
        started.append(simulator)
        return simulator

    yield start
    for simulator in started:
        await simulator.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def server_factory() -> AsyncIterator[ServerFactory]:
    """Start aria_stream apps on loopback; pass a simulator or a ``Settings``."""
    clients: list[TestClient] = []

    async def start(target: Simulator | Settings, **overrides: Any) -> TestClient:
        settings = settings_for(target, **overrides) if isinstance(target, Simulator) else target
        server = TestServer(create_app(settings), host="127.0.0.1", handler_cancellation=True)
        client = TestClient(server)
        clients.append(client)
        await client.start_server()
        return client

    yield start
    for client in clients:
        await client.close()


async def goto_viewer(watched: WatchedPage, server: TestClient, query: str = "") -> None:
    """Load the viewer from ``server`` with the query string ``query`` (without "?")."""
    await watched.page.goto(str(server.make_url(f"/?{query}" if query else "/")))


async def wait_until_live(page: Page) -> None:
    """Wait until the status area shows that the stream is live."""
    await expect(page.locator(STATUS)).to_have_attribute(
        "data-state", "live", timeout=PAGE_TIMEOUT_MS
    )


async def wait_for_count(page: Page, name: str, value: int) -> None:
    """Wait until the viewer's ``document.body.dataset[name]`` equals ``value``.

    ``name`` is one of rowCount, viewCount, heldCount, receivedCount, droppedCount,
    duplicateCount and renderedRows; the viewer updates them once per animation frame.
    """
    attribute = "data-" + re.sub(r"([A-Z])", lambda match: "-" + match.group(1).lower(), name)
    await expect(page.locator("body")).to_have_attribute(
        attribute, str(value), timeout=PAGE_TIMEOUT_MS
    )


async def read_counts(page: Page) -> dict[str, int]:
    """Return the viewer's row counts from ``document.body.dataset``, read in one task."""
    counts: dict[str, str] = await page.evaluate("({ ...document.body.dataset })")
    return {name: int(value) for name, value in counts.items()}


async def rendered_ids(page: Page) -> list[str]:
    """Return the request ids of the rows in the DOM, top to bottom."""
    ids: list[str] = await page.locator(DATA_ROWS).evaluate_all(
        "rows => rows.map(row => row.dataset.requestId)"
    )
    return ids


async def take_screenshots(browser: Browser, output_dir: Path) -> list[Path]:
    """Start a simulator and aria_stream, and save the viewer in light and dark mode.

    The light screenshot shows the table and summary; the dark one also has a failed row's
    detail panel open.
    """
    simulator = Simulator(SimulatorConfig(rows=400))
    await simulator.start("127.0.0.1", 0)
    settings = Settings(litellm_url=simulator.url, litellm_key=simulator.config.master_key)
    runner = web.AppRunner(create_app(settings), handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    written = []
    try:
        for scheme in ("light", "dark"):
            watched = await open_watched_page(
                browser, color_scheme=scheme, timezone_id="UTC", locale="en-US"
            )
            page = watched.page
            await page.goto(f"http://127.0.0.1:{port}/?limit=400")
            # wait_for_function evaluates a string, which the page's CSP blocks, so the waits
            # go through locators.
            await wait_until_live(page)
            await wait_for_count(page, "rowCount", 400)
            # The summary is redrawn at most four times a second.
            await expect(page.locator("#summary-count")).to_have_text("400")
            if scheme == "dark":
                await page.locator(f"{DATA_ROWS}.row-failure").first.click()
                traceback = page.locator("#details .details-traceback")
                await expect(traceback).to_be_visible()
                # Show the error section, the part of the panel operators read first.
                await page.locator("#details .details-section", has_text="Error").evaluate(
                    "section => section.scrollIntoView({ block: 'start' })"
                )
            path = output_dir / f"viewer-{scheme}.png"
            await page.screenshot(path=str(path))
            written.append(path)
            await page.context.close()
    finally:
        await runner.cleanup()
        await simulator.stop()
    return written


async def _write_screenshots(output_dir: Path) -> list[Path]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM_PATH), args=CHROMIUM_ARGS
        )
        try:
            return await take_screenshots(browser, output_dir)
        finally:
            await browser.close()


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs")
    target.mkdir(parents=True, exist_ok=True)
    for written_path in asyncio.run(_write_screenshots(target)):
        print(written_path)
