"""Third-party SSE clients read the stream over loopback HTTP: httpx-sse, and the ``eventsource``
npm package on Node.js, whose reconnect sends Last-Event-ID as a browser does.

The Node test needs ``node`` and npm's ``eventsource`` package. It installs the package into
``.cache/node-sse`` of the checkout with npm when it is missing, and skips when Node.js is
missing, unless the ``CI`` environment variable is set.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from httpx_sse import aconnect_sse

from aria_stream.simulator import Simulator
from tests.conftest import ServerFactory
from tests.tail_support import (
    FAST_TAIL,
    WAIT,
    add_rows,
    ago,
    all_live,
    oldest_first,
    request_ids,
    tail_of,
)

NODE_DIR = Path(__file__).resolve().parent.parent / ".cache" / "node-sse"
# The eventsource package version the test was written against; 4.x runs on Node.js 20 and up.
EVENTSOURCE = "eventsource@4.1.1"
NPM_TIMEOUT = 120.0

# Reads the stream with the eventsource package. It prints "done" at each done event and the
# number of rows after each entries event, then the request ids once it has ``expected`` rows.
NODE_SCRIPT = """
import { EventSource } from "eventsource";

const [url, expected] = [process.argv[2], Number(process.argv[3])];
const ids = [];
const source = new EventSource(url);
source.addEventListener("entries", (event) => {
  for (const row of JSON.parse(event.data)) ids.push(row.request_id);
  console.log(`rows ${ids.length}`);
  if (ids.length >= expected) {
    console.log(JSON.stringify(ids));
    source.close();
  }
});
source.addEventListener("done", () => console.log("done"));
"""


async def test_httpx_sse_reads_stream(simulator: Simulator, server_factory: ServerFactory):
    client = await server_factory(simulator, **FAST_TAIL, retry_ms=1500)
    url = str(client.server.make_url("/api/spend/stream"))
    events = []
    async with httpx.AsyncClient(timeout=httpx.Timeout(WAIT)) as http:
        async with aconnect_sse(http, "GET", url, params={"limit": "150"}) as source:
            async for event in source.aiter_sse():
                events.append(event)
                if event.event == "done":
                    await all_live(client, 1)
                    rows = add_rows(simulator, [ago(1.0), ago(1.1)])
                if event.event == "entries" and rows_seen(events) == 152:
                    break

    ids = [
        row["request_id"] for event in events if event.event == "entries" for row in event.json()
    ]
    names = [event.event for event in events]
    assert names[0] == "meta"
    assert events[0].retry == 1500
    assert ids == request_ids(simulator.visible_rows()[2:152]) + oldest_first(rows)
    assert all(event.id for event in events if event.event == "entries")


def rows_seen(events: list) -> int:
    return sum(len(event.json()) for event in events if event.event == "entries")


def node_or_skip() -> str:
    """Return the path of ``node``; skip the test without it, unless CI is set."""
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but Node.js is missing; install node (20 or later)")
        pytest.skip("Node.js is not installed")
    return node


def eventsource_dir() -> Path:
    """Return a folder whose node_modules contains the eventsource package, installing it."""
    if (NODE_DIR / "node_modules" / "eventsource" / "package.json").is_file():
        return NODE_DIR
    npm = shutil.which("npm")
    if npm is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but npm is missing, so eventsource cannot be installed")
        pytest.skip("npm is not installed")
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [npm, "install", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund", EVENTSOURCE],
        capture_output=True,
        text=True,
        timeout=NPM_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        message = f"npm install {EVENTSOURCE} failed: {result.stderr.strip()[-500:]}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return NODE_DIR


async def test_node_eventsource_resumes_without_duplicates(
    simulator: Simulator, server_factory: ServerFactory
):
    node = node_or_skip()
    folder = eventsource_dir()
    script = folder / "read_stream.mjs"
    script.write_text(NODE_SCRIPT)
    client = await server_factory(simulator, **FAST_TAIL, retry_ms=200)
    url = str(client.server.make_url("/api/spend/stream").with_query(limit="30"))
    process = await asyncio.create_subprocess_exec(
        node, str(script), url, "35", cwd=folder, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        lines = [await read_line(process.stdout, "done")]
        backfill = request_ids(simulator.visible_rows()[:30])
        await all_live(client, 1)
        before = add_rows(simulator, [ago(1.0), ago(1.1)])
        lines.append(await read_line(process.stdout, "rows 32"))

        # End the stream from the server's side; EventSource reconnects with Last-Event-ID.
        for subscriber in list(tail_of(client).subscribers):
            subscriber.close()
        during = add_rows(simulator, [ago(0.5), ago(0.6), ago(0.7)])
        lines.append(await read_line(process.stdout, "rows 35"))
        lines.append(await read_line(process.stdout, "["))
        async with asyncio.timeout(WAIT):
            await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    assert json.loads(lines[-1]) == backfill + oldest_first(before) + oldest_first(during)
    assert process.returncode == 0


async def read_line(stream: asyncio.StreamReader, start: str) -> str:
    """Read output lines until one starts with ``start``; return it."""
    async with asyncio.timeout(WAIT):
        while True:
            line = (await stream.readline()).decode()
            assert line, f"the Node.js script ended before printing {start!r}"
            if line.startswith(start):
                return line
