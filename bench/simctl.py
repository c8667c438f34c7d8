"""Calls to the simulator's control endpoints from the benchmark process."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import httpx

from aria_stream.simulator import DEFAULT_KEY
from aria_stream.simulator.server import LIST_PATHS

HEADERS = {"Authorization": f"Bearer {DEFAULT_KEY}"}


async def requests_since(simulator_url: str, since: float) -> list[dict[str, Any]]:
    """Return the simulator's spend-log list requests logged at or after monotonic ``since``."""
    async with httpx.AsyncClient(base_url=simulator_url, headers=HEADERS) as client:
        response = await client.get("/_simulator/requests", params={"since": repr(since)})
        response.raise_for_status()
    records: list[dict[str, Any]] = response.json()["requests"]
    return [record for record in records if record["path"] in LIST_PATHS]


async def visible_since(simulator_url: str, since: float) -> dict[str, float]:
    """Return ``request_id -> visible_at`` of rows made visible at or after Unix time ``since``."""
    async with httpx.AsyncClient(base_url=simulator_url, headers=HEADERS, timeout=30.0) as client:
        response = await client.get("/_simulator/visible", params={"since": repr(since)})
        response.raise_for_status()
    return {request_id: visible_at for request_id, visible_at in response.json()["rows"]}


async def add_rows(client: httpx.AsyncClient, count: int) -> None:
    """Make ``count`` new rows visible now; ``client`` has the simulator as its base URL."""
    response = await client.post("/_simulator/rows", json={"count": count}, headers=HEADERS)
    response.raise_for_status()


def is_live_tail_request(record: dict[str, Any], window_seconds: float) -> bool:
    """Tell a poller's request from a backfill's: the poller asks for a recent window only.

    A backfill without ``since`` asks for weeks of history, so a ``start_date`` within
    ``window_seconds`` (plus a minute of margin) of the newest possible row marks the poller.
    """
    start = record["query"].get("start_date")
    end = record["query"].get("end_date")
    if start is None or end is None:
        return False
    start_time = datetime.strptime(start, "%Y-%m-%d %H:%M:%S")
    end_time = datetime.strptime(end, "%Y-%m-%d %H:%M:%S")
    # The poller's window ends a day ahead, to catch clocks that run ahead of ours.
    return (end_time - start_time).total_seconds() <= window_seconds + 86_400 + 60


async def wait_idle(simulator_url: str, limit_seconds: float = 60.0) -> bool:
    """Wait until the simulator handles no request but this one; return False on timeout.

    A client that stops reading early leaves a handler writing the rest of a large body for a
    while, which would compete with the next measurement for the CPU.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_seconds
    async with httpx.AsyncClient(base_url=simulator_url, headers=HEADERS) as client:
        while loop.time() < deadline:
            response = await client.get("/_simulator/requests", params={"since": "1e300"})
            response.raise_for_status()
            if response.json()["handling"] <= 1:
                return True
            await asyncio.sleep(0.1)
    return False
