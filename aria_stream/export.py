"""``GET /api/spend/export``: the rows of a filtered view as a CSV or JSON Lines download.

Rows are read from the source with ``iter_pages`` and written as they are parsed, so an export of
thousands of rows starts at once and never sits in memory whole. Choices:

1. The response starts with the first matching row, the end of the first upstream page or the end
   of the data, whichever comes first. An upstream failure before that gets a 502 response (504
   for a time-out) in the one JSON error shape.
2. A failure after the response has started cannot change its status any more, so it is logged
   and the connection is closed without the final chunk: the client sees an incomplete download
   rather than a file that looks complete.
3. CSV cells that hold text and start with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
   get a leading single quote, so a spreadsheet shows them as text instead of running them as
   formulas. Numbers, booleans and times are written as they are.
4. Besides the stream's filters, the export accepts the viewer's page-side filters (``key_alias``,
   ``team``, ``user`` and the free text ``q``), so a download contains the rows the viewer shows.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Mapping
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web

from aria_stream.appkeys import request_id_key, settings_key, source_key
from aria_stream.backfill import project_entry
from aria_stream.errors import UpstreamError, invalid_parameter
from aria_stream.events import encode_json
from aria_stream.models import SpendLogEntry
from aria_stream.params import FILTER_MAX_CHARS, FilterParams, parse_params
from aria_stream.query import SpendQuery
from aria_stream.upstream import PageEnd, RowBatch

logger = logging.getLogger(__name__)

ExportFormat = Literal["csv", "jsonl"]

EXPORT_DEFAULT_LIMIT = 10_000
# The lite row's fields in declaration order; this is the CSV header.
COLUMNS: tuple[str, ...] = tuple(SpendLogEntry.model_fields)
# Lite-row fields the free text filter ``q`` searches; the viewer searches the same ones.
TEXT_FIELDS = (
    "request_id",
    "model",
    "model_group",
    "provider",
    "status",
    "error_code",
    "error_class",
    "error_message",
    "key_alias",
    "team_id",
    "user",
    "end_user",
)
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
CONTENT_TYPES: dict[ExportFormat, str] = {
    "csv": "text/csv",
    "jsonl": "application/x-ndjson",
}
# Parameter name in the query -> lite-row field it must equal.
EXACT_FILTERS = {"key_alias": "key_alias", "team": "team_id", "user": "user"}


@dataclass(frozen=True, slots=True)
class ExportOptions:
    """Options of ``/api/spend/export`` on top of the stream's filters."""

    format: ExportFormat
    limit: int
    exact: dict[str, str]
    text: str | None

    def matches(self, lite: Mapping[str, Any]) -> bool:
        """Check a lite row against the page-side filters."""
        for field, expected in self.exact.items():
            if lite.get(field) != expected:
                return False
        if self.text is None:
            return True
        return any(
            self.text in str(lite[field]).lower()
            for field in TEXT_FIELDS
            if lite.get(field) is not None
        )


def parse_export_options(query: Mapping[str, str], limit_max: int) -> ExportOptions:
    """Validate ``format``, ``limit`` and the page-side filters, or raise a 400 ``ApiError``."""
    values = {key: value for key, value in query.items() if value != ""}
    format_text = values.get("format", "csv")
    export_format: ExportFormat
    if format_text == "csv":
        export_format = "csv"
    elif format_text == "jsonl":
        export_format = "jsonl"
    else:
        raise invalid_parameter("format", format_text, "one of: csv, jsonl")

    default_limit = min(EXPORT_DEFAULT_LIMIT, limit_max)
    limit_text = values.get("limit", str(default_limit))
    if not (limit_text.isascii() and limit_text.isdigit()) or not 1 <= int(limit_text) <= limit_max:
        raise invalid_parameter("limit", limit_text, f"an integer from 1 to {limit_max}")

    exact: dict[str, str] = {}
    for name, field in EXACT_FILTERS.items():
        if name in values:
            exact[field] = _checked_text(name, values[name])
    # The viewer trims the free text too, so both find the same rows.
    text = _checked_text("q", values["q"]).strip().lower() if "q" in values else ""
    return ExportOptions(export_format, int(limit_text), exact, text or None)


def _checked_text(name: str, value: str) -> str:
    if len(value) > FILTER_MAX_CHARS:
        raise invalid_parameter(name, value, f"a string of 1 to {FILTER_MAX_CHARS} characters")
    return value


def csv_cell(value: Any) -> Any:
    """Return a lite-row value as a CSV cell, with text that a spreadsheet would run quoted."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


class CsvEncoder:
    """Encodes lite rows as CSV lines (RFC 4180 quoting, CRLF line ends), header first."""

    def __init__(self) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer)

    def header(self) -> str:
        return self._encode(COLUMNS)

    def row(self, row: Mapping[str, Any]) -> str:
        return self._encode([csv_cell(row.get(column)) for column in COLUMNS])

    def _encode(self, cells: Any) -> str:
        self._buffer.seek(0)
        self._buffer.truncate()
        self._writer.writerow(cells)
        return self._buffer.getvalue()


def export_filename(export_format: ExportFormat, now: datetime | None = None) -> str:
    """Return ``spend-logs-<UTC timestamp>.<format>``, e.g. ``spend-logs-20261204T201503Z.csv``."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"spend-logs-{moment.strftime('%Y%m%dT%H%M%SZ')}.{export_format}"


class ExportWriter:
    """Writes the rows of one export, starting the response only when the first bytes are due."""

    def __init__(self, request: web.Request, options: ExportOptions) -> None:
        self.request = request
        self.options = options
        self.csv = CsvEncoder() if options.format == "csv" else None
        self.response: web.StreamResponse | None = None
        self.rows = 0

    @property
    def started(self) -> bool:
        return self.response is not None

    async def start(self) -> None:
        if self.response is not None:
            return
        filename = export_filename(self.options.format)
        response = web.StreamResponse(
            headers={
                "Content-Type": f"{CONTENT_TYPES[self.options.format]}; charset=utf-8",
                "Content-Disposition": f"attachment; filename={filename}",
                "Cache-Control": "no-store",
            }
        )
        response.enable_chunked_encoding()
        await response.prepare(self.request)
        self.response = response
        if self.csv is not None:
            await response.write(self.csv.header().encode())

    async def write_rows(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        await self.start()
        assert self.response is not None
        if self.csv is not None:
            text = "".join(self.csv.row(row) for row in rows)
        else:
            text = "".join(encode_json(row) + "\n" for row in rows)
        await self.response.write(text.encode())
        self.rows += len(rows)

    async def finish(self) -> web.StreamResponse:
        await self.start()
        assert self.response is not None
        await self.response.write_eof()
        return self.response


async def handle_export(request: web.Request) -> web.StreamResponse:
    """Serve ``GET /api/spend/export?format=csv|jsonl``: the filtered rows as a download."""
    settings = request.app[settings_key]
    params = parse_params(FilterParams, request.query)
    options = parse_export_options(request.query, settings.backfill_cap)
    query = params.to_query()
    source = request.app[source_key]

    writer = ExportWriter(request, options)
    seen: set[str] = set()
    started = time.monotonic()
    try:
        pages = source.iter_pages(query, expected_rows=options.limit)
        async with aclosing(pages) as events:
            async for event in events:
                if isinstance(event, PageEnd):
                    await writer.start()
                if not isinstance(event, RowBatch):
                    continue
                batch = _select_rows(event.rows, query, options, seen, options.limit - writer.rows)
                await writer.write_rows(batch)
                if writer.rows >= options.limit:
                    break
    except UpstreamError as error:
        if not writer.started:
            raise
        logger.warning(
            "[%s] export ended after %d rows: %s (%s); closing the connection so the client "
            "sees an incomplete download",
            request[request_id_key],
            writer.rows,
            error.message,
            error.kind,
        )
        if request.transport is not None:
            request.transport.abort()
        assert writer.response is not None
        return writer.response

    response = await writer.finish()
    logger.info(
        "[%s] exported %d rows as %s in %.1f s",
        request[request_id_key],
        writer.rows,
        options.format,
        time.monotonic() - started,
    )
    return response


def _select_rows(
    raws: list[dict[str, Any]],
    query: SpendQuery,
    options: ExportOptions,
    seen: set[str],
    room: int,
) -> list[dict[str, Any]]:
    """Return up to ``room`` lite rows of a batch that pass every filter and were not sent yet."""
    rows: list[dict[str, Any]] = []
    for raw in raws:
        if len(rows) >= room:
            break
        try:
            lite, row = project_entry(raw, False)
        except ValueError:
            continue
        if lite["request_id"] in seen:
            continue
        if not query.matches(lite) or not options.matches(lite):
            continue
        seen.add(lite["request_id"])
        # An export keeps every column, null ones included, so each line has the same keys.
        rows.append({column: row.get(column) for column in COLUMNS})
    return rows
