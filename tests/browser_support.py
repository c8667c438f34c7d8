"""Helpers for the browser tests: Chromium launch options and a page that records what went wrong.

Run as a script to write the viewer screenshots in docs/::

    .venv/bin/python -m tests.browser_support [OUTPUT_DIR]
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from playwright.async_api import Browser, ConsoleMessage, Dialog, Page, async_playwright, expect

from aria_stream.app import create_app
from aria_stream.settings import Settings
from aria_stream.simulator import Simulator, SimulatorConfig

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

# Runs before the page's own scripts in every document. Playwright injects it over CDP, so the
# page's Content-Security-Policy does not block it.
RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (event) => {
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


def chromium_missing_reason() -> str | None:
    """Return why the browser tests cannot run here, or None when they can."""
    if not (CHROMIUM_PATH.is_file() and os.access(CHROMIUM_PATH, os.X_OK)):
        return f"Chromium is not installed at {CHROMIUM_PATH}; install it with: {CHROMIUM_INSTALL}"
    return None


@dataclass
class WatchedPage:
    """A page and the problems it reported: console messages, uncaught errors and dialogs."""

    page: Page
    console_errors: list[str] = field(default_factory=list)
    console_warnings: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)
        elif message.type == "warning":
            self.console_warnings.append(message.text)

    async def _on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        await dialog.dismiss()

    async def csp_violations(self) -> list[str]:
        """Return the CSP violations of the current document as ``"<directive> <blocked URI>"``."""
        violations: list[str] = await self.page.evaluate("window.__cspViolations")
        return violations


async def open_watched_page(browser: Browser, **context_options: Any) -> WatchedPage:
    """Open a page in a new 1280x800 context and start recording its problems."""
    context = await browser.new_context(viewport=VIEWPORT, **context_options)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    await context.add_init_script(RECORD_CSP_VIOLATIONS)
    page = await context.new_page()
    watched = WatchedPage(page)
    page.on("console", watched._on_console)
    page.on("pageerror", lambda error: watched.page_errors.append(str(error)))
    page.on("dialog", watched._on_dialog)
    return watched


async def take_screenshots(output_dir: Path) -> list[Path]:
    """Start a simulator and aria_stream, and save the viewer in light and dark mode."""
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
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=str(CHROMIUM_PATH), args=CHROMIUM_ARGS
            )
            for scheme in ("light", "dark"):
                watched = await open_watched_page(
                    browser, color_scheme=scheme, timezone_id="UTC", locale="en-US"
                )
                page = watched.page
                await page.goto(f"http://127.0.0.1:{port}/?limit=200")
                # wait_for_function evaluates a string, which the page's CSP blocks, so the
                # waits go through locators.
                await expect(page.locator("#status")).to_have_attribute("data-state", "live")
                await expect(page.locator("#spend-rows tr")).to_have_count(200)
                path = output_dir / f"viewer-{scheme}.png"
                await page.screenshot(path=str(path))
                written.append(path)
                await page.context.close()
            await browser.close()
    finally:
        await runner.cleanup()
        await simulator.stop()
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs")
    target.mkdir(parents=True, exist_ok=True)
    for written_path in asyncio.run(take_screenshots(target)):
        print(written_path)
