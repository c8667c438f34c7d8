"""Viewer sign-in: the token check, in-memory sessions and the per-address failure limit.

When ``auth_token`` is set, a browser posts the token once to ``POST /login`` and gets the
``aria_session`` cookie (HttpOnly, SameSite=Strict, Secure over https). API clients send
``Authorization: Bearer <token>`` instead. Neither the token nor a session id is ever read from
a URL, so neither lands in a proxy log or the browser history.

Sessions live in this process only: a restart signs every viewer out.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from aria_stream.errors import error_body

logger = logging.getLogger(__name__)

COOKIE_NAME = "aria_session"
# Client addresses whose failures are remembered, at most; the least recent go first.
FAILURE_TABLE_MAX = 10_000
TOKEN_MAX_CHARS = 1024
# A login body larger than this is not a token form.
LOGIN_BODY_MAX_BYTES = 8 * 1024


def digest(text: str) -> bytes:
    """Return the SHA-256 digest of ``text``, so that comparing two values takes the same time
    whatever their lengths."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class TokenChecker:
    """Compares presented tokens with the configured one in constant time."""

    def __init__(self, token: SecretStr) -> None:
        self._digest = digest(token.get_secret_value())

    def matches(self, presented: str) -> bool:
        return hmac.compare_digest(digest(presented), self._digest)


@dataclass(eq=False)
class Session:
    """A signed-in browser: when it expires and the streams it has open."""

    expires: float
    # The connections of the open streams.
    streams: set[asyncio.Transport] = field(default_factory=set)

    def close_streams(self) -> None:
        """Abort the connection of every open stream of this session."""
        for transport in list(self.streams):
            transport.abort()
        self.streams.clear()


class SessionStore:
    """Sessions by id, oldest first, at most ``max_sessions``, each valid for ``ttl`` seconds."""

    def __init__(self, ttl: float, max_sessions: int) -> None:
        self.ttl = ttl
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self) -> tuple[str, Session]:
        """Start a session and return its id and record."""
        self._prune()
        while len(self._sessions) >= self.max_sessions:
            _, oldest = self._sessions.popitem(last=False)
            oldest.close_streams()
        session_id = secrets.token_urlsafe(32)
        session = Session(time.monotonic() + self.ttl)
        self._sessions[session_id] = session
        return session_id, session

    def get(self, session_id: str) -> Session | None:
        """Return the live session with this id, or None."""
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if session.expires <= time.monotonic():
            self.revoke(session_id)
            return None
        return session

    def revoke(self, session_id: str) -> bool:
        """End a session and close its streams; return whether it existed."""
        session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        session.close_streams()
        return True

    def _prune(self) -> None:
        # Every session has the same lifetime, so the oldest ones expire first.
        now = time.monotonic()
        while self._sessions:
            session_id, session = next(iter(self._sessions.items()))
            if session.expires > now:
                break
            self.revoke(session_id)


class FailureLimiter:
    """Counts wrong tokens per client address over a sliding window."""

    def __init__(self, max_failures: int, window: float) -> None:
        self.max_failures = max_failures
        self.window = window
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, address: str) -> int | None:
        """Return the whole seconds until ``address`` may try again, or None when it may now."""
        times = self._recent(address)
        if times is None or len(times) < self.max_failures:
            return None
        return max(1, math.ceil(times[0] + self.window - time.monotonic()))

    def record_failure(self, address: str) -> None:
        times = self._recent(address)
        if times is None:
            times = deque()
            self._failures[address] = times
            if len(self._failures) > FAILURE_TABLE_MAX:
                self._failures.popitem(last=False)
        self._failures.move_to_end(address)
        times.append(time.monotonic())
        while len(times) > self.max_failures:
            times.popleft()

    def reset(self, address: str) -> None:
        self._failures.pop(address, None)

    def _recent(self, address: str) -> deque[float] | None:
        times = self._failures.get(address)
        if times is None:
            return None
        cutoff = time.monotonic() - self.window
        while times and times[0] <= cutoff:
            times.popleft()
        if not times:
            del self._failures[address]
            return None
        return times


class LoginForm(BaseModel):
    """Body of ``POST /login``: a form field or a JSON member named ``token``."""

    model_config = ConfigDict(extra="ignore")

    token: SecretStr = Field(min_length=1, max_length=TOKEN_MAX_CHARS)


async def read_login_form(request: web.Request) -> LoginForm:
    """Parse the body of ``POST /login``; raise ``LoginRejected`` (400 or 413) when invalid."""
    if request.content_length is not None and request.content_length > LOGIN_BODY_MAX_BYTES:
        raise LoginRejected(413, "request_too_large", "the sign-in body is larger than 8 KB")
    data: Any
    try:
        if request.content_type == "application/json":
            data = await request.json()
        else:
            data = dict(await request.post())
    except ValueError as error:
        raise LoginRejected(400, "invalid_body", "the sign-in body is not valid JSON") from error
    if not isinstance(data, dict) or not isinstance(data.get("token"), str):
        raise LoginRejected(400, "invalid_parameter", "token is missing", param="token")
    try:
        return LoginForm.model_validate(data)
    except ValidationError as error:
        raise LoginRejected(
            400,
            "invalid_parameter",
            f"token must be 1 to {TOKEN_MAX_CHARS} characters",
            param="token",
        ) from error


class LoginRejected(Exception):
    """A sign-in request that cannot be served; rendered in the one error shape.

    The rejected token is never part of the error, unlike other invalid parameters.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.headers = headers or {}

    def response(self) -> web.Response:
        body = error_body(self.status, self.code, self.message, param=self.param)
        return web.json_response(body, status=self.status, headers=self.headers)


def too_many_failures(retry_after: int) -> LoginRejected:
    return LoginRejected(
        429,
        "too_many_attempts",
        f"too many wrong tokens from this address; try again in {retry_after} s",
        headers={"Retry-After": str(retry_after)},
    )
