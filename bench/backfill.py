"""Scenario: a backfill over a slow link, aria_stream's stream next to the baseline proxy.

Both read the same simulator process, limited to a bandwidth and answering with LiteLLM's
latency model (first byte of a page after a base latency plus a cost per row in the page). The
baseline asks for all rows in one page, as the earlier dashboard did; aria_stream pages as it is
configured to. Repetitions alternate which system goes first.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from aria_stream.query import litellm_date
from aria_stream.settings import Settings
from bench.clients import read_baseline, read_stream
from bench.config import BackfillConfig
from bench.procs import ProcessGroup, RssSampler, ServerProcess
from bench.simctl import is_live_tail_request, requests_since
from bench.stats import ratio, summarize

# aria_stream's default lookback; the baseline asks for the same window.
LOOKBACK = timedelta(hours=24 * 30)
# The simulator logs a request when its handler returns, a moment after the client has the body.
LOG_SETTLE_SECONDS = 0.3
# aria_stream runs with the default poll overlap, which tells its poller's requests apart.
POLL_OVERLAP: float = Settings.model_fields["poll_overlap"].default


def baseline_query(rows: int) -> str:
    """Return the query of the one request that fetches every row of the window."""
    until = datetime.now(UTC)
    params = {
        "start_date": litellm_date(until - LOOKBACK),
        "end_date": litellm_date(until),
        "page": "1",
        "page_size": str(rows),
    }
    return urlencode(params)


async def measure(
    system: str,
    url: str,
    server: ServerProcess,
    simulator: ServerProcess,
    poll_overlap: float,
) -> dict[str, Any]:
    """Run one client against ``url`` while sampling the server's RSS; add upstream bytes."""
    sampler = RssSampler(server.pid)
    sampler.start()
    mark = time.monotonic()
    reader = read_baseline if system == "baseline" else read_stream
    result = await reader(url)
    await asyncio.sleep(LOG_SETTLE_SECONDS)
    await sampler.stop()
    records = await requests_since(simulator.url, mark)
    tail = [record for record in records if is_live_tail_request(record, poll_overlap)]
    result["upstream_bytes"] = sum(record["bytes_sent"] for record in records if record not in tail)
    result["upstream_bytes_live_tail"] = sum(record["bytes_sent"] for record in tail)
    result["upstream_requests"] = len(records) - len(tail)
    result["server_peak_rss_mb"] = sampler.peak_mb
    result["server_rss_growth_mb"] = sampler.growth_mb
    return result


async def run(config: BackfillConfig) -> dict[str, Any]:
    """Run the scenario and return its configuration, repetitions, summary and targets."""
    async with ProcessGroup() as group:
        simulator = await group.simulator(
            rows=config.rows,
            bandwidth=config.bandwidth,
            latency_base=config.latency_base,
            latency_per_row=config.latency_per_row,
        )
        aria = await group.aria(simulator)
        baseline = await group.baseline(simulator)
        stream_url = f"{aria.url}/api/spend/stream?limit={config.rows}"
        # Warm both servers up (imports, first connection to the simulator) before measuring.
        await read_stream(f"{aria.url}/api/spend/stream?limit=1")
        await read_baseline(f"{baseline.url}/proxy/spend/logs/v2?{baseline_query(1)}")

        reps: list[dict[str, Any]] = []
        for rep in range(config.reps):
            order = ["baseline", "aria"] if rep % 2 == 0 else ["aria", "baseline"]
            pair: dict[str, Any] = {}
            for system in order:
                if system == "baseline":
                    url = f"{baseline.url}/proxy/spend/logs/v2?{baseline_query(config.rows)}"
                    pair[system] = await measure(system, url, baseline, simulator, POLL_OVERLAP)
                else:
                    pair[system] = await measure(system, stream_url, aria, simulator, POLL_OVERLAP)
            reps.append(pair)
    return {"config": vars(config), "reps": reps, **_summary(reps, config)}


def _summary(reps: list[dict[str, Any]], config: BackfillConfig) -> dict[str, Any]:
    def pick(system: str, key: str) -> list[Any]:
        return [rep[system][key] for rep in reps]

    first_row_ratio = [
        ratio(rep["baseline"]["first_row_s"], rep["aria"]["first_row_s"]) for rep in reps
    ]
    last_row_ratio = [
        ratio(rep["baseline"]["last_row_s"], rep["aria"]["last_row_s"]) for rep in reps
    ]
    bytes_share = [ratio(rep["aria"]["bytes"], rep["aria"]["upstream_bytes"]) for rep in reps]
    summary = {
        "baseline": {
            key: summarize(pick("baseline", key))
            for key in (
                "first_row_s",
                "last_row_s",
                "bytes",
                "upstream_bytes",
                "server_peak_rss_mb",
            )
        },
        "aria": {
            key: summarize(pick("aria", key))
            for key in (
                "first_row_s",
                "last_row_s",
                "bytes",
                "upstream_bytes",
                "upstream_bytes_live_tail",
                "upstream_requests",
                "server_peak_rss_mb",
            )
        },
        "first_row_speedup": summarize(first_row_ratio),
        "last_row_speedup": summarize(last_row_ratio),
        "bytes_share": summarize(bytes_share),
        "rows": {"baseline": pick("baseline", "rows"), "aria": pick("aria", "rows")},
    }
    speedup = summary["first_row_speedup"]["median"]
    share = summary["bytes_share"]["median"]
    targets = [
        {
            "name": "time to first row, baseline / aria_stream",
            "target": ">= 20x",
            "value": speedup,
            "holds": speedup is not None and speedup >= 20,
        },
        {
            "name": "bytes received in lite mode / bytes the upstream sent",
            "target": "<= 5 %",
            "value": share,
            "holds": share is not None and share <= 0.05,
        },
    ]
    complete = all(rows == config.rows for rows in summary["rows"]["aria"])
    return {"summary": summary, "targets": targets, "complete": complete}
