"""The SSE stream of ``GET /api/spend/stream``: a backfill, then the live tail, resumable.

Events: ``meta`` first (with the ``retry:`` hint), ``reset`` when the viewer's event id cannot be
resumed, ``entries`` (each with an ``id:``) and ``progress`` during the backfill, ``done``, then
live ``entries`` from the shared poller, named ``ping`` heartbeats, ``upstream_error`` and
``upstream_ok`` as LiteLLM fails and recovers, ``lagged`` for a viewer that reads too slowly and
``shutdown`` when the server stops.

How a reconnect resumes (the event id is a ``StreamPosition``):

1. An id from the backfill continues the backfill below its oldest row, then sends every row
   newer than its newest row, read again from LiteLLM.
2. An id from the live tail of this same process gets exactly the batches it missed, kept by
   the broker. An id from another process (a restart) gets the rows newer than its newest row,
   read again from LiteLLM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response

from aria_stream.appkeys import metrics_key, request_id_key, settings_key, source_key, tail_key
from aria_stream.backfill import Backfill, project_entry
from aria_stream.broker import TailBatch, TailRow
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


class StreamStopped(Exception):
    """Nothing more will be sent on this stream, but it stays open so the viewer keeps it."""


class EventStream(EventSourceResponse):
    """aiohttp-sse's response with ``no-transform``, so no proxy compresses or rewrites it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.headers["Cache-Control"] = "no-cache, no-transform"


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
        return None, "the event id names no row"
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
        self.error_sent = False

    async def run(self, resume: StreamPosition | None, reset_reason: str) -> None:
        """Send the backfill or the rows missed since ``resume``, then go live."""
        broker = self.tail.broker
        base = StreamPosition(epoch=broker.epoch, seq=self.start_seq)
        if resume is None:
            if reset_reason:
                await self.send_meta(self.source.endpoint)
                await self.send("reset", {"reason": reset_reason})
            backfill = self._backfill(base, self.limit)
            await self._run_backfill(backfill)
            await self.send("done", backfill.progress())
            self._go_live_fresh(backfill)
            return

        await self.send_meta(self.source.endpoint)
        if resume.in_backfill:
            position = StreamPosition(top=resume.top, low=resume.low, remaining=resume.remaining)
            backfill = self._backfill(
                position, resume.remaining, offset=max(0, self.limit - resume.remaining)
            )
            await self._run_backfill(backfill)
            await self.send("done", backfill.progress())
        elif resume.epoch == broker.epoch and resume.seq is not None:
            after = resume.seq - 1 if resume.seq_rows else resume.seq
            batches = broker.replay(after)
            if batches is not None:
                await self.send("done", {"sent": 0, "total": 0, "skipped": 0})
                logger.debug("[%s] resumed from the replay buffer", self.request_id)
                self.subscriber.go_live(batches, None, 0.0, skip_first=resume.seq_rows)
                return
        else:
            await self.send("done", {"sent": 0, "total": 0, "skipped": 0})
        top = await self._catch_up(resume.top)
        self.subscriber.go_live(
            self.subscriber.pending,
            _newer_than(top),
            self._exclude_seconds(),
        )

    def _backfill(self, position: StreamPosition, limit: int, offset: int = 0) -> Backfill:
        return Backfill(
            self.source,
            self.query,
            full=self.params.full,
            limit=limit,
            sink=self.subscriber.put,
            on_endpoint=self.send_meta,
            position=position,
            metrics=self.subscriber.metrics,
            request_id=self.request_id,
            offset=offset if self.source.kind == "file" else 0,
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
                if not self.error_sent:
                    self.error_sent = True
                    event = error.to_event(retry=True, retry_in=round(delay, 1))
                    await self.send("upstream_error", event)
                logger.info(
                    "[%s] backfill paused by an upstream error after %d rows (%s); retrying in "
                    "%.1f s",
                    self.request_id,
                    backfill.sent,
                    error.kind,
                    delay,
                )
                wait = max(delay, error.retry_after or 0.0)
                await asyncio.sleep(min(wait, self.settings.max_backoff))
                delay = min(delay * 2, self.settings.max_backoff)

    def _go_live_fresh(self, backfill: Backfill) -> None:
        """Hand over to the live tail without repeating a backfill row or skipping a new one."""
        ids = backfill.ids
        low = backfill.low

        def exclude(row: TailRow, batch: TailBatch) -> bool:
            if row.lite["request_id"] in ids:
                return True
            # The first poll of a new poller returns the whole overlap window; rows older than
            # this backfill's oldest row were recorded before it and lie outside its view.
            return batch.baseline and low is not None and row.cursor < low

        self.subscriber.go_live(self.subscriber.pending, exclude, self._exclude_seconds())

    async def _catch_up(self, top: str | None) -> str | None:
        """Send the rows newer than ``top`` read from LiteLLM, oldest first; return the newest."""
        if top is None:
            return None
        parsed = parse_cursor(top)
        if parsed is None:
            return top
        since = parsed[0].replace(microsecond=0)
        query = self.query
        window_since = since if query.since is None or since > query.since else query.since
        query = type(query)(
            since=window_since,
            until=query.until or datetime.now(UTC) + FUTURE_MARGIN,
            model=query.model,
            model_group=query.model_group,
            status=query.status,
            error_code=query.error_code,
        )
        found: list[tuple[str, str]] = []
        delay = self.settings.poll_interval
        while True:
            try:
                found = await self._read_newer(query, top)
                break
            except UpstreamError as error:
                if not self.error_sent:
                    self.error_sent = True
                    await self.send("upstream_error", error.to_event(retry=True, retry_in=delay))
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.max_backoff)
        found.sort()
        newest = top
        for chunk in chunk_rows(encoded for _, encoded in found):
            newest = found[len(chunk) - 1][0] if newest is None else newest
            found_cursors = [cursor for cursor, _ in found[: len(chunk)]]
            found = found[len(chunk) :]
            newest = max(newest, found_cursors[-1]) if newest else found_cursors[-1]
            # No broker position: a reconnect in the middle reads LiteLLM again from ``newest``.
            position = StreamPosition(top=newest).encode()
            data = sse_frame("entries", join_rows(chunk), id=position)
            await self.subscriber.put(Outgoing(data, "entries", len(chunk), position))
        return newest

    async def _read_newer(self, query: Any, top: str) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        async with aclosing(self.source.iter_pages(query)) as events:
            async for event in events:
                if isinstance(event, PageStart):
                    await self.send_meta(event.endpoint)
                if not isinstance(event, RowBatch):
                    continue
                for raw in event.rows:
                    try:
                        lite, row = project_entry(raw, self.params.full)
                    except ValueError:
                        continue
                    cursor = make_cursor(lite["start_time"], lite["request_id"])
                    if cursor > top and self.query.matches(lite):
                        found.append((cursor, encode_json(row)))
                if len(found) >= self.settings.backfill_cap:
                    break
        return found

    def _exclude_seconds(self) -> float:
        # Rows visible when the backfill read LiteLLM reach the poller by its next full poll.
        return 2 * self.settings.poll_interval + self.settings.first_byte_timeout

    async def send_meta(self, endpoint: str | None) -> None:
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
        status = self.tail.broker.status
        if not status.ok and status.event is not None:
            self.error_sent = True
            await self.send("upstream_error", status.event)

    async def send(self, event: str, data: dict[str, Any]) -> None:
        await self.subscriber.put(Outgoing(sse_frame(event, encode_json(data)), event))


def _newer_than(top: str | None) -> Callable[[TailRow, TailBatch], bool] | None:
    if top is None:
        return None

    def exclude(row: TailRow, batch: TailBatch) -> bool:
        return row.cursor <= top

    return exclude


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
        ping_interval=settings.ping_interval,
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


async def stop_streams(app: web.Application) -> None:
    """Send ``shutdown`` to every open stream and let its writer end."""
    tail = app[tail_key]
    final = Outgoing(
        sse_frame("shutdown", encode_json({"reason": "server shutting down"})), "shutdown"
    )
    for subscriber in list(tail.subscribers):
        subscriber.close(final)
    await tail.close()
