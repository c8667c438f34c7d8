"""The backfill of one stream: the newest rows that match a query, sent as they are parsed.

A backfill reads LiteLLM newest first and sends each parsed chunk at once as ``entries`` events.
Each event's id records the newest row sent, the oldest row sent and how many rows are still
owed, so a viewer that drops in the middle resumes below the oldest row it has. After an
upstream failure ``run`` can be called again and continues where it stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from aria_stream.events import chunk_rows, encode_json, join_rows, make_cursor, parse_cursor
from aria_stream.framing import sse_frame
from aria_stream.metrics import Metrics
from aria_stream.models import FULL_ROW_MAX_BYTES, SpendLogEntry, project_full, project_lite
from aria_stream.position import StreamPosition
from aria_stream.query import SpendQuery
from aria_stream.source import SpendSource
from aria_stream.subscriber import Outgoing
from aria_stream.upstream import PageEnd, PageStart, RowBatch

logger = logging.getLogger(__name__)

Sink = Callable[[Outgoing], Awaitable[None]]


def project_entry(
    raw: dict[str, Any], full: bool, *, max_bytes: int = FULL_ROW_MAX_BYTES
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return ``(lite fields, event row)`` for a raw row; raise ``ValueError`` if unusable.

    A full row is cut to about ``max_bytes`` of JSON, with what was cut noted in it.
    """
    lite = project_lite(raw)
    if full:
        return lite, project_full(raw, max_bytes=max_bytes)
    return lite, SpendLogEntry.model_validate(lite).model_dump(mode="json", exclude_none=True)


class Backfill:
    """Send up to ``limit`` rows matching ``query``, newest first, older than ``below``."""

    def __init__(
        self,
        source: SpendSource,
        query: SpendQuery,
        *,
        full: bool,
        limit: int,
        sink: Sink,
        on_endpoint: Callable[[str | None], Awaitable[None]],
        position: StreamPosition,
        metrics: Metrics,
        request_id: str,
        offset: int = 0,
        max_bytes: int = FULL_ROW_MAX_BYTES,
    ) -> None:
        self.source = source
        self.query = query
        self.full = full
        self.max_bytes = max_bytes
        self.limit = limit
        self.sink = sink
        self.on_endpoint = on_endpoint
        self.metrics = metrics
        self.request_id = request_id
        self.position = position
        self.top = position.top
        self.low = position.low
        # Rows at or above this cursor were sent before a reconnect.
        self.resume_below = position.low if source.kind != "file" else None
        self.offset = offset
        self.sent = 0
        self.skipped = 0
        self.total: int | None = None
        # Request id -> start time (seconds since the epoch) of every row sent.
        self.ids: dict[str, float] = {}
        self._last_progress: dict[str, Any] | None = None

    @property
    def remaining(self) -> int:
        return self.limit - self.sent

    async def run(self) -> None:
        """Send rows until ``limit`` or the end of the data; raise ``UpstreamError`` on failure."""
        query = self.query
        if self.resume_below is not None:
            # Continue below the oldest row sent: LiteLLM's dates have whole seconds, so the
            # window ends one second later and the cursor comparison drops what was sent.
            until = _cursor_time(self.resume_below) + timedelta(seconds=1)
            if query.until is None or until < query.until:
                query = replace(query, until=until)
        # A file is not sorted by time, so its backfill resumes by counting rows instead.
        pages = self.source.iter_pages(
            query, offset=self.offset + self.sent, expected_rows=self.remaining
        )
        async with aclosing(pages) as events:
            async for event in events:
                if isinstance(event, PageStart):
                    await self.on_endpoint(event.endpoint)
                elif isinstance(event, RowBatch):
                    await self._send_rows(event)
                elif isinstance(event, PageEnd):
                    if event.total is not None and self.total is None:
                        self.total = min(self.limit, event.total)
                    await self.send_progress()
                if self.remaining <= 0:
                    break
        # The limit can end the backfill in the middle of a page, before its progress event.
        await self.send_progress()

    def progress(self) -> dict[str, Any]:
        return {"sent": self.sent, "total": self.total, "skipped": self.skipped}

    async def send_progress(self) -> None:
        """Send a ``progress`` event unless the last one already had the same counts."""
        progress = self.progress()
        if progress == self._last_progress:
            return
        self._last_progress = progress
        await self.send_event("progress", progress)

    async def send_event(self, event: str, data: dict[str, Any]) -> None:
        await self.sink(Outgoing(sse_frame(event, encode_json(data)), event))

    async def _send_rows(self, batch: RowBatch) -> None:
        encoded: list[str] = []
        cursors: list[str] = []
        for raw in batch.rows:
            if len(encoded) >= self.remaining:
                break
            try:
                lite, row = project_entry(raw, self.full, max_bytes=self.max_bytes)
            except ValueError as error:
                self.skipped += 1
                self.metrics.rows_skipped.inc()
                logger.warning("[%s] skipped a row: %s", self.request_id, error)
                continue
            if not self.query.matches(lite):
                continue
            cursor = make_cursor(lite["start_time"], lite["request_id"])
            if self.resume_below is not None and cursor >= self.resume_below:
                continue
            if lite["request_id"] in self.ids:
                continue
            self.ids[lite["request_id"]] = lite["start_time"].timestamp()
            encoded.append(encode_json(row))
            cursors.append(cursor)
        for malformed in batch.malformed:
            self.skipped += 1
            self.metrics.rows_skipped.inc()
            logger.warning(
                "[%s] skipped a malformed row (%s): %s",
                self.request_id,
                malformed.reason,
                malformed.excerpt,
            )
        index = 0
        for chunk in chunk_rows(encoded, self.max_bytes):
            first, index = index, index + len(chunk)
            if self.top is None:
                self.top = cursors[first]
            self.sent += len(chunk)
            self.low = cursors[index - 1]
            position = replace(self.position, top=self.top, low=self.low, remaining=self.remaining)
            text = position.encode()
            data = sse_frame("entries", join_rows(chunk), id=text)
            await self.sink(Outgoing(data, "entries", len(chunk), text))


def _cursor_time(cursor: str) -> datetime:
    parsed = parse_cursor(cursor)
    if parsed is None:
        raise ValueError(f"invalid cursor {cursor!r}")
    return parsed[0]
