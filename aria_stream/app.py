"""The aiohttp application: routes, middlewares, and the upstream source's lifetime."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import web
from pydantic import SecretStr

from aria_stream import api, export, ops, security
from aria_stream.appkeys import (
    metrics_key,
    request_id_key,
    settings_key,
    simulator_key,
    source_key,
    tail_key,
)
from aria_stream.errors import ApiError, UpstreamError, error_body, json_error
from aria_stream.filesource import FileSource
from aria_stream.limits import limit_streams
from aria_stream.metrics import Metrics
from aria_stream.settings import Settings
from aria_stream.simulator import DEFAULT_KEY, Simulator, SimulatorConfig
from aria_stream.stream import handle_stream, stop_streams
from aria_stream.tail import TailService
from aria_stream.upstream import LiteLLMClient, build_http_client

logger = logging.getLogger(__name__)

# NOTE: the viewer is served from the checkout's static/ folder, next to the package, so
# aria_stream runs from a clone or an editable install, not from a built wheel.
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

# The demo simulator answers like a LiteLLM 1.108 proxy with PostgreSQL on 2 cores:
# about 70 ms plus 6 ms per row before the first byte of a page.
DEMO_CONFIG = SimulatorConfig(
    rows=2000, rows_per_second=1.0, flush_interval=2.0, latency_base=0.07, latency_per_row=0.006
)

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give each request an id for log lines, taken from ``X-Request-Id`` when it is sane."""
    given = request.headers.get("X-Request-Id", "")
    request[request_id_key] = (
        given if given.isalnum() and len(given) <= 32 else uuid.uuid4().hex[:12]
    )
    return await handler(request)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render every error of a JSON endpoint in the one error shape.

    An error raised after a response has started (a stream) is re-raised instead, because a
    second response cannot follow. aiohttp then closes the connection.
    """
    try:
        return await handler(request)
    except (ApiError, UpstreamError) as error:
        if request.writer.output_size > 0:
            raise
        return json_error(error)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        body = error_body(error.status, "http_error", error.reason)
        return web.json_response(body, status=error.status)
    except Exception:
        if request.writer.output_size > 0:
            raise
        logger.exception("[%s] unexpected error serving %s", request[request_id_key], request.path)
        body = error_body(500, "internal_error", "aria_stream failed; see its log for details")
        return web.json_response(body, status=500)


@web.middleware
async def security_headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Add the page's security headers to every response."""
    response = await handler(request)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


async def upstream_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the spend-log source for the app's lifetime: a file, LiteLLM, or the simulator."""
    settings = app[settings_key]
    if settings.from_file is not None:
        source = FileSource(settings.from_file)
        source.check()
        app[source_key] = source
        logger.info("Streaming spend logs from the file %s", settings.from_file)
        yield
        return

    simulator: Simulator | None = None
    if settings.litellm_url is None:
        simulator = Simulator(DEMO_CONFIG)
        url = await simulator.start("127.0.0.1", 0)
        settings = settings.model_copy(
            update={"litellm_url": url, "litellm_key": SecretStr(DEFAULT_KEY)}
        )
        app[simulator_key] = simulator
        logger.warning(
            "Demo mode: ARIA_LITELLM_URL is not set, so spend logs come from the embedded "
            "LiteLLM simulator at %s",
            url,
        )
    http = build_http_client(settings)
    client = LiteLLMClient(http, settings, metrics=app[metrics_key])
    client.kind = "simulator" if simulator is not None else "litellm"
    app[source_key] = client
    try:
        yield
    finally:
        await http.aclose()
        if simulator is not None:
            await simulator.stop()


async def tail_ctx(app: web.Application) -> AsyncIterator[None]:
    """Create the live tail (broker and poller) for the source; stop its poller at cleanup."""
    tail = TailService(app[source_key], app[settings_key], app[metrics_key])
    app[tail_key] = tail
    try:
        yield
    finally:
        await tail.close()


async def handle_index(request: web.Request) -> web.FileResponse:
    """Serve the viewer page."""
    return web.FileResponse(STATIC_DIR / "index.html")


def create_app(settings: Settings) -> web.Application:
    """Build the aria_stream application for these settings."""
    app = web.Application(
        middlewares=[
            request_id_middleware,
            security.access_log_middleware,
            security_headers_middleware,
            security.cors_preflight_middleware,
            error_middleware,
            security.auth_middleware,
        ]
    )
    app[settings_key] = settings
    app[metrics_key] = Metrics()
    security.setup_security(app, settings)
    app.cleanup_ctx.append(upstream_ctx)
    app.cleanup_ctx.append(tail_ctx)
    app.on_shutdown.append(stop_streams)
    app.router.add_get("/", handle_index)
    app.router.add_static("/static/", STATIC_DIR, append_version=False)
    app.router.add_get("/api/spend/stream", limit_streams(handle_stream))
    app.router.add_get("/api/spend/logs", api.handle_logs)
    app.router.add_get("/api/spend/export", export.handle_export)
    app.router.add_get("/api/spend/logs/{request_id}", api.handle_entry)
    app.router.add_get("/healthz", api.handle_healthz)
    app.router.add_get("/readyz", ops.handle_readyz)
    app.router.add_get("/metrics", ops.handle_metrics)
    return app
