"""Errors of aria_stream and the one JSON error shape every endpoint uses.

Upstream failures form a small tree; each class names the cause, and its message says the fix::

    UpstreamError                  LiteLLM could not give us spend logs
    ├── UpstreamUnreachable        connection refused, DNS failure, connection reset
    ├── UpstreamTimeout            no connection, no response headers or a silent body in time
    ├── UpstreamAuthError          401 or 403: the key is missing, wrong or not allowed
    ├── UpstreamNotFound           404 on every spend-log endpoint
    ├── UpstreamRejected           400 or 422: LiteLLM rejected our query
    ├── UpstreamRateLimited        429, with the Retry-After delay when LiteLLM sent one
    ├── UpstreamServerError        5xx
    ├── UpstreamBadResponse        a body that is not JSON, such as an HTML error page
    └── UpstreamTruncated          a body cut off before its JSON document ended

Errors of our own API (a bad query parameter, an unknown request id) are ``ApiError``.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web


class UpstreamError(Exception):
    """LiteLLM could not give us spend logs."""

    kind = "upstream"
    http_status = 502

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after

    def to_event(self, *, retry: bool = False, retry_in: float | None = None) -> dict[str, Any]:
        """Return the data of an ``upstream_error`` event."""
        return {
            "kind": self.kind,
            "status": self.status,
            "message": self.message,
            "retry": retry,
            "retry_in": retry_in,
        }


class UpstreamUnreachable(UpstreamError):
    kind = "unreachable"


class UpstreamTimeout(UpstreamError):
    kind = "timeout"
    http_status = 504


class UpstreamAuthError(UpstreamError):
    kind = "auth"


class UpstreamNotFound(UpstreamError):
    kind = "not_found"


class UpstreamRejected(UpstreamError):
    kind = "rejected"


class UpstreamRateLimited(UpstreamError):
    kind = "rate_limited"


class UpstreamServerError(UpstreamError):
    kind = "server_error"


class UpstreamBadResponse(UpstreamError):
    kind = "bad_response"


class UpstreamTruncated(UpstreamError):
    kind = "truncated"


class ApiError(Exception):
    """A request to our own API that cannot be served, with the HTTP status to return."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        param: str | None = None,
        value: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.value = value


def invalid_parameter(param: str, value: str, expected: str) -> ApiError:
    """Build the 400 error for a query parameter, naming the value and what is allowed."""
    return ApiError(
        400,
        "invalid_parameter",
        f"{param} must be {expected}, got {value!r}",
        param=param,
        value=value,
    )


def error_body(
    status: int,
    code: str,
    message: str,
    *,
    param: str | None = None,
    value: str | None = None,
) -> dict[str, Any]:
    """Return the error shape shared by every JSON endpoint.

    The shape is always ``{"ok": false, "status", "error", "message", "param", "value"}``:
    ``error`` is a stable machine-readable code, ``message`` one sentence for people, and
    ``param``/``value`` name the offending query parameter or are null.
    """
    return {
        "ok": False,
        "status": status,
        "error": code,
        "message": message,
        "param": param,
        "value": value,
    }


def json_error(error: ApiError | UpstreamError) -> web.Response:
    """Render an error as a JSON response in the shared shape."""
    if isinstance(error, ApiError):
        body = error_body(
            error.status, error.code, error.message, param=error.param, value=error.value
        )
        status = error.status
    else:
        status = error.http_status
        body = error_body(status, f"upstream_{error.kind}", error.message)
    headers = {}
    if isinstance(error, UpstreamRateLimited) and error.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(error.retry_after)))
    return web.Response(
        body=orjson.dumps(body),
        status=status,
        content_type="application/json",
        headers=headers,
    )
