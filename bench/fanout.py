"""Scenario: many SSE subscribers on the live tail while the simulator produces rows.

The subscribers live in a client process of their own (``bench.fanout_client``). The simulator
starts empty, so the subscribers' backfills are quick. Once all are live, this process makes
the simulator produce rows in batches for the measured period. The simulator records when each
row became visible, and the client when it arrived at each subscriber; both read
``time.time()`` on the same machine. The simulator's request log gives the polls.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import orjson

from aria_stream.settings import Settings
from bench.config import FanoutConfig
from bench.procs import REPO_ROOT, ProcessGroup, RssSampler
from bench.simctl import add_rows, requests_since

READY_TIMEOUT = 180.0


async def produce(simulator_url: str, config: FanoutConfig) -> None:
    """Make rows visible in batches at the configured rate for the configured time."""
    batch = max(1, round(config.rows_per_second * config.flush_interval))
    batches = max(1, round(config.seconds / config.flush_interval))
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with httpx.AsyncClient(base_url=simulator_url) as client:
        for index in range(batches):
            await asyncio.sleep(
                max(0.0, started + (index + 1) * config.flush_interval - loop.time())
            )
            await add_rows(client, batch)


def polls_per_interval(starts: list[float], interval: float) -> float | None:
    """Return the polls per ``interval`` from the first start to the last, or None below two."""
    if len(starts) < 2:
        return None
    starts = sorted(starts)
    return (len(starts) - 1) / ((starts[-1] - starts[0]) / interval)


def shortest_gap(starts: list[float]) -> float | None:
    """Return the shortest time between two consecutive ``starts``, or None below two."""
    starts = sorted(starts)
    return min((later - earlier for earlier, later in pairwise(starts)), default=None)


async def run(config: FanoutConfig) -> dict[str, Any]:
    """Run the scenario and return its configuration, results and targets."""
    out_path = Path(tempfile.mkdtemp(prefix="aria-fanout-")) / "result.json"
    async with ProcessGroup() as group:
        simulator = await group.simulator(rows=0)
        # Every subscriber connects from 127.0.0.1, so the per-client stream limit is raised.
        limits = {
            name: config.subscribers + 100
            for name in ("max_streams", "max_streams_per_client")
            if name in Settings.model_fields
        }
        aria = await group.aria(simulator, poll_interval=config.poll_interval, **limits)
        rss_before_kb = aria.rss_kb()
        client = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.fanout_client",
            "--url",
            f"{aria.url}/api/spend/stream?limit=1",
            "--simulator",
            simulator.url,
            "--subscribers",
            str(config.subscribers),
            "--windows",
            str(config.windows),
            "--out",
            str(out_path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=REPO_ROOT,
        )
        assert client.stdin is not None and client.stdout is not None
        try:
            line = await asyncio.wait_for(client.stdout.readline(), READY_TIMEOUT)
            if line.strip() != b"ready":
                raise RuntimeError(f"fan-out client failed before going live: {line!r}")
            await asyncio.sleep(config.settle_seconds)
            rss_live_kb = aria.rss_kb()
            sampler = RssSampler(aria.pid)
            sampler.start()
            since = time.time()
            mark = time.monotonic()
            await produce(simulator.url, config)
            await asyncio.sleep(config.drain_seconds)
            elapsed = time.monotonic() - mark
            await sampler.stop()
            client.stdin.write(f"{since!r}\n".encode())
            await client.stdin.drain()
            await asyncio.wait_for(client.wait(), READY_TIMEOUT)
        finally:
            if client.returncode is None:
                client.kill()
                await client.wait()
        if client.returncode != 0:
            raise RuntimeError(f"fan-out client exited with {client.returncode}")
        records = await requests_since(simulator.url, mark)
    result: dict[str, Any] = orjson.loads(out_path.read_bytes())
    # Requests after the measured period, while the client computed its result, are left out.
    end = mark + elapsed
    records = [record for record in records if record["started"] <= end]
    probes = [record["started"] for record in records if record["query"].get("page_size") == "1"]
    result.update(
        {
            "measured_seconds": elapsed,
            "polls": len(probes),
            "polls_per_interval": polls_per_interval(probes, config.poll_interval),
            "shortest_poll_gap_s": shortest_gap(probes),
            "upstream_requests": len(records),
            "upstream_bytes": sum(record["bytes_sent"] for record in records),
            "server_rss_before_mb": rss_before_kb / 1024,
            "server_rss_live_mb": rss_live_kb / 1024,
            "server_peak_rss_mb": sampler.peak_mb,
            "rss_per_subscriber_kb": (rss_live_kb - rss_before_kb) / config.subscribers,
        }
    )
    p99 = result["latency_p99_s"]
    targets = [
        {
            "name": "p99 delivery latency, row visible upstream to subscriber",
            "target": "< 250 ms",
            "value": p99,
            "holds": p99 is not None and p99 < 0.25,
        },
        {
            # Polls are counted by the time their count request reached the simulator, from the
            # first poll of the measured period to its last.
            "name": f"upstream polls per poll interval, {config.subscribers} subscribers",
            "target": "1 at most",
            "value": result["polls_per_interval"],
            "holds": 0 < (result["polls_per_interval"] or 0) <= 1.0,
        },
    ]
    complete = (
        result["subscribers_live"] == config.subscribers
        and result["deliveries"] == result["deliveries_expected"] > 0
    )
    return {"config": vars(config), "result": result, "targets": targets, "complete": complete}
