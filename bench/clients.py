"""The two clients a scenario compares, each timed from the moment its request is sent.

- ``read_baseline``: downloads the whole body, then parses it with the fastest JSON parser at
  hand (msgspec when installed, else orjson). The first row can be shown only then.
- ``read_stream``: reads aria_stream's SSE stream and counts rows as ``entries`` events arrive,
  until the ``done`` event ends the backfill.

Run as ``python -m bench.clients {baseline,stream} URL`` to measure in a process of its own; the
result, with the client's own peak RSS, is printed as one JSON line.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from bench.procs import read_status_kb

decode_whole: Callable[[bytes], Any]
try:
    # msgspec decodes a whole spend-log document about 10 % faster than orjson on this data.
    from msgspec.json import decode as decode_whole

    DECODER = "msgspec"
except ImportError:  # msgspec comes with the bench extra only
    decode_whole = orjson.loads
    DECODER = "orjson"

# Generous: the slowest case (the baseline on the huge legacy dump) needs tens of seconds on a
# busy 2-core machine.
CLIENT_TIMEOUT = 300.0


def _session() -> aiohttp.ClientSession:
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT)
    # No connection reuse, so each measurement pays the same connection setup.
    return aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(force_close=True))


async def read_baseline(url: str) -> dict[str, Any]:
    """Download and parse a whole spend-log response; return timings, bytes and row count."""
    async with _session() as session:
        started = time.perf_counter()
        async with session.get(url) as response:
            body = await response.read()
            status = response.status
        downloaded = time.perf_counter()
        document = decode_whole(body)
        parsed = time.perf_counter()
    rows = document["data"] if isinstance(document, dict) else document
    if status != 200 or not isinstance(rows, list):
        raise RuntimeError(f"baseline request {url} failed with {status}: {body[:200]!r}")
    return {
        "first_row_s": parsed - started,
        "last_row_s": parsed - started,
        "download_s": downloaded - started,
        "parse_s": parsed - downloaded,
        "bytes": len(body),
        "rows": len(rows),
        "decoder": DECODER,
    }


async def read_stream(url: str) -> dict[str, Any]:
    """Read an SSE stream until its ``done`` event; return timings, bytes and row count."""
    first_row: float | None = None
    last_row: float | None = None
    received = 0
    rows = 0
    events: dict[str, int] = {}
    buffer = b""
    async with _session() as session:
        started = time.perf_counter()
        async with session.get(url, headers={"Accept": "text/event-stream"}) as response:
            if response.status != 200:
                raise RuntimeError(f"stream {url} failed with {response.status}")
            async for chunk in response.content.iter_any():
                received += len(chunk)
                buffer += chunk
                *blocks, buffer = buffer.split(b"\n\n")
                done = False
                for block in blocks:
                    name, data = _parse_block(block)
                    events[name] = events.get(name, 0) + 1
                    if name == "entries":
                        rows += len(orjson.loads(data))
                        last_row = time.perf_counter()
                        if first_row is None:
                            first_row = last_row
                    elif name in ("done", "upstream_error"):
                        done = True
                if done:
                    break
        finished = time.perf_counter()
    if "upstream_error" in events:
        raise RuntimeError(f"stream {url} reported an upstream error: {events}")
    return {
        "first_row_s": None if first_row is None else first_row - started,
        "last_row_s": None if last_row is None else last_row - started,
        "done_s": finished - started,
        "bytes": received,
        "rows": rows,
        "events": events,
    }


def _parse_block(block: bytes) -> tuple[str, bytes]:
    """Return the event name and data of one SSE event block (one ``data:`` line at most)."""
    name = "message"
    data = b""
    for line in block.split(b"\n"):
        if line.startswith(b"event: "):
            name = line[7:].decode()
        elif line.startswith(b"data: "):
            data = line[6:]
    return name, data


def main() -> None:
    kind, url = sys.argv[1], sys.argv[2]
    reader = read_baseline if kind == "baseline" else read_stream
    start_kb = read_status_kb(os.getpid(), "VmRSS")
    result = asyncio.run(reader(url))
    peak_kb = read_status_kb(os.getpid(), "VmHWM")
    result["client_rss_growth_mb"] = (peak_kb - start_kb) / 1024
    result["client_peak_rss_mb"] = peak_kb / 1024
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
