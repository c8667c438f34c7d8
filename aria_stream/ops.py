"""Operations endpoints: readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing
from datetime import UTC, datetime, timedelta

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aria_stream.appkeys import metrics_key, settings_key, source_key
from aria_stream.errors import UpstreamError
from aria_stream.query import SpendQuery
from aria_stream.upstream import PageEnd

# Maximum wait for LiteLLM's answer to the readiness probe, because the probes of orchestrators
# such as Kubernetes give up after a few seconds themselves.
PROBE_TIMEOUT = 5.0
# The probe counts only the last minute of rows, so LiteLLM answers it from its index at once.
PROBE_WINDOW = timedelta(minutes=1)


async def handle_readyz(request: web.Request) -> web.Response:
    """Serve ``GET /readyz``: 200 when a LiteLLM call succeeded recently, 503 with the reason.

    When no call succeeded within ``ready_max_age`` (an idle instance, or LiteLLM failing), it
    requests one row of the last minute from LiteLLM to decide, waiting ``PROBE_TIMEOUT`` at
    most.
    """
    settings = request.app[settings_key]
    source = request.app[source_key]
    if source.kind == "file":
        return _ready(True, f"streaming the file {source.origin}")
    last_ok = source.last_success
    if (
        source.last_error is None
        and last_ok is not None
        and time.monotonic() - last_ok <= settings.ready_max_age
    ):
        return _ready(True, f"LiteLLM answered {time.monotonic() - last_ok:.0f} s ago")
    timeout = min(PROBE_TIMEOUT, settings.first_byte_timeout + settings.idle_timeout)
    query = SpendQuery(since=datetime.now(UTC) - PROBE_WINDOW)
    try:
        async with asyncio.timeout(timeout):
            async with aclosing(source.iter_pages(query, page_size=1)) as pages:
                async for event in pages:
                    if isinstance(event, PageEnd):
                        break
    except UpstreamError as error:
        return _ready(False, error.message)
    except TimeoutError:
        return _ready(False, f"LiteLLM did not answer within {timeout:g} s")
    return _ready(True, "LiteLLM answered just now")


def _ready(ready: bool, reason: str) -> web.Response:
    body = {"ok": ready, "reason": reason}
    return web.Response(
        body=orjson.dumps(body), status=200 if ready else 503, content_type="application/json"
    )


async def handle_metrics(request: web.Request) -> web.Response:
    """Serve ``GET /metrics`` in the Prometheus text format."""
    metrics = request.app[metrics_key]
    response = web.Response(body=generate_latest(metrics.registry))
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
