"""One viewer's end of the live tail: a bounded queue of encoded events and the task writing it.

Choices:

1. One writer task owns the socket. The backfill waits for room in the queue, but live batches
   never wait: when the queue is full their rows are dropped for this viewer only and a
   ``lagged`` event tells it how many and where to resume, so one slow viewer never delays the
   poller or the others.
2. A write that blocks longer than ``write_timeout`` aborts the connection: a viewer that does
   not read at all is disconnected.
3. While the backfill runs, live batches wait in ``pending``; afterwards rows the backfill already
   sent are left out, so the hand-over has no gap and no duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp_sse import EventSourceResponse

from aria_stream.broker import TailBatch, TailRow, UpstreamStatus
from aria_stream.events import encode_json
from aria_stream.framing import sse_frame
from aria_stream.metrics import Metrics
from aria_stream.query import SpendQuery

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """An encoded event waiting to be written."""

    data: bytes
    event: str
    rows: int = 0
    position: str | None = None


class SubscriberGone(Exception):
    """The viewer disconnected or stopped reading."""


class Subscriber:
    """A viewer connected to the live tail."""

    def __init__(
        self,
        sse: EventSourceResponse,
        *,
        query: SpendQuery,
        full: bool,
        queue_bytes: int,
        write_timeout: float,
        ping_interval: float,
        metrics: Metrics,
        request_id: str,
    ) -> None:
        self.sse = sse
        self.query = query
        self.full = full
        self.filter_key = (query, full)
        self.queue_bytes = queue_bytes
        self.write_timeout = write_timeout
        self.ping_interval = ping_interval
        self.metrics = metrics
        self.request_id = request_id
        self.live = False
        self.pending: list[TailBatch] = []
        self.exclude: Callable[[TailRow, TailBatch], bool] | None = None
        self.exclude_until: float = 0.0
        self.last_position: str | None = None
        self.dropped = 0
        self.lag_position: str | None = None
        self._queue: deque[Outgoing] = deque()
        self._queued = 0
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._closing = False

    # Listener side: called by the broker, never blocks.

    def on_batch(self, batch: TailBatch) -> None:
        if not self.live:
            self.pending.append(batch)
            return
        self.send_batch(batch)

    def on_status(self, status: UpstreamStatus) -> None:
        if status.ok:
            self.offer(Outgoing(sse_frame("upstream_ok", encode_json({"ok": True})), "upstream_ok"))
        elif status.event is not None:
            data = sse_frame("upstream_error", encode_json(status.event))
            self.offer(Outgoing(data, "upstream_error"))

    def send_batch(self, batch: TailBatch, *, skip: int = 0) -> None:
        """Queue the events of a live batch for this viewer's filter."""
        exclude = self.exclude
        if exclude is not None and time.monotonic() > self.exclude_until:
            self.exclude = exclude = None
        if exclude is not None and not any(exclude(row, batch) for row in batch.rows):
            exclude = None
        frames = batch.frames_for(
            self.filter_key, self.query.matches, self.full, skip=skip, exclude=exclude
        )
        for frame in frames:
            self.offer(Outgoing(frame.data, "entries", frame.rows, frame.position))

    def go_live(
        self,
        batches: list[TailBatch],
        exclude: Callable[[TailRow, TailBatch], bool] | None,
        exclude_for: float,
        *,
        skip_first: int = 0,
    ) -> None:
        """Send the given batches, then every batch as it is published."""
        self.exclude = exclude
        self.exclude_until = time.monotonic() + exclude_for
        self.live = True
        for index, batch in enumerate(batches):
            self.send_batch(batch, skip=skip_first if index == 0 else 0)
        self.pending = []

    # Queue.

    def offer(self, item: Outgoing) -> bool:
        """Queue an event unless the queue is full; count dropped rows for a ``lagged`` event."""
        if self._closing:
            return False
        if self._queued + len(item.data) > self.queue_bytes and self._queue:
            if item.rows:
                self.dropped += item.rows
                self.metrics.rows_dropped.inc(item.rows)
                if self.lag_position is None:
                    self.lag_position = self.last_position
                return False
        self._append(item)
        return True

    async def put(self, item: Outgoing) -> None:
        """Queue an event, waiting for room; used by the backfill, which must not lose rows."""
        while self._queue and self._queued + len(item.data) > self.queue_bytes:
            if self._closing:
                raise SubscriberGone
            self._room.clear()
            await self._room.wait()
        if self._closing:
            raise SubscriberGone
        self._append(item)

    def _append(self, item: Outgoing) -> None:
        self._queue.append(item)
        self._queued += len(item.data)
        if item.position is not None:
            self.last_position = item.position
        self._ready.set()

    def close(self, final: Outgoing | None = None) -> None:
        """Stop accepting events; the writer sends ``final`` (if any) and returns."""
        if final is not None and not self._closing:
            self._append(final)
        self._closing = True
        self._ready.set()
        self._room.set()

    # Writer.

    async def run_writer(self) -> None:
        """Write queued events until the viewer leaves or ``close`` is called."""
        while True:
            if not self._queue:
                if self._closing:
                    return
                if self.dropped:
                    self._append(self._lagged_event())
                    continue
                self._ready.clear()
                try:
                    async with asyncio.timeout(self.ping_interval):
                        await self._ready.wait()
                except TimeoutError:
                    self._append(self._ping_event())
                continue
            item = self._queue.popleft()
            self._queued -= len(item.data)
            self._room.set()
            await self._write(item)

    async def _write(self, item: Outgoing) -> None:
        try:
            async with asyncio.timeout(self.write_timeout):
                await self.sse.write(item.data)
        except TimeoutError as error:
            logger.info(
                "[%s] viewer read nothing for %.0f s; disconnecting it",
                self.request_id,
                self.write_timeout,
            )
            self._abort()
            raise SubscriberGone from error
        except (ConnectionResetError, RuntimeError) as error:
            raise SubscriberGone from error
        self.metrics.events_sent.labels(item.event).inc()
        self.metrics.bytes_sent.inc(len(item.data))

    def _abort(self) -> None:
        self._closing = True
        self._room.set()
        transport = self.sse._req.transport if self.sse._req is not None else None
        if transport is not None:
            transport.abort()

    def _lagged_event(self) -> Outgoing:
        data: dict[str, Any] = {"skipped": self.dropped, "cursor": self.lag_position}
        logger.info(
            "[%s] viewer lagged: %d rows dropped, resume from %s",
            self.request_id,
            self.dropped,
            self.lag_position,
        )
        self.dropped = 0
        self.lag_position = None
        return Outgoing(sse_frame("lagged", encode_json(data)), "lagged")

    def _ping_event(self) -> Outgoing:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return Outgoing(sse_frame("ping", encode_json({"time": now})), "ping")
