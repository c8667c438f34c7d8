"""The one poller of a process: asks LiteLLM for new rows and publishes them to the broker.

How it finds new rows, whatever the number of viewers:

1. Every ``poll_interval``, from the start of one poll to the start of the next, it reads the
   rows whose ``startTime`` lies in the last ``poll_overlap`` seconds, because LiteLLM writes
   spend logs in batches and a long request is recorded after shorter, later ones. Rows already
   seen (by request id) are left out.
2. Before reading the window it asks for one row only, to learn LiteLLM's count for the window.
   When the count equals the rows it already knows there (unreadable rows included), the poll
   ends there, so a quiet proxy costs one tiny request per interval. Otherwise it reads the
   window by end time, newest first, until it has found as many new rows as the count reports. A
   row becomes visible when its request ends, so the new rows come first, and the first page
   contains about as many rows as are missing: a busy window is not read whole.
3. When LiteLLM fails, it backs off exponentially with jitter (at least the ``Retry-After`` of a
   429, at most ``max_backoff``), tells every viewer once, and on recovery reads back to its last
   successful poll so no row recorded during the outage is lost.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Mapping
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from typing import Any

from aria_stream.broker import Broker, TailRow, UpstreamStatus
from aria_stream.errors import UpstreamError
from aria_stream.events import make_cursor
from aria_stream.gcpace import CollectionPacer
from aria_stream.jsonrows import MalformedRow
from aria_stream.metrics import Metrics
from aria_stream.models import parse_utc, project_lite
from aria_stream.query import SpendQuery
from aria_stream.settings import Settings
from aria_stream.upstream import PageEnd, RowBatch

logger = logging.getLogger(__name__)

# Far enough ahead to include rows stamped by a LiteLLM host whose clock runs ahead of ours.
FUTURE_MARGIN = timedelta(days=1)
# Request ids kept for de-duplication, at most; the oldest go first.
SEEN_MAX = 500_000
# Rows requested beyond the missing ones, for rows recorded between the count and the read.
PAGE_SLACK = 10


class Poller:
    """Polls one source for new rows; ``run`` loops until cancelled."""

    def __init__(self, source: Any, broker: Broker, settings: Settings, metrics: Metrics) -> None:
        self.source = source
        self.broker = broker
        self.settings = settings
        self.metrics = metrics
        # Request id -> start time (seconds since the epoch) of every row published.
        self.seen: dict[str, float] = {}
        # Rows in the window that cannot be published (no request id, no start time, invalid
        # JSON), by a key of their content -> start time or first sight. They still count in
        # LiteLLM's total, so they count as known; each is reported once.
        self.unreadable: dict[str, float] = {}
        self.top: str | None = None
        self.failures = 0
        self.last_ok_start: datetime | None = None
        self.last_ok_at: float | None = None
        self.last_error: UpstreamError | None = None
        # Polls started, and polls that ended without an upstream error.
        self.polls = 0
        self.ok_polls = 0
        self._polling_since: datetime | None = None
        # Unreadable rows met for the first time in the current poll.
        self._skipped = 0
        self._polled: asyncio.Future[None] | None = None
        self._first_poll = True
        self._rng = random.Random()
        self.pacer = CollectionPacer()

    def restart(self) -> None:
        """Forget the last poll and the last failure: the next poll is a baseline again.

        Only called while no viewer is subscribed, so no viewer misses the status change.
        """
        self._first_poll = True
        self.last_ok_start = None
        self.failures = 0
        self.last_error = None
        self.broker.status = UpstreamStatus(ok=True)

    async def run(self) -> None:
        """Poll until cancelled."""
        loop = asyncio.get_running_loop()
        with self.pacer:
            while True:
                started = loop.time()
                try:
                    delay = await self.poll_once()
                except Exception as error:
                    # A bug must not end the live tail of every viewer: log it and poll again.
                    logger.exception("Poll failed unexpectedly")
                    delay = self._backoff(None)
                    self.last_error = UpstreamError(f"the poll failed unexpectedly: {error!r}")
                # Polls start every poll_interval, however long each takes. A backoff counts
                # from the failure, so a Retry-After is waited in full.
                next_poll = (loop.time() if self.failures else started) + delay
                # The writers of the batch just published run first; a full garbage collection
                # then takes its pause from the wait for the next poll.
                await asyncio.sleep(0)
                self.pacer.collect_if_due()
                await asyncio.sleep(max(0.0, next_poll - loop.time()))

    async def poll_once(self) -> float:
        """Poll once and return the seconds to wait before the next poll."""
        started = datetime.now(UTC)
        since = self.next_since(started)
        self._polling_since = since
        self.polls += 1
        self._skipped = 0
        found: list[TailRow] = []

        try:
            await self._fetch_new(since, started + FUTURE_MARGIN, found)
        except UpstreamError as error:
            self.metrics.polls.labels("error").inc()
            return self._on_failure(error)
        finally:
            # Rows read before a failure are already marked as seen, so they go out now.
            self._publish(found, baseline=self._first_poll)
            if self._skipped:
                self.broker.publish_skipped(self._skipped)
            self._polling_since = None
            self._notify_polled()

        self.metrics.polls.labels("ok").inc()
        self.ok_polls += 1
        if self.failures:
            logger.info("LiteLLM answers again after %d failed polls", self.failures)
            self.failures = 0
            self.last_error = None
            self.broker.publish_status(UpstreamStatus(ok=True))
        self.last_ok_start = started
        self.last_ok_at = time.monotonic()
        self._forget_before(since)
        self._first_poll = False
        newest = max(self.seen.values(), default=None)
        if newest is not None:
            self.metrics.poll_lag.set(max(0.0, time.time() - newest))
        return float(self.settings.poll_interval)

    def next_since(self, now: datetime) -> datetime:
        """Return the start of the window a poll beginning at ``now`` reads."""
        since = now - timedelta(seconds=self.settings.poll_overlap)
        if self.last_ok_start is not None:
            since = min(since, self.last_ok_start - timedelta(seconds=self.settings.poll_overlap))
        return since.replace(microsecond=0)

    def window_floor(self) -> float:
        """Return the oldest start time (seconds since the epoch) a poll may still read.

        Windows only move forward, so a row that started before this is never published again.
        """
        since = self.next_since(datetime.now(UTC))
        if self._polling_since is not None:
            since = min(since, self._polling_since)
        return since.timestamp()

    def covers(self, rows: Mapping[str, float]) -> bool:
        """Check that the poller published every one of ``rows`` that it may still publish.

        ``rows`` maps request ids to start times (seconds since the epoch).

        Until the first successful poll after a start, the baseline batch is still to come.
        """
        if self._first_poll:
            return False
        floor = self.window_floor()
        return all(request_id in self.seen or start < floor for request_id, start in rows.items())

    async def wait_polled(self) -> None:
        """Wait until the current or next poll has ended and published what it found."""
        if self._polled is None or self._polled.done():
            self._polled = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._polled)

    def _notify_polled(self) -> None:
        if self._polled is not None and not self._polled.done():
            self._polled.set_result(None)

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
                limit = since.timestamp()
                known = sum(1 for stamp in self.seen.values() if stamp >= limit)
                known += sum(1 for stamp in self.unreadable.values() if stamp >= limit)
                if counted <= known:
                    return
                missing = counted - known
        found = 0
        if missing is None:
            pages = self.source.iter_pages(query, page_size=self.settings.page_size)
        else:
            # Rows become visible when their request ends, so sorted by end time the missing
            # rows come first. The first page contains them and a few more that may have arrived
            # since the count. The rest of the window is read only for rows recorded late, or
            # from a proxy that sorts by start time only, in pages that grow.
            first = min(self.settings.page_size, missing + PAGE_SLACK)
            pages = self.source.iter_pages(query, first_page_size=first, sort_by="endTime")
        async with aclosing(pages) as events:
            async for event in events:
                if not isinstance(event, RowBatch):
                    continue
                for raw in event.rows:
                    row = self._new_row(raw, since)
                    if row is not None:
                        rows.append(row)
                        found += 1
                for malformed in event.malformed:
                    found += self._note_malformed(malformed)
                if missing is not None and found >= missing:
                    break

    async def _count(self, query: SpendQuery) -> int | None:
        """Return LiteLLM's row count for the window, or None when it gives no exact count.

        NOTE: from LiteLLM 1.93 the count stops at 10,000 rows. A window holding more (a busy
        proxy, or the backlog after a long outage) is then read whole at every poll.
        """
        pages = self.source.iter_pages(query, page_size=1)
        async with aclosing(pages) as events:
            async for event in events:
                if isinstance(event, PageEnd):
                    if event.total is None or event.total_is_capped:
                        return None
                    return event.total
        return None

    def _new_row(self, raw: dict[str, Any], since: datetime) -> TailRow | None:
        try:
            lite = project_lite(raw)
        except ValueError as error:
            self._note_unreadable(raw, error)
            return None
        if lite["start_time"] < since:
            # Legacy /spend/logs ignores the window and returns every row. Rows older than the
            # window are never published, so a viewer's backfill rows that old cannot come again.
            return None
        request_id = lite["request_id"]
        if request_id in self.seen:
            return None
        self.seen[request_id] = lite["start_time"].timestamp()
        if len(self.seen) > SEEN_MAX:
            del self.seen[next(iter(self.seen))]
        cursor = make_cursor(lite["start_time"], request_id)
        return TailRow.from_lite(cursor, lite, raw, full_max_bytes=self.settings.max_event_bytes)

    def _note_unreadable(self, raw: dict[str, Any], error: ValueError) -> None:
        request_id = raw.get("request_id")
        key = f"id:{request_id}" if isinstance(request_id, str) and request_id else None
        if key is None:
            key = "row:" + hashlib.sha256(repr(sorted(raw.items())).encode()).hexdigest()
        if key in self.unreadable:
            return
        start = parse_utc(raw.get("startTime"))
        self.unreadable[key] = start.timestamp() if start is not None else time.time()
        self._skipped += 1
        self.metrics.rows_skipped.inc()
        logger.warning("Poll skipped a row: %s", error)

    def _note_malformed(self, malformed: MalformedRow) -> int:
        """Count an undecodable row once; return 1 when it was not known before."""
        digest = hashlib.sha256(f"{malformed.reason}\0{malformed.excerpt}".encode()).hexdigest()
        key = f"malformed:{digest}"
        if key in self.unreadable:
            return 0
        self.unreadable[key] = time.time()
        self._skipped += 1
        self.metrics.rows_skipped.inc()
        logger.warning("Poll skipped a malformed row (%s): %s", malformed.reason, malformed.excerpt)
        return 1

    def _forget_before(self, since: datetime) -> None:
        limit = since.timestamp()
        for known in (self.seen, self.unreadable):
            stale = [key for key, stamp in known.items() if stamp < limit]
            for key in stale:
                del known[key]

    def _backoff(self, retry_after: float | None) -> float:
        self.failures += 1
        delay = min(self.settings.max_backoff, self.settings.poll_interval * 2.0**self.failures)
        delay *= self._rng.uniform(0.8, 1.2)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, self.settings.max_backoff)

    def _on_failure(self, error: UpstreamError) -> float:
        delay = self._backoff(error.retry_after)
        changed = self.last_error is None or (
            (self.last_error.kind, self.last_error.status) != (error.kind, error.status)
        )
        self.last_error = error
        if changed:
            event = error.to_event(retry=True, retry_in=round(delay, 1))
            self.broker.publish_status(UpstreamStatus(ok=False, event=event))
        logger.warning("Poll failed (%s); next try in %.1f s", error.kind, delay)
        return delay
