"""Reading spend logs from a LiteLLM proxy with httpx, parsing each body while it arrives.

Choices that follow LiteLLM's behaviour:

1. Endpoints are tried in the order ``/spend/logs/v2`` (LiteLLM 1.80 and later),
   ``/spend/logs/ui`` (paginated since 1.59), then legacy ``/spend/logs`` (one unpaged array).
   A 404 moves to the next one, and the one that responded is remembered for the process.
2. Pages are asked with ``page``/``page_size`` from 1 and read until a page comes back empty or
   short. ``total_pages`` is not trusted because LiteLLM 1.93 caps ``total`` at 10,000.
3. Page size 1000 is asked first; before LiteLLM 1.95 the maximum was 100, answered with a 422,
   and the client then drops to 100 for good.
4. The first page of a backfill is small and later pages double, because LiteLLM builds each
   page completely before its first byte (about 70 ms plus 6 ms per row on a 2-core machine).
5. Dates go out as ``YYYY-MM-DD HH:MM:SS`` in UTC, the only format both v2 and ui accept.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
import orjson

from aria_stream.errors import (
    UpstreamAuthError,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamNotFound,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
    UpstreamTimeout,
    UpstreamTruncated,
    UpstreamUnreachable,
)
from aria_stream.jsonrows import BodyError, MalformedRow, NotJSONBody, RowSplitter, excerpt_of
from aria_stream.metrics import Metrics
from aria_stream.query import SpendQuery, litellm_date
from aria_stream.redact import redact, redact_bytes
from aria_stream.settings import Settings

logger = logging.getLogger(__name__)

Endpoint = Literal["v2", "ui", "legacy"]

ENDPOINT_PATHS: dict[Endpoint, str] = {
    "v2": "/spend/logs/v2",
    "ui": "/spend/logs/ui",
    "legacy": "/spend/logs",
}
OLD_MAX_PAGE_SIZE = 100
# Error bodies are read up to this size for their message; the rest is not needed.
ERROR_BODY_LIMIT = 64 * 1024
# Wide enough for any spend log when a request id lookup needs a date window (v2 demands one).
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class PageStart:
    """A page's response headers arrived; ``endpoint`` is the variant that responded."""

    endpoint: Endpoint
    page: int | None
    page_size: int | None


@dataclass(frozen=True, slots=True)
class RowBatch:
    """Rows parsed from one or more body chunks, in upstream order, duplicates removed."""

    rows: list[dict[str, Any]]
    malformed: list[MalformedRow] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PageEnd:
    """A page's body was read to its end; ``total`` is LiteLLM's count when it sent one.

    ``rows`` counts the page's elements, malformed ones included.
    """

    rows: int
    total: int | None
    total_is_capped: bool


PageEvent = PageStart | RowBatch | PageEnd


def build_http_client(settings: Settings) -> httpx.AsyncClient:
    """Create the one httpx client of an app, with the key as a bearer token."""
    headers = {"Accept": "application/json"}
    if settings.litellm_key is not None:
        headers["Authorization"] = f"Bearer {settings.litellm_key.get_secret_value()}"
    # Read timeouts are enforced per phase in LiteLLMClient (first byte, then idle between
    # chunks), so httpx's own read timeout is off.
    timeout = httpx.Timeout(connect=settings.connect_timeout, read=None, write=30.0, pool=30.0)
    limits = httpx.Limits(max_connections=20, max_keepalive_connections=10)
    return httpx.AsyncClient(
        base_url=settings.litellm_url or "", headers=headers, timeout=timeout, limits=limits
    )


class LiteLLMClient:
    """Spend-log reader for one LiteLLM proxy; remembers the endpoint and page size that work."""

    def __init__(
        self, http: httpx.AsyncClient, settings: Settings, *, metrics: Metrics | None = None
    ) -> None:
        self.metrics = metrics
        self.kind = "litellm"
        self.origin = http.base_url.host
        self.http = http
        self.settings = settings
        self.endpoint: Endpoint | None = None
        self.max_page_size = settings.page_size
        # False once the proxy rejected a sort_by parameter.
        self.sorts = True
        self.last_success: float | None = None
        self.last_error: UpstreamError | None = None

    @property
    def filters_upstream(self) -> bool:
        """Whether LiteLLM applies our filters and offsets; legacy /spend/logs does not."""
        return self.endpoint != "legacy"

    @property
    def base_url(self) -> str:
        return str(self.http.base_url).rstrip("/")

    def window(self, query: SpendQuery, now: datetime | None = None) -> tuple[datetime, datetime]:
        """Return the ``(since, until)`` window a backfill reads when the query leaves it open."""
        until = query.until or (now or datetime.now(UTC))
        since = query.since or (until - timedelta(hours=self.settings.lookback_hours))
        return since, until

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
        """Yield page events for rows matching ``query``, newest first, starting at ``offset``.

        ``sort_by`` names a column for LiteLLM to sort by, descending, in place of ``startTime``.
        When the proxy rejects the parameter, the page is requested again without it, and later
        requests leave it out.

        Every page contains ``page_size`` rows when it is given. Otherwise the first page contains
        ``first_page_size`` rows (by default the setting of that name) and later pages grow.

        ``expected_rows`` is how many rows the caller expects to read. While a page streams,
        the next one is requested if it starts within them, so LiteLLM builds it meanwhile.
        NOTE: when the rows end before ``expected_rows``, the request for the page after the
        last one is sent and then discarded.

        Rows are yielded as soon as they are parsed, so a caller sees the first row of a page
        while the rest of it is still arriving. The caller stops whenever it has enough rows;
        use ``contextlib.aclosing`` so that the open response is closed at once. A failure
        raises an ``UpstreamError`` after every row read before it has been yielded.
        """
        since, until = self.window(query, now)
        seen: set[str] = set()
        size = page_size or first_page_size or self.settings.first_page_size
        fixed_size = page_size is not None
        end = None if expected_rows is None else offset + expected_rows
        ahead: _Prefetch | None = None
        try:
            while True:
                size = min(size, self.max_page_size)
                page = offset // size + 1
                skip = offset % size
                sort = sort_by if self.sorts else None
                params = _page_params(query, since, until, page, size, sort)
                try:
                    if ahead is not None and ahead.params == params:
                        endpoint, response = await ahead.task
                    else:
                        if ahead is not None:
                            await ahead.discard()
                        endpoint, response = await self._open(params)
                except (_PageSizeTooLarge, _SortRejected):
                    # The page is requested again with the size or order the proxy accepts.
                    continue
                finally:
                    ahead = None
                try:
                    if endpoint == "legacy":
                        yield PageStart(endpoint, None, None)
                        async with aclosing(self._read_body(response, seen, skip=offset)) as events:
                            async for event in events:
                                yield event
                        return
                    next_offset = page * size
                    next_size = size if fixed_size else self._next_page_size(size, next_offset)
                    if end is not None and next_offset < end:
                        following = _page_params(
                            query, since, until, next_offset // next_size + 1, next_size, sort
                        )
                        ahead = _Prefetch(following, asyncio.create_task(self._open(following)))
                    yield PageStart(endpoint, page, size)
                    page_rows = 0
                    async with aclosing(self._read_body(response, seen, skip=skip)) as events:
                        async for event in events:
                            if isinstance(event, PageEnd):
                                page_rows = event.rows
                            yield event
                finally:
                    await response.aclose()
                if page_rows < size:
                    return
                offset, size = next_offset, next_size
        finally:
            if ahead is not None:
                await ahead.discard()

    def _next_page_size(self, size: int, offset: int) -> int:
        doubled = size * 2
        if doubled <= self.max_page_size and offset % doubled == 0:
            return doubled
        return size

    async def fetch_entry(self, request_id: str) -> dict[str, Any] | None:
        """Return the raw row with this request id, with the heavy columns when LiteLLM has them."""
        params = {
            "request_id": request_id,
            "start_date": litellm_date(EPOCH),
            "end_date": litellm_date(datetime.now(UTC) + timedelta(days=1)),
            "page": "1",
            "page_size": "1",
        }
        row: dict[str, Any] | None = None
        endpoint, response = await self._open(params)
        try:
            async with aclosing(self._read_body(response, set(), skip=0)) as events:
                async for event in events:
                    if not isinstance(event, RowBatch):
                        continue
                    row = next(
                        (item for item in event.rows if item.get("request_id") == request_id),
                        None,
                    )
                    if row is not None:
                        break
        finally:
            await response.aclose()
        if row is None:
            return None
        if endpoint != "legacy" and "proxy_server_request" not in row:
            row.update(await self._fetch_heavy_columns(request_id))
        return row

    async def _fetch_heavy_columns(self, request_id: str) -> dict[str, Any]:
        path = f"{ENDPOINT_PATHS['ui']}/{request_id}"
        try:
            async with asyncio.timeout(self.settings.first_byte_timeout):
                response = await self.http.get(path)
        except (httpx.HTTPError, TimeoutError) as error:
            logger.warning("Could not fetch prompt and response of %s: %s", request_id, error)
            return {}
        if response.status_code != 200:
            return {}
        try:
            heavy = response.json()
        except ValueError:
            return {}
        if not isinstance(heavy, dict):
            return {}
        keys = ("messages", "response", "proxy_server_request")
        return {key: heavy[key] for key in keys if key in heavy}

    async def _open(self, params: dict[str, str]) -> tuple[Endpoint, httpx.Response]:
        """Open a streaming 200 response on the first endpoint that exists; the caller closes it.

        Raise ``_PageSizeTooLarge`` after lowering ``max_page_size`` when the proxy only
        accepts 100 rows per page, and an ``UpstreamError`` for any other failure.
        """
        candidates: list[Endpoint] = (
            [self.endpoint] if self.endpoint is not None else ["v2", "ui", "legacy"]
        )
        size = int(params.get("page_size", "0"))
        for endpoint in candidates:
            response = await self._send(endpoint, params)
            status = response.status_code
            if status == 200:
                self._remember(endpoint)
                return endpoint, response
            if status == 404 and endpoint != "legacy" and self.endpoint is None:
                await response.aclose()
                logger.info("LiteLLM has no %s; trying the next endpoint", ENDPOINT_PATHS[endpoint])
                continue
            body = await self._read_error_body(response)
            if status == 422 and size > OLD_MAX_PAGE_SIZE and _is_page_size_limit(body):
                logger.warning(
                    "LiteLLM allows at most %d rows per page; using that from now on",
                    OLD_MAX_PAGE_SIZE,
                )
                self.max_page_size = OLD_MAX_PAGE_SIZE
                # Only an existing route validates its parameters, so this endpoint is the one.
                self._remember(endpoint)
                raise _PageSizeTooLarge
            if status == 400 and "sort_by" in params and _is_sort_rejected(body):
                logger.warning(
                    "LiteLLM rejected sort_by=%s; reading in its default order from now on",
                    params["sort_by"],
                )
                self.sorts = False
                self._remember(endpoint)
                raise _SortRejected
            if status == 404:
                break
            raise self._error_for(response, body)
        raise self._note(
            UpstreamNotFound(
                f"LiteLLM at {self.base_url} has none of /spend/logs/v2, /spend/logs/ui "
                "or /spend/logs; check that ARIA_LITELLM_URL points at the proxy itself.",
                status=404,
            )
        )

    def _remember(self, endpoint: Endpoint) -> None:
        if self.endpoint is None:
            logger.info("Reading spend logs from %s", ENDPOINT_PATHS[endpoint])
            self.endpoint = endpoint

    async def _send(self, endpoint: Endpoint, params: dict[str, str]) -> httpx.Response:
        """Send one request and record its outcome and latency in the metrics."""
        started = time.monotonic()
        try:
            response = await self._send_request(endpoint, params)
        except UpstreamError as error:
            self._observe(endpoint, error.kind, started)
            raise
        self._observe(endpoint, str(response.status_code), started)
        return response

    def _observe(self, endpoint: Endpoint, outcome: str, started: float) -> None:
        if self.metrics is None:
            return
        self.metrics.upstream_requests.labels(endpoint, outcome).inc()
        self.metrics.upstream_latency.labels(endpoint).observe(time.monotonic() - started)

    async def _send_request(self, endpoint: Endpoint, params: dict[str, str]) -> httpx.Response:
        if endpoint == "legacy":
            # Legacy dates switch the answer to daily totals, and its filters differ, so it is
            # read without them and filtered locally; only a request id lookup is passed on.
            params = {key: value for key, value in params.items() if key == "request_id"}
        request = self.http.build_request("GET", ENDPOINT_PATHS[endpoint], params=params)
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.settings.first_byte_timeout):
                response = await self.http.send(request, stream=True)
        except TimeoutError as error:
            raise self._note(
                UpstreamTimeout(
                    f"LiteLLM at {self.base_url} sent no response headers within "
                    f"{self.settings.first_byte_timeout:g} s; raise ARIA_FIRST_BYTE_TIMEOUT or "
                    "ask for fewer rows.",
                )
            ) from error
        except httpx.ConnectTimeout as error:
            raise self._note(
                UpstreamTimeout(
                    f"Connecting to LiteLLM at {self.base_url} timed out after "
                    f"{self.settings.connect_timeout:g} s; check the host and the network.",
                )
            ) from error
        except httpx.ConnectError as error:
            raise self._note(self._unreachable(error)) from error
        except (httpx.RemoteProtocolError, httpx.ReadError) as error:
            raise self._note(
                UpstreamUnreachable(
                    f"LiteLLM at {self.base_url} closed the connection before answering "
                    f"({type(error).__name__}); check that the proxy is running.",
                )
            ) from error
        logger.debug(
            "GET %s -> %d in %.0f ms",
            ENDPOINT_PATHS[endpoint],
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        return response

    def _unreachable(self, error: httpx.ConnectError) -> UpstreamUnreachable:
        # httpx wraps the OS error, sometimes twice ("All connection attempts failed"), so the
        # cause is found by its type along the exception chain rather than in the text.
        causes = _exception_chain(error)
        text = str(error)
        if any(isinstance(cause, socket.gaierror) for cause in causes):
            reason = "its host name could not be resolved"
        elif any(isinstance(cause, ConnectionRefusedError) for cause in causes):
            reason = "the connection was refused"
        else:
            reason = f"the connection failed ({text or type(error).__name__})"
        return UpstreamUnreachable(
            f"Cannot reach LiteLLM at {self.base_url}: {reason}; check ARIA_LITELLM_URL and "
            "that the proxy is running."
        )

    async def _read_error_body(self, response: httpx.Response) -> bytes:
        body = bytearray()
        try:
            async with asyncio.timeout(self.settings.idle_timeout):
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) >= ERROR_BODY_LIMIT:
                        break
        except (httpx.HTTPError, TimeoutError):
            pass
        finally:
            await response.aclose()
        return bytes(body)

    def _error_for(self, response: httpx.Response, body: bytes) -> UpstreamError:
        status = response.status_code
        # Redacted before the message is cut, so that no start of the key is left behind.
        detail = _error_message(redact_bytes(body), response.headers.get("content-type", ""))
        where = f"LiteLLM at {self.base_url}"
        error: UpstreamError
        if status in (401, 403):
            error = UpstreamAuthError(
                f"{where} rejected the key with {status} ({detail}); set ARIA_LITELLM_KEY to a "
                "key that may read spend logs, such as the master key.",
                status=status,
            )
        elif status == 429:
            retry_after = _retry_after(response.headers.get("retry-after"))
            wait = f"retry after {retry_after:g} s" if retry_after is not None else "retry later"
            error = UpstreamRateLimited(
                f"{where} is rate limiting us with 429 ({detail}); {wait}.",
                status=status,
                retry_after=retry_after,
            )
        elif status in (400, 422):
            error = UpstreamRejected(
                f"{where} rejected the query with {status} ({detail}); check the filter values.",
                status=status,
            )
        elif status >= 500:
            error = UpstreamServerError(
                f"{where} failed with {status} ({detail}); check the proxy's logs and database.",
                status=status,
            )
        else:
            error = UpstreamBadResponse(
                f"{where} answered with unexpected status {status} ({detail}).", status=status
            )
        return self._note(error)

    async def _read_body(
        self, response: httpx.Response, seen: set[str], *, skip: int
    ) -> AsyncGenerator[RowBatch | PageEnd, None]:
        content_type = response.headers.get("content-type", "")
        if "html" in content_type:
            body = await self._read_error_body(response)
            raise self._note(
                UpstreamBadResponse(
                    f"LiteLLM at {self.base_url} answered with an HTML page instead of JSON "
                    f"({excerpt_of(redact_bytes(body))!r}); check that ARIA_LITELLM_URL is the "
                    "proxy, not a login page or gateway.",
                    status=response.status_code,
                )
            )
        splitter = RowSplitter()
        chunks = response.aiter_bytes()
        rows_in_page = 0
        try:
            while True:
                try:
                    async with asyncio.timeout(self.settings.idle_timeout):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    items = splitter.close()
                    last = True
                else:
                    items = splitter.feed(chunk)
                    last = False
                rows, malformed = [], []
                for item in items:
                    # A malformed row takes a place in LiteLLM's page too, so it counts both for
                    # the offset and for telling a full page from the short last one.
                    rows_in_page += 1
                    if skip > 0:
                        skip -= 1
                        continue
                    if isinstance(item, MalformedRow):
                        malformed.append(item)
                        continue
                    request_id = item.get("request_id")
                    if isinstance(request_id, str):
                        if request_id in seen:
                            continue
                        seen.add(request_id)
                    rows.append(item)
                if rows or malformed:
                    yield RowBatch(rows, malformed)
                if last:
                    break
        except TimeoutError as error:
            raise self._note(
                UpstreamTimeout(
                    f"LiteLLM at {self.base_url} stopped sending for {self.settings.idle_timeout:g}"
                    f" s in the middle of a response, after {rows_in_page} rows; raise "
                    "ARIA_IDLE_TIMEOUT if the proxy is slow.",
                )
            ) from error
        except NotJSONBody as error:
            raise self._note(
                UpstreamBadResponse(
                    f"LiteLLM at {self.base_url} answered with a body that is not JSON "
                    f"({error.excerpt!r}); check that ARIA_LITELLM_URL is the proxy.",
                    status=response.status_code,
                )
            ) from error
        except BodyError as error:
            raise self._note(
                UpstreamTruncated(
                    f"LiteLLM at {self.base_url} sent an incomplete body ({error}); the rows "
                    "before the cut were kept and the rest will be read again.",
                    status=response.status_code,
                )
            ) from error
        except (httpx.RemoteProtocolError, httpx.ReadError) as error:
            raise self._note(
                UpstreamTruncated(
                    f"LiteLLM at {self.base_url} closed the connection in the middle of a "
                    f"response after {rows_in_page} rows ({type(error).__name__}); the rows "
                    "before the cut were kept.",
                    status=response.status_code,
                )
            ) from error
        self.last_success = time.monotonic()
        self.last_error = None
        total = splitter.envelope.get("total")
        yield PageEnd(
            rows=rows_in_page,
            total=total if isinstance(total, int) and not isinstance(total, bool) else None,
            total_is_capped=splitter.envelope.get("total_is_capped") is True,
        )

    def _note(self, error: UpstreamError) -> UpstreamError:
        # An error body can echo our request, key included, and the message reaches viewers.
        error.message = redact(error.message)
        error.args = (error.message,)
        self.last_error = error
        logger.warning("Upstream error (%s): %s", error.kind, error.message)
        return error


class _PageSizeTooLarge(Exception):
    """The proxy rejected the page size; ``max_page_size`` was lowered to what it accepts."""


class _SortRejected(Exception):
    """The proxy rejected ``sort_by`` or ``sort_order``; ``sorts`` was set to False."""


def _is_sort_rejected(body: bytes) -> bool:
    try:
        error = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return False
    return isinstance(error, dict) and error.get("param") in ("sort_by", "sort_order")


def _is_page_size_limit(body: bytes) -> bool:
    try:
        detail = orjson.loads(body).get("detail")
    except (orjson.JSONDecodeError, AttributeError):
        return False
    if not isinstance(detail, list):
        return False
    return any(
        isinstance(item, dict)
        and "page_size" in (item.get("loc") or [])
        and str(OLD_MAX_PAGE_SIZE) in str(item.get("msg", ""))
        for item in detail
    )


def _error_message(body: bytes, content_type: str) -> str:
    """Extract LiteLLM's message from either error shape, or an excerpt of a non-JSON body."""
    if not body:
        return "empty body"
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        kind = "HTML page" if "html" in content_type or body.lstrip()[:1] == b"<" else "body"
        return f"{kind}: {excerpt_of(body)}"
    if isinstance(document, dict):
        error = document.get("error")
        if isinstance(error, dict):
            message = error.get("message")
            if isinstance(message, dict):
                message = message.get("error") or orjson.dumps(message).decode()
            if message:
                return _shorten(str(message))
        if isinstance(error, str):
            return _shorten(error)
        detail = document.get("detail")
        if isinstance(detail, list):
            parts = [
                f"{'.'.join(str(part) for part in item.get('loc', []))}: {item.get('msg')}"
                for item in detail
                if isinstance(item, dict)
            ]
            return _shorten("; ".join(parts) or "validation error")
        if detail is not None:
            return _shorten(detail if isinstance(detail, str) else orjson.dumps(detail).decode())
    return _shorten(excerpt_of(body))


def _exception_chain(error: BaseException) -> list[BaseException]:
    """Return ``error`` and every exception it was raised from or while handling, in order."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _shorten(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _page_params(
    query: SpendQuery,
    since: datetime,
    until: datetime,
    page: int,
    size: int,
    sort_by: str | None,
) -> dict[str, str]:
    params = {
        "start_date": litellm_date(since),
        "end_date": litellm_date(until),
        "page": str(page),
        "page_size": str(size),
        **query.upstream_params(),
    }
    if sort_by is not None:
        params["sort_by"] = sort_by
        params["sort_order"] = "desc"
    return params


@dataclass(slots=True)
class _Prefetch:
    """The request for the next page, sent while the current page streams."""

    params: dict[str, str]
    task: asyncio.Task[tuple[Endpoint, httpx.Response]]

    async def discard(self) -> None:
        """Cancel the request, or close its response if it has one."""
        self.task.cancel()
        try:
            _, response = await self.task
        except asyncio.CancelledError:
            if not self.task.cancelled():
                raise
            return
        except Exception:
            # The caller no longer reads this page, so its failure is not the caller's error.
            return
        await response.aclose()
