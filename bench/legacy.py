"""Scenario: the huge unpaged legacy ``/spend/logs`` dump, and the memory each system needs.

The simulator emulates a proxy that only has legacy ``/spend/logs``, which returns every row
with its stored prompt and response in one array. aria_stream streams it in lite mode; the
baseline proxy holds the whole body and its client parses the whole body. Each client runs in a
process of its own, so its memory is measured apart from the servers'.

Two aria_stream processes are measured. ``aria`` runs with the default settings, so its live
tail poller starts with the stream and reads the legacy dump on every poll, as it would for a
viewer. ``aria_stream_only`` has a poll interval of an hour, so after its first poll (during
the warm-up) only the stream itself runs while it is measured.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson

from bench.config import LegacyConfig
from bench.procs import REPO_ROOT, ProcessGroup, RssSampler, ServerProcess
from bench.simctl import wait_idle
from bench.stats import ratio, summarize


async def run_client(kind: str, url: str) -> dict[str, Any]:
    """Run ``bench.clients`` in a process of its own and return the result it prints."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.clients",
        kind,
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
    )
    stdout, stderr = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{kind} client failed: {stderr.decode(errors='replace')[-2000:]}")
    result: dict[str, Any] = orjson.loads(stdout.splitlines()[-1])
    return result


async def measure(
    kind: str, url: str, server: ServerProcess, simulator: ServerProcess
) -> dict[str, Any]:
    await wait_idle(simulator.url)
    sampler = RssSampler(server.pid)
    sampler.start()
    result = await run_client(kind, url)
    await sampler.stop()
    result["server_start_rss_mb"] = sampler.start_kb / 1024
    result["server_peak_rss_mb"] = sampler.peak_mb
    result["server_rss_growth_mb"] = sampler.growth_mb
    return result


async def run(config: LegacyConfig) -> dict[str, Any]:
    """Run the scenario and return its configuration, repetitions, summary and targets."""
    async with ProcessGroup() as group:
        simulator = await group.simulator(
            rows=config.rows, variant="legacy", prompt_bytes=config.prompt_bytes
        )
        # The poller stops as soon as the stream closes, so it runs only while measured.
        aria = await group.aria(simulator, poller_linger=0)
        quiet = await group.aria(simulator, poll_interval=3600, poller_linger=3600)
        baseline = await group.baseline(simulator)
        servers = {"baseline": baseline, "aria": aria, "aria_stream_only": quiet}
        urls = {
            "baseline": f"{baseline.url}/proxy/spend/logs",
            "aria": f"{aria.url}/api/spend/stream?limit={config.rows}",
            "aria_stream_only": f"{quiet.url}/api/spend/stream?limit={config.rows}",
        }
        # Warm-up: the first stream also makes the simulator render (and cache) every row, so
        # no system pays for that during a measurement.
        await run_client("stream", f"{aria.url}/api/spend/stream?limit=1")
        await run_client("stream", f"{quiet.url}/api/spend/stream?limit=1")
        await run_client("baseline", f"{urls['baseline']}?request_id=warm-up")

        reps: list[dict[str, Any]] = []
        for rep in range(config.reps):
            order = list(servers)
            order = order[rep % 3 :] + order[: rep % 3]
            measured: dict[str, Any] = {}
            for system in order:
                kind = "baseline" if system == "baseline" else "stream"
                measured[system] = await measure(kind, urls[system], servers[system], simulator)
            reps.append(measured)
    return {"config": vars(config), "reps": reps, **_summary(reps, config)}


def _summary(reps: list[dict[str, Any]], config: LegacyConfig) -> dict[str, Any]:
    def pick(system: str, key: str) -> list[Any]:
        return [rep[system][key] for rep in reps]

    keys = (
        "first_row_s",
        "last_row_s",
        "bytes",
        "server_start_rss_mb",
        "server_peak_rss_mb",
        "server_rss_growth_mb",
        "client_rss_growth_mb",
        "client_peak_rss_mb",
    )
    summary: dict[str, Any] = {
        system: {key: summarize(pick(system, key)) for key in keys}
        for system in ("baseline", "aria", "aria_stream_only")
    }
    summary["first_row_speedup"] = summarize(
        ratio(rep["baseline"]["first_row_s"], rep["aria"]["first_row_s"]) for rep in reps
    )
    summary["last_row_speedup"] = summarize(
        ratio(rep["baseline"]["last_row_s"], rep["aria"]["last_row_s"]) for rep in reps
    )
    summary["rows"] = {
        system: pick(system, "rows") for system in ("baseline", "aria", "aria_stream_only")
    }
    growth = summary["aria"]["server_rss_growth_mb"]["max"]
    stream_only = summary["aria_stream_only"]["server_rss_growth_mb"]["max"]
    targets = [
        {
            "name": "aria_stream RSS growth while streaming, default settings (worst rep.)",
            "target": "<= 30 MB",
            "value": growth,
            "holds": growth is not None and growth <= 30,
        },
        {
            "name": "the same with the live tail poller idle (diagnostic)",
            "target": "<= 30 MB",
            "value": stream_only,
            "holds": stream_only is not None and stream_only <= 30,
        },
    ]
    complete = all(
        rows == config.rows
        for system in ("aria", "aria_stream_only")
        for rows in summary["rows"][system]
    )
    return {"summary": summary, "targets": targets, "complete": complete}
