"""A saved spend-log dump as a source: a legacy array, a v2/ui envelope or JSON lines.

The file is read in blocks through the same row splitter as LiteLLM's responses, so a 100 MB
dump is never loaded whole.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from aria_stream.errors import UpstreamBadResponse, UpstreamError, UpstreamTruncated
from aria_stream.jsonrows import BodyError, MalformedRow, NotJSONBody, RowSplitter, TruncatedBody
from aria_stream.query import SpendQuery
from aria_stream.upstream import PageEnd, PageEvent, PageStart, RowBatch

BLOCK_SIZE = 256 * 1024


class FileSourceError(Exception):
    """The dump file cannot be read as spend logs."""


class FileSource:
    """Spend logs read from a file; filters are applied locally."""

    kind = "file"
    endpoint = "file"
    last_success: float | None = None
    last_error: UpstreamError | None = None

    def __init__(self, path: Path) -> None:
        self.path = path
        self.origin = path.name
        # Bytes read from the file by every request so far, so tests can check that a small
        # request stops reading early.
        self.bytes_read = 0

    @property
    def filters_upstream(self) -> bool:
        return False

    def check(self) -> None:
        """Raise ``FileSourceError`` when the file cannot be opened."""
        if not self.path.is_file():
            raise FileSourceError(f"spend-log file {str(self.path)!r} does not exist")
        try:
            self.path.open("rb").close()
        except OSError as error:
            raise FileSourceError(
                f"cannot read spend-log file {str(self.path)!r}: {error}"
            ) from error

    def window(
        self, query: SpendQuery, now: datetime | None = None
    ) -> tuple[datetime | None, datetime | None]:
        return query.since, query.until

    async def iter_pages(
        self,
        query: SpendQuery,
        *,
        offset: int = 0,
        page_size: int | None = None,
        first_page_size: int | None = None,
        expected_rows: int | None = None,
        sort_by: str | None = None,
        now: datetime | None = None,
    ) -> AsyncGenerator[PageEvent, None]:
        """Yield the file's rows in file order, skipping the first ``offset``.

        A file has no pages and one order, so ``page_size``, ``first_page_size``,
        ``expected_rows`` and ``sort_by`` are ignored.

        A file that is not a complete spend-log document raises an ``UpstreamError`` after the
        rows before the fault have been yielded, as a failing LiteLLM response does.
        """
        yield PageStart("file", None, None)  # type: ignore[arg-type]
        splitter = RowSplitter()
        count = 0
        handle: BinaryIO = await asyncio.to_thread(self.path.open, "rb")
        try:
            while True:
                block = await asyncio.to_thread(handle.read, BLOCK_SIZE)
                self.bytes_read += len(block)
                try:
                    items = splitter.feed(block) if block else splitter.close()
                except BodyError as error:
                    raise self._body_error(error) from error
                rows: list[dict[str, Any]] = []
                malformed: list[MalformedRow] = []
                for item in items:
                    if isinstance(item, MalformedRow):
                        malformed.append(item)
                        continue
                    count += 1
                    if count > offset:
                        rows.append(item)
                if rows or malformed:
                    yield RowBatch(rows, malformed)
                if not block:
                    break
        finally:
            await asyncio.to_thread(handle.close)
        total = splitter.envelope.get("total")
        yield PageEnd(count, total if isinstance(total, int) else None, False)

    def _body_error(self, error: BodyError) -> UpstreamError:
        name = self.path.name
        if isinstance(error, TruncatedBody):
            return UpstreamTruncated(
                f"The spend-log file {name} ends in the middle of its data ({error}); it may "
                "have been cut off while it was saved, or is still being written."
            )
        if isinstance(error, NotJSONBody):
            return UpstreamBadResponse(
                f"The spend-log file {name} is not JSON ({error.excerpt!r}); save a "
                "/spend/logs array, a v2/ui envelope or JSON lines."
            )
        return UpstreamBadResponse(
            f"The spend-log file {name} is not a spend-log dump ({error}); save a /spend/logs "
            "array, a v2/ui envelope or JSON lines."
        )

    async def fetch_entry(self, request_id: str) -> dict[str, Any] | None:
        """Scan the file for the row with this request id."""
        async with aclosing(self.iter_pages(SpendQuery())) as events:
            async for event in events:
                if isinstance(event, RowBatch):
                    for row in event.rows:
                        if row.get("request_id") == request_id:
                            return row
        return None
