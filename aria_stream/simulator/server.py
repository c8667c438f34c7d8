"""An aiohttp app that answers LiteLLM's spend-log endpoints over generated rows.

It follows LiteLLM's contract as of 1.108 (``/spend/logs/v2``, ``/spend/logs/ui``, legacy
``/spend/logs``, ``/spend/logs/ui/{request_id}``), including its error bodies, so the real
aria_stream client code runs against it over loopback HTTP. Knobs shape its speed and faults:

1. LiteLLM builds a whole page before sending it, so a page waits ``latency_base`` plus
   ``latency_per_row`` per row before the first byte, then is sent at ``bandwidth`` bytes/s.
   The bandwidth is that of one link: responses sent at the same time share it.
2. New rows (``rows_per_second``) become visible in batches every ``flush_interval`` seconds,
   as LiteLLM's spend-log writer flushes them; a long request shows up after shorter later ones.
3. ``variant`` emulates older proxies: ``ui`` (no v2 route), ``legacy`` (only ``/spend/logs``),
   ``v1.88`` (``metadata`` sent as a JSON string).
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NoReturn

import orjson
from aiohttp import web

from aria_stream.simulator.dataset import FAILURES, RowFactory, SimRow, Variant

logger = logging.getLogger(__name__)

FaultKind = Literal[
    "reset",
    "hang",
    "unauthorized",
    "rate_limit",
    "html_502",
    "html_500",
    "html_200",
    "server_error",
    "truncate",
    "stall",
    "malformed_row",
]
FAULT_KINDS: tuple[str, ...] = FaultKind.__args__  # type: ignore[attr-defined]
LIST_PATHS = ("/spend/logs/v2", "/spend/logs/ui", "/spend/logs")
COUNT_CAP = 10_000
LEGACY_CAP = 10_000
DEFAULT_KEY = "sk-aria-demo"
HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
# A web framework's error page, as sent when the proxy's application crashes.
HTML_500 = (
    b"<!DOCTYPE html><html><head><title>500 Internal Server Error</title></head>"
    b"<body><h1>Internal Server Error</h1><p>The server encountered an internal error and was "
    b"unable to complete your request.</p></body></html>"
)
HTML_LOGIN = (
    b"<!DOCTYPE html><html><head><title>Sign in</title></head>"
    b"<body><form method=post><input name=password></form></body></html>"
)
MALFORMED_ROW = b'{"request_id": "malformed-row", "spend": NaN, "startTime": }'


@dataclass
class Fault:
    """A fault the simulator applies to spend-log requests; ``count`` None means until cleared."""

    kind: FaultKind
    count: int | None = None
    retry_after: float = 5.0


@dataclass
class SimulatorConfig:
    """Knobs of the simulator; every one is also a flag of ``aria-stream simulate``."""

    rows: int = 500
    seed: int = 7
    master_key: str = DEFAULT_KEY
    variant: Variant = "v2"
    max_page_size: int = 1000
    rows_per_second: float = 0.0
    flush_interval: float = 1.0
    bandwidth: float | None = None
    latency_base: float = 0.0
    latency_per_row: float = 0.0
    prompt_bytes: int = 0
    fault: Fault | None = None


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request the simulator received, logged when its handler finished or was cancelled.

    ``at`` is when it was logged and ``started`` when it arrived, both ``time.monotonic()``.
    ``bytes_sent`` counts the response body bytes written to the connection. ``completed`` is
    True only when the whole body was written. It is False when the client went away, when the
    handler was cancelled, or when a fault cut the response short.
    """

    path: str
    query: dict[str, str]
    status: int
    at: float = field(default_factory=time.monotonic)
    completed: bool = False
    bytes_sent: int = 0
    started: float = 0.0


@dataclass(slots=True)
class _Progress:
    """How far the response to one request got; the middleware turns it into a record."""

    status: int = 500
    bytes_sent: int = 0
    completed: bool = False


_progress_key = web.RequestKey("simulator_progress", _Progress)


class Simulator:
    """The simulated proxy: its rows, its app, and its listening socket when started."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.fault = self.config.fault
        self.factory = RowFactory(self.config.seed, self.config.prompt_bytes)
        now = datetime.now(UTC)
        # Ascending by start time, so bisect finds a window; responses read it backwards.
        self._rows: list[SimRow] = list(reversed(self.factory.history(self.config.rows, now)))
        self._starts: list[float] = [row.start.timestamp() for row in self._rows]
        self.requests: deque[RequestRecord] = deque(maxlen=100_000)
        self._handling = 0
        self.produced = 0
        self.app = self._build_app()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._producer: asyncio.Task[None] | None = None
        self._link = _Link(self.config.bandwidth)
        self.host = "127.0.0.1"
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def rows(self) -> list[SimRow]:
        """Every row, visible or not, newest first."""
        return list(reversed(self._rows))

    def visible_rows(self) -> list[SimRow]:
        """Rows a query would see now, newest first."""
        now = time.time()
        return [row for row in reversed(self._rows) if row.visible_at <= now]

    def list_calls(self, since: float = 0.0) -> int:
        """Count the spend-log list requests received after monotonic time ``since``."""
        return sum(
            1 for record in self.requests if record.path in LIST_PATHS and record.at >= since
        )

    async def wait_until_idle(self) -> None:
        """Wait until no request is being handled, so that ``requests`` lists every one.

        A response can reach the client before its handler returns and logs it, so tests call
        this before they read the log. It waits as long as a handler runs (a ``hang`` fault
        runs until the client goes away), so bound it with ``asyncio.timeout``.
        """
        while self._handling:  # noqa: ASYNC110
            await asyncio.sleep(0.005)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0 picks a free port) and return the base URL."""
        self._runner = web.AppRunner(self.app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        self.host = host
        await self._listen(port)
        if self.config.rows_per_second > 0:
            self._producer = asyncio.create_task(self._produce_forever())
        logger.info("LiteLLM simulator listening on %s with %d rows", self.url, len(self._rows))
        return self.url

    async def _listen(self, port: int) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, self.host, port, reuse_address=True)
        await self._site.start()
        self.port = self._runner.addresses[0][1]

    async def stop_listening(self) -> None:
        """Close the listening socket, so new connections are refused, as when LiteLLM is down.

        Open connections are closed too, because a client would otherwise go on sending
        requests over its keep-alive connections.
        """
        if self._site is not None:
            await self._site.stop()
            self._site = None
        if self._runner is not None and self._runner.server is not None:
            for connection in list(self._runner.server.connections):
                connection.force_close()

    async def resume_listening(self) -> None:
        """Listen again on the same port after ``stop_listening``."""
        if self._site is None:
            await self._listen(self.port)

    async def stop(self) -> None:
        """Stop producing rows and close every connection."""
        if self._producer is not None:
            self._producer.cancel()
            await asyncio.gather(self._producer, return_exceptions=True)
            self._producer = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None

    def add_rows(self, rows: Iterable[SimRow]) -> None:
        """Insert rows at their start time; they are visible from their ``visible_at``."""
        for row in rows:
            stamp = row.start.timestamp()
            index = bisect.bisect_right(self._starts, stamp)
            self._starts.insert(index, stamp)
            self._rows.insert(index, row)

    def add_raw(
        self,
        content: dict[str, Any] | bytes,
        start: datetime | None = None,
        *,
        request_id: str | None = None,
    ) -> SimRow:
        """Insert a hand-made row (a dict, or raw bytes sent verbatim) and return its record."""
        row = self.factory.make(start or datetime.now(UTC))
        if isinstance(content, bytes):
            row.raw_bytes = content
        else:
            row.raw = content
            request_id = request_id or str(content.get("request_id", row.request_id))
        row.request_id = request_id or row.request_id
        self.add_rows([row])
        return row

    def produce(
        self, count: int, *, now: datetime | None = None, delay: float = 0.0
    ) -> list[SimRow]:
        """Create ``count`` rows that finished just now and show them after ``delay`` seconds."""
        moment = now or datetime.now(UTC)
        visible_at = time.time() + delay
        rows = []
        for _ in range(count):
            row = self.factory.make(moment)
            row.start = moment - timedelta(milliseconds=row.duration_ms)
            row.visible_at = visible_at
            rows.append(row)
        self.add_rows(rows)
        self.produced += count
        return rows

    async def _produce_forever(self) -> None:
        rate = self.config.rows_per_second
        interval = max(self.config.flush_interval, 0.05)
        owed = 0.0
        while True:
            await asyncio.sleep(interval)
            owed += rate * interval
            count = int(owed)
            owed -= count
            if count:
                self.produce(count)

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._record_middleware])
        app.router.add_get("/spend/logs/v2", self._handle_paged)
        app.router.add_get("/spend/logs/ui", self._handle_paged)
        app.router.add_get("/spend/logs/ui/{request_id}", self._handle_detail)
        app.router.add_get("/spend/logs", self._handle_legacy)
        app.router.add_get("/health/liveliness", self._handle_health)
        app.router.add_get("/_simulator/state", self._handle_state)
        app.router.add_post("/_simulator/fault", self._handle_set_fault)
        app.router.add_delete("/_simulator/fault", self._handle_clear_fault)
        app.router.add_post("/_simulator/rows", self._handle_add_rows)
        app.router.add_get("/_simulator/visible", self._handle_visible)
        app.router.add_get("/_simulator/requests", self._handle_requests)
        return app

    @web.middleware
    async def _record_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        progress = _Progress()
        request[_progress_key] = progress
        started = time.monotonic()
        self._handling += 1
        try:
            response: web.StreamResponse
            try:
                response = await handler(request)
            except _Reply as reply:
                response = reply.response
            except web.HTTPException as error:
                response = _as_response(error)
            if not response.prepared:
                # The body is written here rather than by aiohttp after the middleware returns,
                # so that the record can tell whether all of it went out.
                progress.status = response.status
                await response.prepare(request)
                await response.write_eof()
                body = response.body if isinstance(response, web.Response) else None
                progress.bytes_sent += len(body) if isinstance(body, bytes) else 0
                progress.completed = True
            return response
        finally:
            self._handling -= 1
            self.requests.append(
                RequestRecord(
                    request.path,
                    dict(request.query),
                    progress.status,
                    completed=progress.completed,
                    bytes_sent=progress.bytes_sent,
                    started=started,
                )
            )

    # Handlers.

    async def _handle_paged(self, request: web.Request) -> web.StreamResponse:
        ui = request.path == "/spend/logs/ui"
        variant = self.config.variant
        if variant == "legacy" or (variant == "ui" and not ui):
            raise _not_found()
        self._check_key(request)
        fault = await self._apply_fault(request)
        query = request.query
        start, end = _window(query, accept_date_only=not ui)
        page = _positive_int(query, "page", 1, None)
        page_size = _positive_int(query, "page_size", 50, self.config.max_page_size)
        _check_sort(query)
        rows = self._select(query, start, end)
        sort_key = SORT_KEYS.get(query.get("sort_by", "startTime"))
        if sort_key is not None:
            # Stable, like a sort without a tiebreaker on rows that are already newest first.
            rows.sort(key=sort_key, reverse=True)
        if query.get("sort_order", "desc") == "asc":
            rows.reverse()
        total = min(len(rows), COUNT_CAP)
        chosen = rows[(page - 1) * page_size : page * page_size]
        await asyncio.sleep(self.config.latency_base + self.config.latency_per_row * len(chosen))
        render_as: Variant = "v2"
        if ui:
            render_as = "ui"
        elif variant == "v1.88":
            render_as = "v1.88"
        envelope = {
            "total": total,
            "page": page,
            "page_size": page_size,
            "total_pages": math.ceil(total / page_size) if total else 0,
            "total_is_capped": len(rows) > COUNT_CAP,
        }
        tail = b"]," + orjson.dumps(envelope)[1:]
        parts = [row.render(render_as) for row in chosen]
        return await self._send_rows(request, b'{"data":[', parts, tail, fault)

    async def _handle_legacy(self, request: web.Request) -> web.StreamResponse:
        self._check_key(request)
        fault = await self._apply_fault(request)
        query = request.query
        start_text, end_text = query.get("start_date"), query.get("end_date")
        if start_text and end_text:
            start = _legacy_date(start_text)
            end = _legacy_date(end_text)
            rows = [
                row
                for row in self.visible_rows()
                if start <= row.start <= end and _legacy_match(row, query)
            ]
            if query.get("summarize", "true").lower() != "false":
                return web.json_response(_daily_summary(rows, start, end))
        else:
            rows = [row for row in self.visible_rows() if _legacy_match(row, query)]
        headers = {}
        if len(rows) >= LEGACY_CAP:
            rows = rows[:LEGACY_CAP]
            headers["x-litellm-spend-logs-truncated"] = "true"
        await asyncio.sleep(self.config.latency_base + self.config.latency_per_row * len(rows))
        parts = (row.render("legacy") for row in rows)
        return await self._send_rows(request, b"[", parts, b"]", fault, headers)

    async def _handle_detail(self, request: web.Request) -> web.Response:
        if self.config.variant == "legacy":
            raise _not_found()
        self._check_key(request)
        await self._apply_fault(request)
        request_id = request.match_info["request_id"]
        for row in self.visible_rows():
            if row.request_id == request_id or row.call_id == request_id:
                return web.json_response(row.detail())
        return web.json_response(None)

    async def _handle_health(self, request: web.Request) -> web.Response:
        return web.json_response("I'm alive!")

    async def _handle_state(self, request: web.Request) -> web.Response:
        self._check_key(request)
        return web.json_response(
            {
                "rows": len(self._rows),
                "visible_rows": len(self.visible_rows()),
                "list_calls": self.list_calls(),
                "fault": None if self.fault is None else self.fault.kind,
            }
        )

    async def _handle_set_fault(self, request: web.Request) -> web.Response:
        self._check_key(request)
        body = await request.json()
        kind = body.get("kind")
        if kind not in FAULT_KINDS:
            raise web.HTTPBadRequest(text=f"kind must be one of {', '.join(FAULT_KINDS)}")
        self.fault = Fault(kind, body.get("count"), float(body.get("retry_after", 5.0)))
        return web.json_response({"fault": kind})

    async def _handle_clear_fault(self, request: web.Request) -> web.Response:
        self._check_key(request)
        self.fault = None
        return web.json_response({"fault": None})

    async def _handle_add_rows(self, request: web.Request) -> web.Response:
        self._check_key(request)
        body = await request.json()
        rows = self.produce(int(body.get("count", 1)), delay=float(body.get("delay", 0.0)))
        return web.json_response({"added": len(rows)})

    async def _handle_visible(self, request: web.Request) -> web.Response:
        """List ``[request_id, visible_at]`` of rows made visible from ``?since=`` (Unix time) on.

        Benchmarks compare ``visible_at`` with the time a client received the row.
        """
        self._check_key(request)
        since = _float_param(request, "since")
        now = time.time()
        rows = [
            [row.request_id, row.visible_at] for row in self._rows if since <= row.visible_at <= now
        ]
        return web.json_response({"rows": rows})

    async def _handle_requests(self, request: web.Request) -> web.Response:
        """List the request records logged from ``?since=`` (``time.monotonic()`` seconds) on.

        ``time.monotonic()`` reads the same clock in every process of one Linux machine, so a
        benchmark in another process can count the requests of its own run. A request is logged
        when its handler ends, so ``handling`` counts the requests still running, this one
        included.
        """
        self._check_key(request)
        since = _float_param(request, "since")
        records = [
            {
                "path": record.path,
                "query": record.query,
                "status": record.status,
                "at": record.at,
                "started": record.started,
                "completed": record.completed,
                "bytes_sent": record.bytes_sent,
            }
            for record in self.requests
            if record.at >= since
        ]
        return web.json_response({"requests": records, "handling": self._handling})

    # Helpers.

    def _check_key(self, request: web.Request) -> None:
        header = request.headers.get("Authorization") or request.headers.get("x-litellm-api-key")
        if not header:
            raise _proxy_error(401, "Authentication Error, No api key passed in.", "auth_error")
        token = header[7:] if header.startswith("Bearer ") else header
        if header.startswith("Basic ") or " " in token:
            raise _proxy_error(
                401,
                "Authentication Error, Malformed API Key passed in. Ensure Key has `Bearer ` "
                "prefix.",
                "auth_error",
            )
        if token != self.config.master_key:
            hashed = _sha256(token)
            raise _proxy_error(
                401,
                f"Authentication Error, Invalid proxy server token passed. key={hashed}, not "
                "found in db. Create key via `/key/generate` call.",
                "token_not_found_in_db",
                param="key",
            )

    async def _apply_fault(self, request: web.Request) -> Fault | None:
        fault = self.fault
        if fault is None:
            return None
        if fault.count is not None:
            fault.count -= 1
            if fault.count <= 0:
                self.fault = None
        kind = fault.kind
        if kind == "reset":
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError
        if kind == "hang":
            await _wait_until_closed(request)
            raise asyncio.CancelledError
        if kind == "unauthorized":
            raise _proxy_error(
                401, "Authentication Error, Invalid proxy server token passed.", "auth_error"
            )
        if kind == "rate_limit":
            raise _proxy_error(
                429,
                "Rate limit exceeded for the spend logs route. Try again later.",
                "throttling_error",
                headers={"Retry-After": f"{fault.retry_after:g}"},
            )
        if kind == "html_502":
            raise _Reply(web.Response(status=502, body=HTML_502, content_type="text/html"))
        if kind == "html_500":
            raise _Reply(web.Response(status=500, body=HTML_500, content_type="text/html"))
        if kind == "html_200":
            raise _Reply(web.Response(status=200, body=HTML_LOGIN, content_type="text/html"))
        if kind == "server_error":
            raise _proxy_error(
                500,
                "/spend/logs Error(Database not connected. Connect a database to your proxy)",
                "internal_server_error",
            )
        return fault

    def _select(self, query: Any, start: datetime, end: datetime) -> list[SimRow]:
        low = bisect.bisect_left(self._starts, start.timestamp())
        high = bisect.bisect_right(self._starts, end.timestamp() + 0.999999)
        now = time.time()
        status = query.get("status_filter")
        filters = {
            "model": query.get("model"),
            "model_group": query.get("model_group"),
            "error_code": query.get("error_code"),
            "user_id": query.get("user_id"),
            "request_id": query.get("request_id"),
        }
        chosen = []
        for row in reversed(self._rows[low:high]):
            if row.visible_at > now:
                continue
            if status and ("failure" if row.failed else "success") != status:
                continue
            if filters["model"] and row.profile.model != filters["model"]:
                continue
            if filters["model_group"] and row.profile.group != filters["model_group"]:
                continue
            if filters["error_code"] and not (
                row.failed and _error_code(row) == filters["error_code"]
            ):
                continue
            if filters["user_id"] and row.user != filters["user_id"]:
                continue
            if filters["request_id"] and filters["request_id"] not in (
                row.request_id,
                row.call_id,
            ):
                continue
            chosen.append(row)
        return chosen

    async def _send_rows(
        self,
        request: web.Request,
        head: bytes,
        parts: Iterable[bytes],
        tail: bytes,
        fault: Fault | None,
        headers: dict[str, str] | None = None,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "application/json", **(headers or {})}
        )
        progress = request[_progress_key]
        progress.status = response.status
        await response.prepare(request)
        body = _Throttle(response, self._link, progress)
        await body.write(head)
        cut_after = None
        if fault is not None and fault.kind in ("truncate", "stall"):
            cut_after = 1
        for index, part in enumerate(parts):
            if index:
                await body.write(b",")
            if index == cut_after:
                await body.write(part[: len(part) // 2])
                await body.flush()
                if fault is not None and fault.kind == "stall":
                    await _wait_until_closed(request)
                if request.transport is not None:
                    request.transport.abort()
                return response
            if fault is not None and fault.kind == "malformed_row" and index == 1:
                await body.write(MALFORMED_ROW + b",")
            await body.write(part)
        await body.write(tail)
        await body.flush()
        await response.write_eof()
        progress.completed = True
        return response


class _Link:
    """The network link of every response: ``bandwidth`` bytes per second in all, when set."""

    def __init__(self, bandwidth: float | None) -> None:
        self.bandwidth = bandwidth
        # Monotonic time at which the bytes handed to the link so far have all been sent.
        self.free_at = 0.0

    def reserve(self, size: int) -> float:
        """Queue ``size`` bytes behind the bytes already queued; return seconds until sent."""
        if not self.bandwidth:
            return 0.0
        now = time.monotonic()
        self.free_at = max(self.free_at, now) + size / self.bandwidth
        return self.free_at - now


class _Throttle:
    """Body writer that sends in large blocks, at the pace of the link when it has a bandwidth."""

    BLOCK = 64 * 1024

    def __init__(self, response: web.StreamResponse, link: _Link, progress: _Progress) -> None:
        self.response = response
        self.link = link
        self.progress = progress
        self.pending = bytearray()
        bandwidth = link.bandwidth
        self.block = self.BLOCK if not bandwidth else max(1024, int(bandwidth / 50))

    async def write(self, data: bytes) -> None:
        self.pending += data
        while len(self.pending) >= self.block:
            await self._send(bytes(self.pending[: self.block]))
            del self.pending[: self.block]

    async def flush(self) -> None:
        if self.pending:
            await self._send(bytes(self.pending))
            self.pending.clear()

    async def _send(self, data: bytes) -> None:
        await self.response.write(data)
        self.progress.bytes_sent += len(data)
        delay = self.link.reserve(len(data))
        if delay > 0:
            await asyncio.sleep(delay)


async def _wait_until_closed(request: web.Request) -> None:
    # aiohttp has no event for a peer that went away, so the transport is polled.
    while request.transport is not None and not request.transport.is_closing():  # noqa: ASYNC110
        await asyncio.sleep(0.05)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _error_code(row: SimRow) -> str:
    if row.raw is not None:
        return ""
    return FAILURES[row.profile.failure][0]


class _Reply(Exception):
    """A finished error response that a handler raises and the middleware returns."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def _proxy_error(
    status: int,
    message: str,
    error_type: str,
    *,
    param: str | None = "None",
    headers: dict[str, str] | None = None,
) -> _Reply:
    """Build LiteLLM's proxy error: ``{"error": {message, type, param, code}}``."""
    body = {"error": {"message": message, "type": error_type, "param": param, "code": str(status)}}
    return _Reply(web.json_response(body, status=status, headers=headers))


def _as_response(error: web.HTTPException) -> web.Response:
    """Copy an aiohttp HTTP exception into a plain response that the middleware can send."""
    headers = {
        name: value for name, value in error.headers.items() if name.lower() != "content-length"
    }
    return web.Response(status=error.status, reason=error.reason, body=error.body, headers=headers)


def _not_found() -> _Reply:
    # aiohttp deprecates ``body=`` on its HTTP exceptions, so error bodies go out as responses.
    return _Reply(
        web.Response(status=404, body=b'{"detail":"Not Found"}', content_type="application/json")
    )


def _validation_error(param: str, message: str, value: str, kind: str, ctx: Any = None) -> NoReturn:
    detail: dict[str, Any] = {"type": kind, "loc": ["query", param], "msg": message, "input": value}
    if ctx is not None:
        detail["ctx"] = ctx
    raise _Reply(
        web.Response(
            status=422, body=orjson.dumps({"detail": [detail]}), content_type="application/json"
        )
    )


def _positive_int(query: Any, name: str, default: int, maximum: int | None) -> int:
    text = query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        _validation_error(
            name,
            "Input should be a valid integer, unable to parse string as an integer",
            text,
            "int_parsing",
        )
    if value < 1:
        _validation_error(
            name,
            "Input should be greater than or equal to 1",
            text,
            "greater_than_equal",
            {"ge": 1},
        )
    if maximum is not None and value > maximum:
        _validation_error(
            name,
            f"Input should be less than or equal to {maximum}",
            text,
            "less_than_equal",
            {"le": maximum},
        )
    return value


def _float_param(request: web.Request, name: str) -> float:
    """Read a finite float query parameter of a control endpoint; 0 when it is absent."""
    text = request.query.get(name, "0")
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise web.HTTPBadRequest(text=f"{name} must be a number, got {text!r}")
    return value


def _window(query: Any, *, accept_date_only: bool) -> tuple[datetime, datetime]:
    start_text, end_text = query.get("start_date"), query.get("end_date")
    if not start_text or not end_text:
        raise _proxy_error(400, "Start date and end date are required", "bad_request")
    return (
        _parse_date(start_text, accept_date_only),
        _parse_date(end_text, accept_date_only),
    )


def _parse_date(text: str, accept_date_only: bool) -> datetime:
    formats = ["%Y-%m-%d %H:%M:%S"] + (["%Y-%m-%d"] if accept_date_only else [])
    for pattern in formats:
        try:
            return datetime.strptime(text, pattern).replace(tzinfo=UTC)
        except ValueError:
            continue
    expected = " or ".join(f.replace("%", "") for f in formats)
    raise _proxy_error(
        400, f"Invalid date format: {text}. Expected: {expected}", "internal_server_error"
    )


def _legacy_date(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError as error:
        raise _proxy_error(500, f"/spend/logs Error({error})", "internal_server_error") from error


# Sort keys of ``sort_by``. ``startTime`` is the order rows are kept in, and ``ttft_ms`` (time
# to first token) is not generated, so both keep that order.
SORT_KEYS: dict[str, Callable[[SimRow], Any]] = {
    "endTime": lambda row: row.end,
    "spend": lambda row: row.spend,
    "total_tokens": lambda row: row.prompt_tokens + row.completion_tokens,
    "request_duration_ms": lambda row: row.duration_ms,
    "model": lambda row: row.profile.model,
}


def _check_sort(query: Any) -> None:
    allowed = {"spend", "total_tokens", "startTime", "endTime", "request_duration_ms", "model"}
    sort_by = query.get("sort_by")
    if sort_by is not None and sort_by not in allowed | {"ttft_ms"}:
        raise _proxy_error(400, f"Invalid sort_by: {sort_by}", "bad_request", param="sort_by")
    order = query.get("sort_order")
    if order is not None and order not in ("asc", "desc"):
        raise _proxy_error(400, f"Invalid sort_order: {order}", "bad_request", param="sort_order")


def _legacy_match(row: SimRow, query: Any) -> bool:
    request_id = query.get("request_id")
    if request_id and request_id not in (row.request_id, row.call_id):
        return False
    user_id = query.get("user_id")
    return not (user_id and row.user != user_id)


def _daily_summary(rows: list[SimRow], start: datetime, end: datetime) -> list[dict[str, Any]]:
    days: dict[str, dict[str, Any]] = {}
    for row in rows:
        day = row.start.strftime("%Y-%m-%d")
        entry = days.setdefault(day, {"startTime": day, "spend": 0.0, "users": {}, "models": {}})
        entry["spend"] += row.spend
        entry["users"][row.user] = entry["users"].get(row.user, 0.0) + row.spend
        model = row.profile.model
        entry["models"][model] = entry["models"].get(model, 0.0) + row.spend
        # LiteLLM puts each key's total at the top level of the day, named by the key's hash.
        entry[row.api_key] = entry.get(row.api_key, 0.0) + row.spend
    summary = [days[day] for day in sorted(days)]
    if summary:
        moment = datetime.strptime(summary[-1]["startTime"], "%Y-%m-%d").replace(tzinfo=UTC)
        while moment < end:
            moment += timedelta(days=1)
            summary.append(
                {"startTime": moment.strftime("%Y-%m-%d"), "spend": 0, "users": {}, "models": {}}
            )
    return summary
