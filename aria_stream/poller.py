"""The one poller of a process: asks LiteLLM for new rows and publishes them to the broker.

How it finds new rows, whatever the number of viewers:

1. Every ``poll_interval`` it reads the rows whose ``startTime`` lies in the last ``poll_overlap``
   seconds, because LiteLLM writes spend logs in batches and a long request is recorded after
   shorter, later ones. Rows already seen (by request id) are left out.
2. Before reading the window it asks for one row only, to learn LiteLLM's count for the window.
   When the count equals the rows it already knows there, the poll ends there, so a quiet proxy
   costs one tiny request per interval. Otherwise it reads newest first until it has found as
   many new rows as the count says.
3. When LiteLLM fails, it backs off exponentially with jitter (at least the ``Retry-After`` of a
   429, at most ``max_backoff``), tells every viewer once, and on recovery reads back to its last
   successful poll so no row recorded during the outage is lost.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from typing import Any

from aria_stream.broker import Broker, TailRow, UpstreamStatus
from aria_stream.errors import UpstreamError
from aria_stream.events import make_cursor
from aria_stream.metrics import Metrics
from aria_stream.models import project_lite
from aria_stream.query import SpendQuery
from aria_stream.settings import Settings
from aria_stream.upstream import PageEnd, RowBatch

logger = logging.getLogger(__name__)

# Far enough ahead to include rows stamped by a LiteLLM host whose clock runs ahead of ours.
FUTURE_MARGIN = timedelta(days=1)
# Request ids kept for de-duplication, at most; the oldest go first.
SEEN_MAX = 500_000


class Poller:
    """Polls one source for new rows; ``run`` loops until cancelled."""

    def __init__(self, source: Any, broker: Broker, settings: Settings, metrics: Metrics) -> None:
        self.source = source
        self.broker = broker
        self.settings = settings
        self.metrics = metrics
        self.seen: dict[str, float] = {}
        self.top: str | None = None
        self.failures = 0
        self.last_ok_start: datetime | None = None
        self.last_ok_at: float | None = None
        self.last_error: UpstreamError | None = None
        self.polls = 0
        self._first_poll = True
        self._rng = random.Random()

    def restart(self) -> None:
        """Forget the time of the last poll: the next poll is a baseline again."""
        self._first_poll = True
        self.last_ok_start = None

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            delay = await self.poll_once()
            await asyncio.sleep(delay)

    async def poll_once(self) -> float:
        """Poll once and return the seconds to wait before the next poll."""
        started = datetime.now(UTC)
        since = started - timedelta(seconds=self.settings.poll_overlap)
        if self.last_ok_start is not None:
            since = min(since, self.last_ok_start - timedelta(seconds=self.settings.poll_overlap))
        since = since.replace(microsecond=0)
        self.polls += 1
        found: list[TailRow] = []
        try:
            await self._fetch_new(since, started + FUTURE_MARGIN, found)
        except UpstreamError as error:
            self.metrics.polls.labels("error").inc()
            # Rows read before the failure are already marked as seen, so they go out now.
            self._publish(found, baseline=False)
            return self._on_failure(error)
        self.metrics.polls.labels("ok").inc()
        if self.failures:
            logger.info("LiteLLM answers again after %d failed polls", self.failures)
            self.failures = 0
            self.last_error = None
            self.broker.publish_status(UpstreamStatus(ok=True))
        self.last_ok_start = started
        self.last_ok_at = time.monotonic()
        self._forget_before(since)
        baseline, self._first_poll = self._first_poll, False
        self._publish(found, baseline=baseline)
        newest = max(self.seen.values(), default=None)
        if newest is not None:
            self.metrics.poll_lag.set(max(0.0, time.time() - newest))
        return float(self.settings.poll_interval)

    def _publish(self, rows: list[TailRow], *, baseline: bool) -> None:
        if not rows:
            return
        rows.sort(key=lambda row: row.cursor)
        if self.top is None or rows[-1].cursor > self.top:
            self.top = rows[-1].cursor
        self.broker.publish(rows, self.top, baseline=baseline)
        logger.info("Poll found %d new spend logs", len(rows))

    async def _fetch_new(self, since: datetime, until: datetime, rows: list[TailRow]) -> None:
        """Append the rows of the window that were not seen before to ``rows``."""
        query = SpendQuery(since=since, until=until)
        missing: int | None = None
        if self.source.filters_upstream and self.source.endpoint is not None:
            counted = await self._count(query)
            if counted is not None:
                known = sum(1 for stamp in self.seen.values() if stamp >= since.timestamp())
                if counted <= known:
                    return
                missing = counted - known
        pages = self.source.iter_pages(query, page_size=self.settings.page_size)
        async with aclosing(pages) as events:
            async for event in events:
                if not isinstance(event, RowBatch):
                    continue
                for raw in event.rows:
                    row = self._new_row(raw)
                    if row is not None:
                        rows.append(row)
                if event.malformed:
                    self.metrics.rows_skipped.inc(len(event.malformed))
                if missing is not None and len(rows) >= missing:
                    break

    async def _count(self, query: SpendQuery) -> int | None:
        """Return LiteLLM's row count for the window, or None when it gives no exact count."""
        pages = self.source.iter_pages(query, page_size=1)
        async with aclosing(pages) as events:
            async for event in events:
                if isinstance(event, PageEnd):
                    if event.total is None or event.total_is_capped:
                        return None
                    return event.total
        return None

    def _new_row(self, raw: dict[str, Any]) -> TailRow | None:
        try:
            lite = project_lite(raw)
        except ValueError as error:
            self.metrics.rows_skipped.inc()
            logger.warning("Poll skipped a row: %s", error)
            return None
        request_id = lite["request_id"]
        if request_id in self.seen:
            return None
        self.seen[request_id] = lite["start_time"].timestamp()
        if len(self.seen) > SEEN_MAX:
            del self.seen[next(iter(self.seen))]
        return TailRow.from_lite(make_cursor(lite["start_time"], request_id), lite, raw)

    def _forget_before(self, since: datetime) -> None:
        limit = since.timestamp()
        stale = [request_id for request_id, stamp in self.seen.items() if stamp < limit]
        for request_id in stale:
            del self.seen[request_id]

    def _on_failure(self, error: UpstreamError) -> float:
        self.failures += 1
        delay = min(self.settings.max_backoff, self.settings.poll_interval * 2.0**self.failures)
        delay *= self._rng.uniform(0.8, 1.2)
        if error.retry_after is not None:
            delay = max(delay, error.retry_after)
        delay = min(delay, self.settings.max_backoff)
        changed = self.last_error is None or (
            (self.last_error.kind, self.last_error.status) != (error.kind, error.status)
        )
        self.last_error = error
        if changed:
            event = error.to_event(retry=True, retry_in=round(delay, 1))
            self.broker.publish_status(UpstreamStatus(ok=False, event=event))
        logger.warning("Poll failed (%s); next try in %.1f s", error.kind, delay)
        return delay
