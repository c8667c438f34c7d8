"""The SSE stream of ``GET /api/spend/stream``: a backfill of recent rows, chunk by chunk.

Events, in order: ``meta``, then ``entries`` (each with an ``id:`` cursor) and ``progress`` as
pages arrive, then ``done``; ``upstream_error`` replaces the rest when LiteLLM fails. Rows parsed
before a failure are sent before the error.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from typing import Any, Protocol

from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response

from aria_stream.appkeys import request_id_key, settings_key, source_key, streams_key
from aria_stream.errors import UpstreamError
from aria_stream.events import chunk_rows, encode_json, join_rows, make_cursor
from aria_stream.models import SpendLogEntry, project_full, project_lite
from aria_stream.params import StreamParams, parse_params
from aria_stream.query import SpendQuery
from aria_stream.upstream import PageEnd, PageEvent, PageStart, RowBatch

logger = logging.getLogger(__name__)


class SpendSource(Protocol):
    """Where spend logs come from: a LiteLLM proxy, the simulator, or a file."""

    kind: str
    origin: str

    @property
    def filters_upstream(self) -> bool: ...

    def window(self, query: SpendQuery) -> tuple[Any, Any]: ...

    def iter_pages(
        self, query: SpendQuery, *, offset: int = 0, page_size: int | None = None
    ) -> AsyncGenerator[PageEvent, None]: ...

    async def fetch_entry(self, request_id: str) -> dict[str, Any] | None: ...


class EventStream(EventSourceResponse):
    """aiohttp-sse's response with ``no-transform``, so no proxy compresses or rewrites it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.headers["Cache-Control"] = "no-cache, no-transform"


def project_entry(raw: dict[str, Any], full: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return ``(lite fields, event row)`` for a raw row; raise ``ValueError`` if unusable."""
    lite = project_lite(raw)
    if full:
        return lite, project_full(raw)
    return lite, SpendLogEntry.model_validate(lite).model_dump(mode="json")


class Backfill:
    """Send the newest ``limit`` rows that match a query to one stream."""

    def __init__(
        self,
        sse: EventSourceResponse,
        source: SpendSource,
        params: StreamParams,
        *,
        limit: int,
        retry_ms: int,
        request_id: str,
    ) -> None:
        self.sse = sse
        self.source = source
        self.params = params
        self.query = params.to_query()
        self.limit = limit
        self.retry_ms = retry_ms
        self.request_id = request_id
        self.sent = 0
        self.skipped = 0
        self.total: int | None = None
        self._meta_sent = False

    async def run(self) -> bool:
        """Stream the backfill; return False when LiteLLM failed before its end."""
        started = time.monotonic()
        pages = self.source.iter_pages(self.query)
        try:
            async with aclosing(pages) as events:
                async for event in events:
                    await self._on_event(event)
                    if self.sent >= self.limit:
                        break
        except UpstreamError as error:
            await self._send_meta(None)
            await self.send("upstream_error", error.to_event(retry=False))
            logger.info(
                "[%s] backfill stopped by an upstream error after %d rows: %s",
                self.request_id,
                self.sent,
                error.kind,
            )
            return False
        await self._send_meta(None)
        await self.send("progress", self._progress())
        await self.send("done", self._progress())
        logger.info(
            "[%s] backfill sent %d rows in %.0f ms",
            self.request_id,
            self.sent,
            (time.monotonic() - started) * 1000,
        )
        return True

    async def _on_event(self, event: PageEvent) -> None:
        if isinstance(event, PageStart):
            await self._send_meta(event.endpoint)
        elif isinstance(event, RowBatch):
            await self._send_rows(event)
        elif isinstance(event, PageEnd):
            if event.total is not None and self.total is None:
                self.total = min(self.limit, event.total)
            await self.send("progress", self._progress())

    async def _send_rows(self, batch: RowBatch) -> None:
        encoded: list[str] = []
        cursors: list[str] = []
        for raw in batch.rows:
            if self.sent + len(encoded) >= self.limit:
                break
            try:
                lite, row = project_entry(raw, self.params.full)
            except ValueError as error:
                self.skipped += 1
                logger.warning("[%s] skipped a row: %s", self.request_id, error)
                continue
            if not self.query.matches(lite):
                continue
            encoded.append(encode_json(row))
            cursors.append(make_cursor(lite["start_time"], lite["request_id"]))
        for malformed in batch.malformed:
            self.skipped += 1
            logger.warning(
                "[%s] skipped a malformed row (%s): %s",
                self.request_id,
                malformed.reason,
                malformed.excerpt,
            )
        index = 0
        for chunk in chunk_rows(encoded):
            index += len(chunk)
            await self.sse.send(join_rows(chunk), event="entries", id=cursors[index - 1])
            self.sent += len(chunk)

    async def _send_meta(self, endpoint: str | None) -> None:
        if self._meta_sent:
            return
        self._meta_sent = True
        since, until = self.source.window(self.query)
        meta = {
            "source": self.source.kind,
            "origin": self.source.origin,
            "endpoint": endpoint,
            "window": {
                "since": None if since is None else since.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "until": None if until is None else until.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
            "limit": self.limit,
            "full": self.params.full,
            "total": self.total,
        }
        await self.sse.send(encode_json(meta), event="meta", retry=self.retry_ms)

    def _progress(self) -> dict[str, Any]:
        return {"sent": self.sent, "total": self.total, "skipped": self.skipped}

    async def send(self, event: str, data: Mapping[str, Any]) -> None:
        await self.sse.send(encode_json(data), event=event)


async def handle_stream(request: web.Request) -> web.StreamResponse:
    """Serve ``GET /api/spend/stream``."""
    params = parse_params(StreamParams, request.query)
    settings = request.app[settings_key]
    source = request.app[source_key]
    request_id = request[request_id_key]
    limit = min(params.limit, settings.backfill_cap)
    async with sse_response(
        request,
        response_cls=EventStream,
        ping_interval=settings.ping_interval,
        sep="\n",
    ) as sse:
        streams = request.app[streams_key]
        streams.add(sse)
        logger.debug("[%s] stream opened (limit=%d)", request_id, limit)
        try:
            backfill = Backfill(
                sse,
                source,
                params,
                limit=limit,
                retry_ms=settings.retry_ms,
                request_id=request_id,
            )
            await backfill.run()
            # NOTE: the live tail is not built yet; the stream stays open and idle after the
            # backfill, so that EventSource does not reconnect and read the backfill again.
            await sse.wait()
        except ConnectionResetError:
            logger.debug("[%s] viewer disconnected", request_id)
        finally:
            streams.discard(sse)
    return sse


async def stop_streams(app: web.Application) -> None:
    """Tell every open stream that the server is shutting down, then end it."""
    streams: weakref.WeakSet[EventSourceResponse] = app[streams_key]
    for sse in list(streams):
        try:
            await sse.send(encode_json({"reason": "server shutting down"}), event="shutdown")
        except (ConnectionResetError, RuntimeError, TimeoutError):
            pass
        sse.stop_streaming()
