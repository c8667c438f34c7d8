"""One viewer's end of the live tail: a bounded queue of encoded events and the task writing it.

Choices:

1. One writer task owns the socket. The backfill waits for room in the queue, but live batches
   never wait: when the queue is full, this viewer's rows are dropped from then on until the
   queue has drained, and then a ``lagged`` event tells it how many were dropped and the
   position to fetch them from. The dropped rows are therefore the ones right after that
   position, and one slow viewer never delays the poller or the others.
2. A write that blocks longer than ``write_timeout`` aborts the connection: a viewer that does
   not read at all is disconnected.
3. While the backfill runs, live batches wait in ``pending``; ``go_live`` sends them without the
   rows the viewer read from LiteLLM itself (its ``Handover``), so the hand-over has no gap and
   no duplicate. Like the backfill, it waits for room in the queue, so a viewer that resumes
   after missing many batches gets all of them.
4. Upstream status reaches the viewer only after ``meta``, and as changes: one
   ``upstream_error`` per outage, whether the backfill or the poller met it, then one
   ``upstream_ok``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp_sse import EventSourceResponse

from aria_stream.broker import Handover, TailBatch, UpstreamStatus
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
        # Set once ``meta`` is queued; status events wait for it.
        self.started = False
        self.failing = False
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
        # Before ``meta`` the stream session reads the broker's status itself.
        if not self.started:
            return
        if status.ok:
            self.report_ok()
        elif status.event is not None:
            self.report_error(status.event)

    def on_skipped(self, rows: int) -> None:
        if self.started:
            data = sse_frame("skipped", encode_json({"rows": rows}))
            self.offer(Outgoing(data, "skipped"))

    def report_error(self, event: dict[str, Any]) -> None:
        """Send ``upstream_error`` unless this viewer already had one for the current outage."""
        if self.failing:
            return
        self.failing = True
        self.offer(Outgoing(sse_frame("upstream_error", encode_json(event)), "upstream_error"))

    def report_ok(self) -> None:
        """Send ``upstream_ok`` if this viewer had an ``upstream_error`` since the last one."""
        if not self.failing:
            return
        self.failing = False
        self.offer(Outgoing(sse_frame("upstream_ok", encode_json({"ok": True})), "upstream_ok"))

    def send_batch(self, batch: TailBatch) -> None:
        """Queue the events of a live batch for this viewer's filter, dropping them if full."""
        frames = batch.frames_for(self.filter_key, self.query.matches, self.full)
        for frame in frames:
            self.offer(Outgoing(frame.data, "entries", frame.rows, frame.position))

    async def go_live(
        self,
        batches: list[TailBatch],
        handover: Handover | None,
        *,
        skip: tuple[int, int] = (0, 0),
    ) -> None:
        """Send ``batches`` and the pending ones after them, then every batch as published.

        These batches wait for room in the queue like the backfill, however many there are.
        Batches published meanwhile join ``pending`` and are sent the same way. ``handover``
        leaves out the rows the viewer read from LiteLLM itself. The caller waits until the
        poller has published all of them, so later batches need no such care. ``skip`` is
        ``(seq, rows)``: the first ``rows`` matching rows of batch ``seq`` were sent before a
        reconnect.
        """
        last = -1
        waiting = list(batches)
        while True:
            if waiting:
                last = max(last, waiting[-1].seq)
            waiting += [batch for batch in self.pending if batch.seq > last]
            self.pending = []
            if not waiting:
                break
            for batch in waiting:
                rows = skip[1] if batch.seq == skip[0] else 0
                frames = batch.frames_for(
                    self.filter_key, self.query.matches, self.full, skip=rows, handover=handover
                )
                for frame in frames:
                    await self.put(Outgoing(frame.data, "entries", frame.rows, frame.position))
                last = max(last, batch.seq)
            waiting = []
        self.live = True

    # Queue.

    def offer(self, item: Outgoing) -> bool:
        """Queue an event without waiting; drop rows while the queue is full or draining.

        Rows stay dropped until the writer has emptied the queue and queued ``lagged``, so that
        the dropped rows are exactly those after ``lag_position``.

        NOTE: a batch is offered all at once, so one poll that finds more than ``queue_bytes``
        of rows for this viewer's filter makes it lag however fast it reads.
        """
        if self._closing:
            return False
        # An event larger than the whole queue still goes into an empty one.
        full = bool(self._queue) and self._queued + len(item.data) > self.queue_bytes
        if item.rows and (self.dropped or full):
            if not self.dropped:
                self.lag_position = self.last_position
            self.dropped += item.rows
            self.metrics.rows_dropped.inc(item.rows)
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

    def close(self, final: Outgoing | None = None, *, discard: bool = False) -> None:
        """Stop accepting events; the writer sends what is queued, then ``final``, and returns.

        ``discard`` drops the queued events first, as at shutdown: the viewer's last event id
        then lies before them, so a reconnect gets them again.
        """
        if discard and not self._closing:
            self._queue.clear()
            self._queued = 0
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
                "[%s] viewer read nothing for %g s; disconnecting it",
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
