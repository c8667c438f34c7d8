"""JSON endpoints: a page of spend logs, one full row, and the health check."""

from __future__ import annotations

import logging
import re
from contextlib import aclosing
from typing import Any

import orjson
from aiohttp import web

from aria_stream.appkeys import settings_key, source_key
from aria_stream.backfill import project_entry
from aria_stream.errors import ApiError, invalid_parameter
from aria_stream.events import encode_json
from aria_stream.models import project_full
from aria_stream.params import LogsParams, parse_params
from aria_stream.query import SpendQuery
from aria_stream.source import SpendSource
from aria_stream.upstream import PageStart, RowBatch

logger = logging.getLogger(__name__)

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:\-]{1,200}$")


def json_response(body: Any, request: web.Request, *, status: int = 200) -> web.Response:
    """Render ``body`` as JSON, gzip-compressed when the client accepts it."""
    response = web.Response(text=encode_json(body), status=status, content_type="application/json")
    response.enable_compression()
    return response


async def handle_logs(request: web.Request) -> web.Response:
    """Serve ``GET /api/spend/logs?limit=&offset=``: one page of rows, newest first."""
    params = parse_params(LogsParams, request.query)
    source = request.app[source_key]
    max_bytes = request.app[settings_key].max_event_bytes
    query = params.to_query()
    # A source that filters upstream also counts the offset upstream; otherwise the offset
    # counts rows after local filtering, so the pages stay consistent.
    upstream_offset = params.offset if source.filters_upstream else 0
    try:
        rows = await _read_page(
            source, query, params, upstream_offset=upstream_offset, max_bytes=max_bytes
        )
    except _OffsetNotApplicable:
        # The first request to LiteLLM found only legacy /spend/logs, which ignores filters.
        rows = await _read_page(source, query, params, upstream_offset=0, max_bytes=max_bytes)
    has_next = len(rows) > params.limit
    body = {
        "data": rows[: params.limit],
        "limit": params.limit,
        "offset": params.offset,
        "next_offset": params.offset + params.limit if has_next else None,
    }
    return json_response(body, request)


class _OffsetNotApplicable(Exception):
    """The source turned out not to filter upstream, so an upstream offset skips wrong rows."""


async def _read_page(
    source: SpendSource,
    query: SpendQuery,
    params: LogsParams,
    *,
    upstream_offset: int,
    max_bytes: int,
) -> list[dict[str, Any]]:
    """Read up to ``limit + 1`` matching rows from ``params.offset`` on.

    Raise ``_OffsetNotApplicable`` when ``upstream_offset`` was passed to a source whose first
    response showed that it does not filter upstream, because it then skips unfiltered rows.
    """
    wanted = params.limit + 1
    local_skip = params.offset - upstream_offset
    rows: list[dict[str, Any]] = []
    pages = source.iter_pages(query, offset=upstream_offset, page_size=min(wanted, 1000))
    async with aclosing(pages) as events:
        async for event in events:
            if isinstance(event, PageStart) and upstream_offset and not source.filters_upstream:
                raise _OffsetNotApplicable
            if not isinstance(event, RowBatch):
                continue
            for raw in event.rows:
                try:
                    lite, row = project_entry(raw, params.full, max_bytes=max_bytes)
                except ValueError:
                    continue
                if not query.matches(lite):
                    continue
                if local_skip:
                    local_skip -= 1
                    continue
                rows.append(row)
            if len(rows) >= wanted:
                break
    return rows


async def handle_entry(request: web.Request) -> web.Response:
    """Serve ``GET /api/spend/logs/{request_id}``: one row in full form."""
    request_id = request.match_info["request_id"]
    if not REQUEST_ID_PATTERN.match(request_id):
        raise invalid_parameter(
            "request_id", request_id, "1 to 200 letters, digits, '.', '_', ':' or '-'"
        )
    raw = await request.app[source_key].fetch_entry(request_id)
    if raw is None:
        raise ApiError(
            404,
            "not_found",
            f"no spend log has request id {request_id!r}",
            param="request_id",
            value=request_id,
        )
    max_bytes = request.app[settings_key].max_event_bytes
    return json_response(project_full(raw, max_bytes=max_bytes), request)


async def handle_healthz(request: web.Request) -> web.Response:
    """Serve ``GET /healthz``: the process is up and serving requests."""
    return web.Response(body=orjson.dumps({"ok": True}), content_type="application/json")
