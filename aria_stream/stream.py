"""The SSE stream of ``GET /api/spend/stream``: a backfill, then the live tail, resumable.

Events: ``meta`` comes first (with the ``retry:`` hint), then ``reset`` when the viewer's event
id cannot be resumed. The backfill sends ``entries`` (each with an ``id:``) and ``progress``,
then ``done``, whose ``id:`` marks the end of the backfill. The live tail then sends ``entries``
from the shared poller and named ``ping`` heartbeats. ``upstream_error`` and ``upstream_ok``
follow LiteLLM's failures and recoveries, ``skipped`` reports rows the poller could not read,
``lagged`` goes to a viewer that reads too slowly and ``shutdown`` to every viewer when the
server stops.

How a reconnect resumes (the event id is a ``StreamPosition``):

1. An id from the backfill continues the backfill below its oldest row, then sends every row
   newer than its newest row, read again from LiteLLM (a catch-up).
2. An id from ``done`` or the live tail of this same process gets exactly the batches it missed,
   kept by the broker, without the rows its handover lists.
3. Any other id (from another process, after a restart, or once the broker has dropped the
   batches) gets a catch-up from its newest row.

NOTE: a catch-up finds rows by start time, so it misses a row that started before the viewer's
newest row but that LiteLLM recorded only after the viewer's last read (a long request). A
resume within one process from ``done`` or a live id sends such a row, as long as the broker
still keeps the batches (``replay_bytes``) and the row started within ``poll_overlap`` of being
recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from contextlib import aclosing
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response

from aria_stream.appkeys import metrics_key, request_id_key, settings_key, source_key, tail_key
from aria_stream.backfill import Backfill, project_entry
from aria_stream.broker import Handover
from aria_stream.errors import UpstreamError
from aria_stream.events import chunk_rows, encode_json, join_rows, make_cursor, parse_cursor
from aria_stream.framing import sse_frame
from aria_stream.params import StreamParams, parse_params
from aria_stream.position import StreamPosition, parse_position
from aria_stream.settings import Settings
from aria_stream.source import SpendSource
from aria_stream.subscriber import Outgoing, Subscriber, SubscriberGone
from aria_stream.tail import TailService
from aria_stream.upstream import PageStart, RowBatch

logger = logging.getLogger(__name__)

# Rows newer than this far past our clock are still read when catching up after a reconnect.
FUTURE_MARGIN = timedelta(days=1)
# The writer sends named ``ping`` events itself, so aiohttp-sse's ``: ping`` comments, which
# cannot be turned off, are pushed out of the way.
LIBRARY_PING_INTERVAL = 24 * 3600.0
NOTHING_SENT = {"sent": 0, "total": 0, "skipped": 0}


class StreamStopped(Exception):
    """Nothing more will be sent on this stream, but it stays open so the viewer keeps it."""


class ResetStream(Exception):
    """The stream cannot continue from the viewer's event id; it starts over with a backfill."""


class EventStream(EventSourceResponse):
    """aiohttp-sse's response with ``no-transform``, so no proxy compresses or rewrites it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.headers["Cache-Control"] = "no-cache, no-transform"


@dataclass(frozen=True, slots=True)
class NewRow:
    """A row found by a catch-up: its cursor, start time and encoded event JSON."""

    cursor: str
    request_id: str
    start: float
    encoded: str


def read_resume(request: web.Request, settings: Settings) -> tuple[StreamPosition | None, str]:
    """Return the position to resume from and, when it cannot be used, the reason.

    ``Last-Event-ID`` (sent by the browser's own reconnect) wins over ``?after=`` (sent by a
    client that built a new EventSource).
    """
    text = request.headers.get("Last-Event-ID") or request.query.get("after") or ""
    if not text:
        return None, ""
    position = parse_position(text)
    if position is None:
        return None, "the event id is malformed"
    newest = position.top_time()
    if newest is None:
        # Only the id of an empty backfill's ``done`` names no row; it needs this process.
        if position.epoch is None or position.seq is None:
            return None, "the event id names no row"
        return position, ""
    now = datetime.now(UTC)
    if newest > now + FUTURE_MARGIN:
        return None, "the event id is in the future"
    if newest < now - timedelta(seconds=settings.resume_max_age):
        return None, "the event id is older than the server can resume from"
    return position, ""


class StreamSession:
    """Everything one stream sends before the live batches flow on their own."""

    def __init__(
        self,
        subscriber: Subscriber,
        source: SpendSource,
        tail: TailService,
        params: StreamParams,
        settings: Settings,
        *,
        limit: int,
        start_seq: int,
        request_id: str,
    ) -> None:
        self.subscriber = subscriber
        self.source = source
        self.tail = tail
        self.params = params
        self.query = params.to_query()
        self.settings = settings
        self.limit = limit
        self.start_seq = start_seq
        self.request_id = request_id
        self.meta_sent = False

    async def run(self, resume: StreamPosition | None, reset_reason: str) -> None:
        """Send the backfill or the rows missed since ``resume``, then go live."""
        if resume is not None:
            await self.send_meta(self.source.endpoint)
            try:
                await self._resume(resume)
                return
            except ResetStream as reset:
                reset_reason = str(reset)
                logger.info("[%s] cannot resume: %s", self.request_id, reset_reason)
        if reset_reason:
            await self.send_meta(self.source.endpoint)
            await self.send("reset", {"reason": reset_reason})
        await self._run_fresh()

    async def _run_fresh(self) -> None:
        base = StreamPosition(epoch=self.tail.broker.epoch, seq=self.start_seq)
        backfill = self._backfill(base, self.limit)
        await self._run_backfill(backfill)
        # A backfill cut by its limit did not request older rows, but the baseline batch of a
        # poller that started with this stream contains such rows.
        below = backfill.low if backfill.remaining <= 0 else None
        handover = self._open_handover(backfill.ids, below, inclusive=False)
        done = StreamPosition(
            top=backfill.top,
            epoch=self.tail.broker.epoch,
            seq=self.start_seq,
            handover=None if handover is None else handover.token,
        )
        await self.send_done(backfill.progress(), done)
        await self._go_live(handover)

    async def _resume(self, resume: StreamPosition) -> None:
        if resume.in_backfill:
            await self._resume_backfill(resume)
        elif self.source.kind == "file":
            # A file does not change, so a viewer past its backfill has every row.
            await self.send_done(NOTHING_SENT, None)
            await self.subscriber.go_live([], None)
        elif not await self._resume_replay(resume):
            await self._catch_up(resume.top, NOTHING_SENT)

    async def _resume_backfill(self, resume: StreamPosition) -> None:
        progress = NOTHING_SENT
        if resume.remaining > 0:
            position = StreamPosition(top=resume.top, low=resume.low, remaining=resume.remaining)
            offset = max(0, self.limit - resume.remaining)
            backfill = self._backfill(position, resume.remaining, offset=offset)
            await self._run_backfill(backfill)
            progress = backfill.progress()
        if self.source.kind == "file":
            await self.send_done(progress, None)
            await self.subscriber.go_live([], None)
            return
        await self._catch_up(resume.top, progress)

    async def _resume_replay(self, resume: StreamPosition) -> bool:
        """Send the batches missed since a position of this process; False when impossible."""
        broker = self.tail.broker
        if resume.epoch != broker.epoch or resume.seq is None:
            return False
        handover: Handover | None = None
        if resume.handover is not None:
            handover = broker.handover(resume.handover)
            if handover is None:
                return False
        # A position in the middle of a batch replays that batch without its first rows.
        after = resume.seq - 1 if resume.seq_rows else resume.seq
        missed = broker.replay(after)
        if missed is None:
            return False
        await self.send("done", NOTHING_SENT)
        logger.debug("[%s] resumed from the replay buffer", self.request_id)
        if handover is not None:
            await self.tail.wait_covered(handover.ids)
        await self.subscriber.go_live(missed, handover, skip=(resume.seq, resume.seq_rows))
        return True

    async def _catch_up(self, top: str | None, progress: dict[str, Any]) -> None:
        """Send the rows newer than ``top`` read from LiteLLM, oldest first, then go live."""
        if top is None:
            raise ResetStream("the event id names no row")
        rows = await self._read_newer(top)
        await self.send_done(progress, StreamPosition(top=top))
        index = 0
        for chunk in chunk_rows((row.encoded for row in rows), self.settings.max_event_bytes):
            index += len(chunk)
            # No broker position: a reconnect in the middle reads LiteLLM again from here.
            position = StreamPosition(top=rows[index - 1].cursor).encode()
            data = sse_frame("entries", join_rows(chunk), id=position)
            await self.subscriber.put(Outgoing(data, "entries", len(chunk), position))
        ids = {row.request_id: row.start for row in rows}
        # The baseline batch of a poller that started with this stream contains rows up to
        # ``top``, which the viewer had before it reconnected.
        handover = self._open_handover(ids, top, inclusive=True)
        await self._go_live(handover)

    async def _read_newer(self, top: str) -> list[NewRow]:
        """Read the rows newer than ``top`` that match the query, retrying while LiteLLM fails."""
        parsed = parse_cursor(top)
        assert parsed is not None, "read_resume accepts only valid cursors"
        since = parsed[0].replace(microsecond=0)
        query = self.query
        query = replace(
            query,
            since=since if query.since is None or since > query.since else query.since,
            until=query.until or datetime.now(UTC) + FUTURE_MARGIN,
        )
        delay = self.settings.poll_interval
        while True:
            try:
                rows = await self._read_newer_once(query, top)
                break
            except UpstreamError as error:
                await self.send_meta(None)
                wait = self._retry_wait(delay, error)
                self.subscriber.report_error(error.to_event(retry=True, retry_in=round(wait, 1)))
                logger.info(
                    "[%s] catch-up paused by an upstream error (%s); retrying in %.1f s",
                    self.request_id,
                    error.kind,
                    wait,
                )
                await asyncio.sleep(wait)
                delay = min(delay * 2, self.settings.max_backoff)
        if rows is None:
            raise ResetStream(
                f"more than {self.settings.backfill_cap} rows were recorded after the event id"
            )
        rows.sort(key=lambda row: row.cursor)
        return rows

    async def _read_newer_once(self, query: Any, top: str) -> list[NewRow] | None:
        """Return the rows newer than ``top``, or None when there are more than the cap."""
        found: dict[str, NewRow] = {}
        async with aclosing(self.source.iter_pages(query)) as events:
            async for event in events:
                if isinstance(event, PageStart):
                    await self._on_page_start(event.endpoint)
                if not isinstance(event, RowBatch):
                    continue
                for raw in event.rows:
                    try:
                        lite, row = project_entry(
                            raw, self.params.full, max_bytes=self.settings.max_event_bytes
                        )
                    except ValueError:
                        continue
                    cursor = make_cursor(lite["start_time"], lite["request_id"])
                    if cursor > top and self.query.matches(lite):
                        start = lite["start_time"].timestamp()
                        found[lite["request_id"]] = NewRow(
                            cursor, lite["request_id"], start, encode_json(row)
                        )
                if len(found) > self.settings.backfill_cap:
                    return None
        return list(found.values())

    def _open_handover(
        self, ids: dict[str, float], below: str | None, *, inclusive: bool
    ) -> Handover | None:
        """Record the rows this viewer read itself that the poller may still publish."""
        if not self.tail.enabled:
            return None
        floor = self.tail.poller.window_floor()
        recent = {request_id: start for request_id, start in ids.items() if start >= floor}
        if not recent and below is None:
            return None
        return self.tail.broker.open_handover(recent, below, inclusive=inclusive)

    async def _go_live(self, handover: Handover | None) -> None:
        """Send the pending batches without the handover's rows, once none can come later."""
        if handover is not None:
            await self.tail.wait_covered(handover.ids)
        await self.subscriber.go_live([], handover)

    def _backfill(self, position: StreamPosition, limit: int, offset: int = 0) -> Backfill:
        return Backfill(
            self.source,
            self.query,
            full=self.params.full,
            limit=limit,
            sink=self.subscriber.put,
            on_endpoint=self._on_page_start,
            position=position,
            metrics=self.subscriber.metrics,
            request_id=self.request_id,
            offset=offset if self.source.kind == "file" else 0,
            max_bytes=self.settings.max_event_bytes,
        )

    async def _run_backfill(self, backfill: Backfill) -> None:
        """Run the backfill, retrying with backoff while LiteLLM fails."""
        delay = self.settings.poll_interval
        while True:
            try:
                await backfill.run()
                return
            except UpstreamError as error:
                await self.send_meta(None)
                if self.source.kind == "file":
                    # A file does not change, so reading it again cannot help.
                    await self.send("upstream_error", error.to_event(retry=False))
                    raise StreamStopped from error
                wait = self._retry_wait(delay, error)
                self.subscriber.report_error(error.to_event(retry=True, retry_in=round(wait, 1)))
                logger.info(
                    "[%s] backfill paused by an upstream error after %d rows (%s); retrying in "
                    "%.1f s",
                    self.request_id,
                    backfill.sent,
                    error.kind,
                    wait,
                )
                await asyncio.sleep(wait)
                delay = min(delay * 2, self.settings.max_backoff)

    def _retry_wait(self, delay: float, error: UpstreamError) -> float:
        """Return the seconds to wait before reading LiteLLM again: the 429 delay at least."""
        return min(max(delay, error.retry_after or 0.0), self.settings.max_backoff)

    async def _on_page_start(self, endpoint: str | None) -> None:
        """LiteLLM answered a read of this stream: send ``meta`` once, end a reported outage."""
        await self.send_meta(endpoint, upstream_answered=True)
        self.subscriber.report_ok()

    async def send_meta(self, endpoint: str | None, *, upstream_answered: bool = False) -> None:
        """Send ``meta`` once, then the poller's outage if there is one.

        ``upstream_answered`` means LiteLLM has just answered this stream, so an outage the
        poller reported earlier is not repeated.
        """
        if self.meta_sent:
            return
        self.meta_sent = True
        since, until = self.source.window(self.query)
        meta = {
            "source": self.source.kind,
            "origin": self.source.origin,
            "endpoint": endpoint,
            "window": {"since": _iso(since), "until": _iso(until)},
            "limit": self.limit,
            "full": self.params.full,
            "total": None,
            "live": self.tail.enabled,
        }
        data = sse_frame("meta", encode_json(meta), retry=self.settings.retry_ms)
        await self.subscriber.put(Outgoing(data, "meta"))
        self.subscriber.started = True
        status = self.tail.broker.status
        if not upstream_answered and not status.ok and status.event is not None:
            self.subscriber.report_error(status.event)

    async def send_done(self, progress: dict[str, Any], position: StreamPosition | None) -> None:
        """Send ``done``; its id lets a reconnect resume after the backfill."""
        text = None if position is None else position.encode()
        data = sse_frame("done", encode_json(progress), id=text)
        await self.subscriber.put(Outgoing(data, "done", position=text))

    async def send(self, event: str, data: dict[str, Any]) -> None:
        await self.subscriber.put(Outgoing(sse_frame(event, encode_json(data)), event))


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


async def handle_stream(request: web.Request) -> web.StreamResponse:
    """Serve ``GET /api/spend/stream``."""
    params = parse_params(StreamParams, request.query)
    app = request.app
    settings = app[settings_key]
    tail = app[tail_key]
    request_id = request[request_id_key]
    resume, reset_reason = read_resume(request, settings)
    limit = min(params.limit, settings.backfill_cap)
    async with sse_response(
        request,
        response_cls=EventStream,
        ping_interval=LIBRARY_PING_INTERVAL,
        send_timeout=settings.write_timeout,
        sep="\n",
    ) as sse:
        subscriber = Subscriber(
            sse,
            query=params.to_query(),
            full=params.full,
            queue_bytes=settings.queue_bytes,
            write_timeout=settings.write_timeout,
            ping_interval=settings.ping_interval,
            metrics=app[metrics_key],
            request_id=request_id,
        )
        start_seq = tail.attach(subscriber)
        if tail.closing:
            # The server began to shut down while this request was being set up.
            subscriber.close(shutdown_event(), discard=True)
        logger.debug("[%s] stream opened (limit=%d, resume=%s)", request_id, limit, resume)
        session = StreamSession(
            subscriber,
            app[source_key],
            tail,
            params,
            settings,
            limit=limit,
            start_seq=start_seq,
            request_id=request_id,
        )
        writer = asyncio.create_task(subscriber.run_writer())
        producer = asyncio.create_task(session.run(resume, reset_reason))
        started = time.monotonic()
        try:
            await asyncio.wait({writer, producer}, return_when=asyncio.FIRST_COMPLETED)
            if producer.done() and not producer.cancelled():
                error = producer.exception()
                if error is not None and not isinstance(error, SubscriberGone | StreamStopped):
                    raise error
                # The backfill is over; the writer now carries the live tail until the end.
                with contextlib.suppress(SubscriberGone):
                    await writer
        finally:
            tail.detach(subscriber)
            subscriber.close()
            for task in (producer, writer):
                task.cancel()
            for task in (producer, writer):
                with contextlib.suppress(asyncio.CancelledError, SubscriberGone):
                    await task
            logger.debug("[%s] stream closed after %.1f s", request_id, time.monotonic() - started)
    return sse


def shutdown_event() -> Outgoing:
    return Outgoing(
        sse_frame("shutdown", encode_json({"reason": "server shutting down"})), "shutdown"
    )


async def stop_streams(app: web.Application) -> None:
    """Send ``shutdown`` to every open stream and let its writer end.

    Events still queued are dropped, so a slow viewer cannot hold up the shutdown. Its last event
    id lies before them, so its reconnect gets them again. A stream that subscribes from now on
    is ended the same way at once.
    """
    tail = app[tail_key]
    tail.closing = True
    for subscriber in list(tail.subscribers):
        subscriber.close(shutdown_event(), discard=True)
    await tail.close()
