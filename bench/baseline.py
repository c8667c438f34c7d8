"""The baseline: the earlier dashboard's proxy, which waits for LiteLLM's whole response.

``GET /proxy/<path>?<query>`` sends ``GET <upstream>/<path>?<query>`` with httpx, waits for the
whole body and returns it unchanged. Nothing is parsed or copied on the way, which is the most
efficient form of this design. ``GET /baseline/`` serves the baseline page for the browser
scenario, which fetches through the proxy and renders the table once the body is parsed.

Run as ``python -m bench.baseline --upstream URL --port PORT``.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from aiohttp import web

from aria_stream.simulator import DEFAULT_KEY

STATIC_DIR = Path(__file__).resolve().parent / "static"
client_key = web.AppKey("client", httpx.AsyncClient)


async def handle_proxy(request: web.Request) -> web.Response:
    """Fetch the upstream response whole, then send it on."""
    client = request.app[client_key]
    upstream = await client.get("/" + request.match_info["path"], params=request.query)
    return web.Response(
        body=upstream.content,
        status=upstream.status_code,
        content_type=upstream.headers.get("content-type", "application/json").split(";")[0],
    )


async def handle_health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def handle_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "baseline.html")


def create_app(upstream: str, key: str) -> web.Application:
    app = web.Application()

    async def client_ctx(app: web.Application) -> AsyncIterator[None]:
        # LiteLLM builds a large page for seconds before its first byte, so no read timeout.
        timeout = httpx.Timeout(connect=5.0, read=None, write=30.0, pool=30.0)
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=upstream, headers=headers, timeout=timeout) as client:
            app[client_key] = client
            yield

    app.cleanup_ctx.append(client_ctx)
    app.router.add_get("/healthz", handle_health)
    app.router.add_get("/proxy/{path:.*}", handle_proxy)
    app.router.add_get("/baseline/", handle_page)
    app.router.add_static("/baseline/static/", STATIC_DIR)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="Baseline proxy of the benchmarks.")
    parser.add_argument("--upstream", required=True, help="Base URL of the LiteLLM simulator.")
    parser.add_argument("--key", default=DEFAULT_KEY, help="Key sent to the upstream.")
    parser.add_argument("--port", type=int, required=True, help="Loopback port to listen on.")
    args = parser.parse_args()
    app = create_app(args.upstream, args.key)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
