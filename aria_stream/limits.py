"""Limits on open streams, in total and per client address, and how a client address is read."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from aria_stream.errors import error_body
from aria_stream.settings import Settings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Seconds a client is asked to wait before opening a stream again after a 503 or 429.
STREAM_RETRY_AFTER = 10


def client_address(request: web.Request, settings: Settings) -> str:
    """Return the client's IP address: the peer, or behind a proxy the last forwarded address.

    The last ``X-Forwarded-For`` entry is the one the proxy appended itself; the entries before
    it come from the client and can be forged.
    """
    if settings.behind_proxy:
        forwarded = request.headers.getall("X-Forwarded-For", [])
        entries = [part.strip() for value in forwarded for part in value.split(",")]
        entries = [entry for entry in entries if entry]
        if entries:
            return entries[-1][:64]
    return request.remote or "unknown"


def is_https(request: web.Request, settings: Settings) -> bool:
    """Check whether the client reached us over https, directly or through the proxy."""
    if request.secure:
        return True
    if settings.behind_proxy:
        forwarded = request.headers.get("X-Forwarded-Proto", "")
        return forwarded.split(",")[-1].strip().lower() == "https"
    return False


class StreamLimiter:
    """Counts open streams in total and per client address."""

    def __init__(self, max_streams: int, max_per_client: int) -> None:
        self.max_streams = max_streams
        self.max_per_client = max_per_client
        self.total = 0
        self.per_client: dict[str, int] = {}

    def refusal(self, address: str) -> web.Response | None:
        """Return the 503 or 429 response when a new stream from ``address`` is over a limit."""
        headers = {"Retry-After": str(STREAM_RETRY_AFTER)}
        if self.total >= self.max_streams:
            body = error_body(
                503,
                "too_many_streams",
                f"the server has its maximum of {self.max_streams} open streams; "
                f"try again in {STREAM_RETRY_AFTER} s",
            )
            return web.json_response(body, status=503, headers=headers)
        if self.per_client.get(address, 0) >= self.max_per_client:
            body = error_body(
                429,
                "too_many_streams",
                f"this address has its maximum of {self.max_per_client} open streams; close "
                f"one or try again in {STREAM_RETRY_AFTER} s",
            )
            return web.json_response(body, status=429, headers=headers)
        return None

    def open(self, address: str) -> None:
        self.total += 1
        self.per_client[address] = self.per_client.get(address, 0) + 1

    def close(self, address: str) -> None:
        self.total -= 1
        count = self.per_client[address] - 1
        if count:
            self.per_client[address] = count
        else:
            del self.per_client[address]


def limit_streams(handler: Handler) -> Handler:
    """Wrap the stream handler with the stream limits and the session's lifetime.

    A stream opened with a session cookie is closed when that session expires or signs out.
    """
    # Imported here because security imports this module.
    from aria_stream.security import limiter_key, security_key

    async def limited(request: web.Request) -> web.StreamResponse:
        security = request.app[security_key]
        limiter = request.app[limiter_key]
        address = client_address(request, security.settings)
        refusal = limiter.refusal(address)
        if refusal is not None:
            security.streams_rejected.labels(str(refusal.status)).inc()
            return refusal
        session = security.session_of(request)
        transport = request.transport
        expiry: asyncio.TimerHandle | None = None
        if session is not None and transport is not None:
            session.streams.add(transport)
            delay = max(0.0, session.expires - time.monotonic())
            expiry = asyncio.get_running_loop().call_later(delay, transport.abort)
        limiter.open(address)
        try:
            return await handler(request)
        finally:
            limiter.close(address)
            if session is not None and transport is not None:
                session.streams.discard(transport)
            if expiry is not None:
                expiry.cancel()

    return limited
