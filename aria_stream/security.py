"""Access control, CORS and the access log of the aiohttp app.

``setup_security`` adds to an app:

1. Sign-in when ``auth_token`` is set (see ``auth``): ``GET /`` serves the sign-in page until the
   browser has a session, ``POST /login`` and ``POST /logout`` manage the session cookie, and
   every other path except ``/healthz``, ``/readyz`` and the sign-in page's files returns 401
   without a session cookie or a bearer token.
2. CORS for the origins in ``cors_origins`` only: the request's origin is echoed, with
   credentials allowed. Without the setting no CORS header is ever sent.
3. One access log line per request, without query values outside a list of filter parameters,
   and without cookies or headers.
4. Redaction of the LiteLLM key and the viewer token (see ``redact``).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from aiohttp import web
from prometheus_client import Counter

from aria_stream.appkeys import metrics_key, request_id_key
from aria_stream.auth import (
    COOKIE_NAME,
    FailureLimiter,
    LoginRejected,
    Session,
    SessionStore,
    TokenChecker,
    read_login_form,
    too_many_failures,
)
from aria_stream.errors import error_body
from aria_stream.limits import StreamLimiter, client_address, is_https
from aria_stream.redact import register_secret
from aria_stream.settings import Settings

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("aria_stream.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
LOGIN_PAGE = STATIC_DIR / "login.html"

# Paths served without a session: probes, the sign-in form and the files it loads.
OPEN_PATHS = frozenset(
    {
        "/healthz",
        "/readyz",
        "/login",
        "/logout",
        "/static/login.js",
        "/static/login.css",
        "/static/favicon.svg",
    }
)
# Query parameters whose values the access log shows; other values are replaced.
LOGGED_PARAMS = frozenset(
    {"limit", "offset", "full", "status", "since", "until", "model", "model_group", "error_code"}
)
LOGGED_VALUE_MAX_CHARS = 100
# Probes are logged at DEBUG, because a load balancer calls them every few seconds.
QUIET_PATHS = frozenset({"/healthz", "/readyz"})
CORS_MAX_AGE = 600
CORS_HEADERS = "Authorization, Content-Type, Last-Event-ID"


@dataclass(eq=False)
class Security:
    """Security state of one app: settings, token check, sessions and counters."""

    settings: Settings
    checker: TokenChecker | None
    sessions: SessionStore
    failures: FailureLimiter
    login_failures: Counter
    streams_rejected: Counter

    @property
    def auth_enabled(self) -> bool:
        return self.checker is not None

    def session_of(self, request: web.Request) -> Session | None:
        """Return the live session named by the request's cookie, or None."""
        session_id = request.cookies.get(COOKIE_NAME)
        if not session_id or len(session_id) > 128:
            return None
        return self.sessions.get(session_id)


security_key = web.AppKey("security", Security)
limiter_key = web.AppKey("stream_limiter", StreamLimiter)


def setup_security(app: web.Application, settings: Settings) -> None:
    """Add sign-in, CORS, stream limits and the access log to ``app``."""
    for secret in (settings.litellm_key, settings.auth_token):
        if secret is not None:
            register_secret(secret.get_secret_value())
    registry = app[metrics_key].registry
    app[security_key] = Security(
        settings=settings,
        checker=TokenChecker(settings.auth_token) if settings.auth_token is not None else None,
        sessions=SessionStore(settings.session_ttl, settings.session_max),
        failures=FailureLimiter(settings.login_max_failures, settings.login_window),
        login_failures=Counter(
            "aria_stream_login_failures",
            "Wrong viewer tokens presented, at sign-in or as a bearer token.",
            registry=registry,
        ),
        streams_rejected=Counter(
            "aria_stream_streams_rejected",
            "Streams refused by a stream limit, by HTTP status (503 total, 429 per address).",
            ["status"],
            registry=registry,
        ),
    )
    app[limiter_key] = StreamLimiter(settings.max_streams, settings.max_streams_per_client)
    app.on_response_prepare.append(add_cors_headers)
    app.on_startup.append(check_startup)
    if settings.auth_token is not None:
        app.router.add_post("/login", handle_login)
        app.router.add_post("/logout", handle_logout)


# Startup.


def is_loopback(host: str) -> bool:
    """Check whether binding to ``host`` keeps the server reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        # Another host name may resolve to any address.
        return False


def public_bind_problem(settings: Settings) -> str | None:
    """Return why the server must not start on ``settings.host``, or None when it may."""
    if is_loopback(settings.host) or settings.auth_token is not None or settings.insecure_public:
        return None
    return (
        f"refusing to listen on {settings.host or 'every address'} without a viewer token, "
        "because anyone who reaches the port could read every prompt and spend log. Set "
        "ARIA_AUTH_TOKEN (generate one with: python3 -c 'import secrets; "
        "print(secrets.token_urlsafe(32))'), bind to 127.0.0.1, or pass --insecure-public "
        "to serve without sign-in."
    )


async def check_startup(app: web.Application) -> None:
    """Refuse to start on a public address without a token, and log the security settings."""
    settings = app[security_key].settings
    problem = public_bind_problem(settings)
    if problem is not None:
        raise RuntimeError(problem)
    if app[security_key].auth_enabled:
        logger.info("Sign-in is on: sessions last %.0f s", settings.session_ttl)
    elif not is_loopback(settings.host):
        logger.warning(
            "Sign-in is off on the public address %s (--insecure-public); anyone who reaches "
            "the port can read the spend logs",
            settings.host or "*",
        )
    if settings.cors_origins:
        logger.info("CORS allows the origins %s", ", ".join(settings.cors_origins))


# Access control.


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Require a session cookie or a bearer token when sign-in is on."""
    security = request.app[security_key]
    if not security.auth_enabled or request.path in OPEN_PATHS:
        return await handler(request)
    if security.session_of(request) is not None:
        return await handler(request)
    authorization = request.headers.get("Authorization")
    if authorization is not None:
        rejected = _check_bearer(request, security, authorization)
        if rejected is None:
            return await handler(request)
        return rejected.response()
    if request.path == "/" and request.method in ("GET", "HEAD"):
        return login_page()
    return _unauthorized("sign in first: send the aria_session cookie or a bearer token")


def _check_bearer(
    request: web.Request, security: Security, authorization: str
) -> LoginRejected | None:
    """Return None for a right bearer token, or the 401 or 429 rejection."""
    assert security.checker is not None
    address = client_address(request, security.settings)
    retry_after = security.failures.retry_after(address)
    if retry_after is not None:
        return too_many_failures(retry_after)
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token and security.checker.matches(token.strip()):
        return None
    security.failures.record_failure(address)
    security.login_failures.inc()
    logger.warning(
        "[%s] wrong bearer token from %s for %s",
        request[request_id_key],
        address,
        request.path,
    )
    return LoginRejected(
        401,
        "unauthorized",
        "the bearer token is wrong",
        headers={"WWW-Authenticate": 'Bearer realm="aria_stream", error="invalid_token"'},
    )


def _unauthorized(message: str) -> web.Response:
    body = error_body(401, "unauthorized", message)
    headers = {"WWW-Authenticate": 'Bearer realm="aria_stream"'}
    return web.json_response(body, status=401, headers=headers)


def login_page() -> web.FileResponse:
    response = web.FileResponse(LOGIN_PAGE)
    response.headers["Cache-Control"] = "no-store"
    return response


async def handle_login(request: web.Request) -> web.StreamResponse:
    """Serve ``POST /login``: a right token gets a session cookie and a redirect to ``/``."""
    security = request.app[security_key]
    assert security.checker is not None
    address = client_address(request, security.settings)
    try:
        retry_after = security.failures.retry_after(address)
        if retry_after is not None:
            raise too_many_failures(retry_after)
        form = await read_login_form(request)
        if not security.checker.matches(form.token.get_secret_value()):
            security.failures.record_failure(address)
            security.login_failures.inc()
            logger.warning("[%s] wrong token at sign-in from %s", request[request_id_key], address)
            raise LoginRejected(401, "wrong_token", "the token is wrong")
    except LoginRejected as rejected:
        return rejected.response()
    security.failures.reset(address)
    session_id, _ = security.sessions.create()
    logger.info("[%s] signed in from %s", request[request_id_key], address)
    response = web.Response(status=303, headers={"Location": "/", "Cache-Control": "no-store"})
    response.set_cookie(
        COOKIE_NAME,
        session_id,
        max_age=int(security.settings.session_ttl),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=is_https(request, security.settings) or None,
    )
    return response


async def handle_logout(request: web.Request) -> web.StreamResponse:
    """Serve ``POST /logout``: end the session, close its streams and clear the cookie."""
    security = request.app[security_key]
    session_id = request.cookies.get(COOKIE_NAME)
    if session_id and security.sessions.revoke(session_id):
        logger.info("[%s] signed out", request[request_id_key])
    response = web.Response(status=303, headers={"Location": "/", "Cache-Control": "no-store"})
    response.del_cookie(COOKIE_NAME, path="/", secure=is_https(request, security.settings) or None)
    return response


# CORS.


@web.middleware
async def cors_preflight_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer CORS preflight requests for the allowed origins; refuse them for the others."""
    settings = request.app[security_key].settings
    origin = request.headers.get("Origin")
    is_preflight = (
        request.method == "OPTIONS"
        and origin is not None
        and "Access-Control-Request-Method" in request.headers
    )
    if not settings.cors_origins or origin is None or not is_preflight:
        return await handler(request)
    if origin not in settings.cors_origins:
        body = error_body(403, "origin_not_allowed", f"the origin {origin[:100]!r} is not allowed")
        return web.json_response(body, status=403)
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Methods": "GET, POST",
            "Access-Control-Allow-Headers": CORS_HEADERS,
            "Access-Control-Max-Age": str(CORS_MAX_AGE),
        },
    )


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Echo an allowed origin, with credentials, on every response before its headers go out."""
    settings = request.app[security_key].settings
    if not settings.cors_origins:
        return
    response.headers.add("Vary", "Origin")
    origin = request.headers.get("Origin")
    if origin is not None and origin in settings.cors_origins:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"


# Access log.


def loggable_target(request: web.Request) -> str:
    """Return the path and query for the access log, with the values of unlisted names replaced."""
    parts = []
    for name, value in request.query.items():
        shown = value[:LOGGED_VALUE_MAX_CHARS] if name in LOGGED_PARAMS else "[redacted]"
        parts.append(f"{quote(name[:40], safe='')}={quote(shown, safe='-_.:')}")
    path = quote(request.path[:500], safe="/-_.~")
    return f"{path}?{'&'.join(parts)}" if parts else path


@web.middleware
async def access_log_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Log one line per request once it is answered, streams when they end."""
    started = time.monotonic()
    status: int | str = "-"
    response: web.StreamResponse | None = None
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as error:
        status = error.status
        raise
    except BaseException:
        status = "aborted"
        raise
    finally:
        level = logging.DEBUG if request.path in QUIET_PATHS else logging.INFO
        sent = _body_size(request, response)
        settings = request.app[security_key].settings
        access_logger.log(
            level,
            '[%s] %s "%s %s" %s %d bytes %.3f s',
            request.get(request_id_key, "-"),
            client_address(request, settings),
            request.method,
            loggable_target(request),
            status,
            sent,
            time.monotonic() - started,
        )


def _body_size(request: web.Request, response: web.StreamResponse | None) -> int:
    if response is not None and response.prepared and response.body_length:
        return response.body_length
    if response is None or response.prepared:
        # A stream the client left has no response here, or no final length: the connection's
        # writer counted the body bytes it sent.
        return int(getattr(request.writer, "output_size", 0))
    if isinstance(response, web.Response) and isinstance(response.body, bytes):
        return len(response.body)
    return 0
