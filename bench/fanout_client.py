"""Many SSE subscribers in one process, recording when each row reached each of them.

Each subscriber is a bare asyncio protocol over one loopback connection: ``data_received``
stores the arrival time (``time.time()``) with the bytes and does nothing else, so the time
stamp is taken before any parsing. A task scans the stored bytes for request ids a moment later.
At the end the process reads from the simulator when each row became visible and writes
latency statistics to a JSON file.

Run as ``python -m bench.fanout_client --url URL --simulator URL --subscribers N --out FILE``.
It prints ``ready`` once every subscriber is live, then reads one line from standard input: the
Unix time from which rows count. It then scans what is left and writes its result.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import resource
import sys
import time
from array import array
from collections import defaultdict
from typing import Any
from urllib.parse import urlsplit

import orjson

from bench.simctl import visible_since
from bench.stats import percentile

_REQUEST_ID = re.compile(rb'"request_id":"([^"\\]*)"')
_DONE = b"event: done\n"
_LAGGED = b"event: lagged\n"
# Long enough to hold any partial ``"request_id":"..."`` left at the end of a chunk.
_CARRY_BYTES = 512
SCAN_SECONDS = 0.2
# Subscribers scanned between two returns to the event loop.
SCAN_SLICE = 10
CONNECT_BATCH = 50


class Subscriber(asyncio.Protocol):
    """One SSE connection that only stores what arrives, stamped with the arrival time."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.chunks: list[tuple[float, bytes]] = []
        self.carry = b""
        self.live = False
        self.lagged = 0
        self.closed = False
        self.received = 0
        self.status: bytes | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.chunks.append((time.time(), data))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True


class Recorder:
    """Arrival times of every request id at every subscriber."""

    def __init__(self) -> None:
        self.arrivals: dict[str, array[float]] = defaultdict(lambda: array("d"))

    def scan(self, subscriber: Subscriber) -> None:
        chunks, subscriber.chunks = subscriber.chunks, []
        for arrived, data in chunks:
            subscriber.received += len(data)
            text = subscriber.carry + data
            carried = len(subscriber.carry)
            last_end = 0
            for match in _REQUEST_ID.finditer(text):
                # A match that ended inside the carried bytes was counted with an earlier chunk.
                if match.end() > carried:
                    self.arrivals[match.group(1).decode()].append(arrived)
                last_end = match.end()
            if subscriber.status is None and text.startswith(b"HTTP/1.1 "):
                subscriber.status = text[9:12]
            if not subscriber.live and _DONE in text:
                subscriber.live = True
            subscriber.lagged += text.count(_LAGGED)
            subscriber.carry = text[max(last_end, len(text) - _CARRY_BYTES) :]


async def scan_all(recorder: Recorder, subscribers: list[Subscriber]) -> None:
    """Scan every subscriber, yielding to the event loop often.

    Data that arrives during a scan is stamped only when the loop runs its callback, so a long
    scan would add its own duration to the measured latency.
    """
    for index, subscriber in enumerate(subscribers):
        recorder.scan(subscriber)
        if index % SCAN_SLICE == SCAN_SLICE - 1:
            await asyncio.sleep(0)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    _raise_open_files_limit(args.subscribers + 256)
    parts = urlsplit(args.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    request = (
        f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    recorder = Recorder()
    subscribers: list[Subscriber] = []
    for start in range(0, args.subscribers, CONNECT_BATCH):
        batch = [Subscriber(request) for _ in range(min(CONNECT_BATCH, args.subscribers - start))]
        await asyncio.gather(*(loop.create_connection(lambda s=s: s, host, port) for s in batch))
        subscribers += batch
        await asyncio.sleep(0.01)

    stop = asyncio.Event()
    since_line: list[str] = []

    async def wait_for_since() -> None:
        since_line.append(await loop.run_in_executor(None, sys.stdin.readline))
        stop.set()

    reader = asyncio.create_task(wait_for_since())
    ready_printed = False
    started = time.time()
    while not stop.is_set():
        await scan_all(recorder, subscribers)
        # A subscriber the server refused or closed will never go live; it is counted instead.
        if not ready_printed and all(s.live or s.closed for s in subscribers):
            print("ready", flush=True)
            ready_printed = True
        if not ready_printed and time.time() - started > args.connect_timeout:
            live = sum(subscriber.live for subscriber in subscribers)
            raise RuntimeError(f"only {live} of {len(subscribers)} subscribers went live")
        try:
            await asyncio.wait_for(stop.wait(), SCAN_SECONDS)
        except TimeoutError:
            pass
    await reader
    await scan_all(recorder, subscribers)
    since = float(since_line[0].strip() or 0)
    return await _summarize(args, since, recorder, subscribers)


async def _summarize(
    args: argparse.Namespace, since: float, recorder: Recorder, subscribers: list[Subscriber]
) -> dict[str, Any]:
    visible = await visible_since(args.simulator, since)

    latencies: list[float] = []
    window_latencies: list[list[float]] = [[] for _ in range(args.windows)]
    span = max(1e-9, max(visible.values(), default=since) - since)
    delivered = 0
    for request_id, visible_at in visible.items():
        times = recorder.arrivals.get(request_id)
        if not times:
            continue
        delivered += len(times)
        window = min(args.windows - 1, int((visible_at - since) / span * args.windows))
        for arrived in times:
            latency = arrived - visible_at
            latencies.append(latency)
            window_latencies[window].append(latency)
    latencies.sort()

    # Rows made visible together form one batch. Its first arrival measures the way to the
    # first subscriber, which is the wait for the poll and the poll itself. The spread between
    # the first and the last subscriber measures the fan-out.
    batches: dict[float, list[float]] = defaultdict(list)
    for request_id, visible_at in visible.items():
        batches[visible_at].extend(recorder.arrivals.get(request_id, ()))
    first = sorted(min(times) - moment for moment, times in batches.items() if times)
    spread = sorted(max(times) - min(times) for times in batches.values() if times)
    return {
        "batches": len(batches),
        "first_arrival_p50_s": percentile(first, 0.50),
        "first_arrival_p99_s": percentile(first, 0.99),
        "fanout_spread_p50_s": percentile(spread, 0.50),
        "fanout_spread_p99_s": percentile(spread, 0.99),
        "subscribers": len(subscribers),
        "rows_visible": len(visible),
        "deliveries": delivered,
        "deliveries_expected": len(visible) * len(subscribers),
        "subscribers_live": sum(subscriber.live for subscriber in subscribers),
        "subscribers_closed": sum(subscriber.closed for subscriber in subscribers),
        "statuses": _count_statuses(subscribers),
        "lagged_events": sum(subscriber.lagged for subscriber in subscribers),
        "bytes_received": sum(subscriber.received for subscriber in subscribers),
        "latency_p50_s": percentile(latencies, 0.50),
        "latency_p90_s": percentile(latencies, 0.90),
        "latency_p99_s": percentile(latencies, 0.99),
        "latency_max_s": latencies[-1] if latencies else None,
        "window_p99_s": [percentile(sorted(values), 0.99) for values in window_latencies],
    }


def _count_statuses(subscribers: list[Subscriber]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for subscriber in subscribers:
        counts[(subscriber.status or b"none").decode(errors="replace")] += 1
    return dict(counts)


def _raise_open_files_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


def main() -> None:
    parser = argparse.ArgumentParser(description="SSE fan-out client of the benchmarks.")
    parser.add_argument("--url", required=True, help="Stream URL of aria_stream.")
    parser.add_argument("--simulator", required=True, help="Base URL of the simulator.")
    parser.add_argument("--subscribers", type=int, required=True, help="Connections to open.")
    parser.add_argument("--out", required=True, help="File the JSON result is written to.")
    parser.add_argument("--windows", type=int, default=1, help="Windows of the p99 spread.")
    parser.add_argument(
        "--connect-timeout", type=float, default=120.0, help="Seconds to wait for all to go live."
    )
    args = parser.parse_args()
    result = asyncio.run(run(args))
    with open(args.out, "wb") as out:
        out.write(orjson.dumps(result))
    sys.exit(0)


if __name__ == "__main__":
    main()
