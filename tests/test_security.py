"""Sign-in, sessions, the public-bind check, CORS and the access log, over loopback HTTP."""

from __future__ import annotations

import asyncio
import hmac
import logging
from http.cookies import SimpleCookie

import pytest
from aiohttp import ClientPayloadError, ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr, ValidationError

from aria_stream.app import create_app
from aria_stream.appkeys import tail_key
from aria_stream.auth import COOKIE_NAME, TokenChecker
from aria_stream.cli import build_parser, main
from aria_stream.security import is_loopback, public_bind_problem, security_key
from aria_stream.settings import Settings
from aria_stream.simulator import Simulator
from tests.conftest import ServerFactory, settings_for
from tests.sse import read_events, rows_of
from tests.tail_support import eventually

TOKEN = "viewer-token-0123456789abcdef"
WRONG = "viewer-token-wrong-0000000000"
READ_TIMEOUT = 10.0


def error_shape(status: int, code: str, message: str, param: str | None = None) -> dict:
    return {
        "ok": False,
        "status": status,
        "error": code,
        "message": message,
        "param": param,
        "value": None,
    }


async def auth_server(server_factory: ServerFactory, simulator: Simulator, **overrides):
    return await server_factory(simulator, auth_token=TOKEN, **overrides)


async def login(client: TestClient, token: str = TOKEN, **kwargs) -> ClientResponse:
    return await client.post("/login", data={"token": token}, allow_redirects=False, **kwargs)


def set_cookie(response: ClientResponse) -> SimpleCookie:
    cookie = SimpleCookie()
    for header in response.headers.getall("Set-Cookie", []):
        cookie.load(header)
    return cookie


def session_id(client: TestClient) -> str:
    cookies = {cookie.key: cookie.value for cookie in client.session.cookie_jar}
    return cookies[COOKIE_NAME]


async def wait_for_end(response: ClientResponse) -> bool:
    """Read a stream until the server ends or aborts it; fail the test after ``READ_TIMEOUT``."""
    async with asyncio.timeout(READ_TIMEOUT):
        while True:
            try:
                chunk = await response.content.readany()
            except ClientPayloadError:
                return True
            if not chunk:
                return True


# Without a session.


async def test_auth_index_serves_login_page(server_factory: ServerFactory, simulator: Simulator):
    client = await auth_server(server_factory, simulator)

    response = await client.get("/")

    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    page = await response.text()
    assert 'id="login-form"' in page
    assert 'action="/login"' in page
    assert '<script type="module" src="/static/login.js"></script>' in page


@pytest.mark.parametrize(
    "path",
    ["/api/spend/logs", "/api/spend/stream", "/metrics", "/static/viewer.js", "/api/spend/logs/x"],
)
async def test_auth_path_without_credentials_is_401(
    server_factory: ServerFactory, simulator: Simulator, path: str
):
    client = await auth_server(server_factory, simulator)

    response = await client.get(path)

    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="aria_stream"'
    assert await response.json() == error_shape(
        401, "unauthorized", "sign in first: send the aria_session cookie or a bearer token"
    )


@pytest.mark.parametrize(
    "path", ["/healthz", "/readyz", "/static/login.js", "/static/login.css", "/static/favicon.svg"]
)
async def test_auth_open_paths_need_no_session(
    server_factory: ServerFactory, simulator: Simulator, path: str
):
    client = await auth_server(server_factory, simulator)

    response = await client.get(path)

    assert response.status == 200


async def test_auth_token_in_query_is_ignored(server_factory: ServerFactory, simulator: Simulator):
    client = await auth_server(server_factory, simulator)

    response = await client.get("/api/spend/logs", params={"token": TOKEN, "auth": TOKEN})

    assert response.status == 401


async def test_auth_off_serves_viewer(server: TestClient):
    response = await server.get("/")

    assert response.status == 200
    assert 'id="login-form"' not in await response.text()


async def test_auth_off_has_no_login_route(server: TestClient):
    response = await server.post("/login", data={"token": TOKEN})

    assert response.status == 404


# Signing in.


async def test_login_redirects_home_with_cookie(
    server_factory: ServerFactory, simulator: Simulator
):
    client = await auth_server(server_factory, simulator, session_ttl=600)

    response = await login(client)

    assert response.status == 303
    assert response.headers["Location"] == "/"
    morsel = set_cookie(response)[COOKIE_NAME]
    assert len(morsel.value) >= 40
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Strict"
    assert morsel["path"] == "/"
    assert morsel["max-age"] == "600"
    assert morsel["secure"] == ""


async def test_login_cookie_secure_behind_https_proxy(
    server_factory: ServerFactory, simulator: Simulator
):
    client = await auth_server(server_factory, simulator, behind_proxy=True)

    response = await login(client, headers={"X-Forwarded-Proto": "https"})

    assert response.status == 303
    assert set_cookie(response)[COOKIE_NAME]["secure"] is True


async def test_login_forwarded_proto_ignored_without_proxy(
    server_factory: ServerFactory, simulator: Simulator
):
    client = await auth_server(server_factory, simulator)

    response = await login(client, headers={"X-Forwarded-Proto": "https"})

    assert set_cookie(response)[COOKIE_NAME]["secure"] == ""


async def test_login_accepts_json_body(server_factory: ServerFactory, simulator: Simulator):
    client = await auth_server(server_factory, simulator)

    response = await client.post("/login", json={"token": TOKEN}, allow_redirects=False)

    assert response.status == 303
    assert COOKIE_NAME in set_cookie(response)


async def test_login_session_opens_viewer(server_factory: ServerFactory, simulator: Simulator):
    client = await auth_server(server_factory, simulator)
    await login(client)

    response = await client.get("/")

    assert response.status == 200
    page = await response.text()
    assert 'id="login-form"' not in page
    assert "/static/viewer.js" in page


async def test_login_session_opens_api(server_factory: ServerFactory, simulator: Simulator):
    client = await auth_server(server_factory, simulator)
    await login(client)

    response = await client.get("/api/spend/logs", params={"limit": "3"})

    assert response.status == 200
    body = await response.json()
    assert [row["request_id"] for row in body["data"]] == [
        row.request_id for row in simulator.visible_rows()[:3]
    ]


async def test_login_session_opens_stream(server_factory: ServerFactory, simulator: Simulator):
    client = await auth_server(server_factory, simulator)
    await login(client)

    response = await client.get("/api/spend/stream", params={"limit": "7"})
    async with asyncio.timeout(READ_TIMEOUT):
        events = await read_events(response)
    response.close()

    assert response.status == 200
    assert [row["request_id"] for row in rows_of(events)] == [
        row.request_id for row in simulator.visible_rows()[:7]
    ]


async def test_login_session_opens_metrics(server_factory: ServerFactory, simulator: Simulator):
    client = await auth_server(server_factory, simulator)
    await login(client)

    response = await client.get("/metrics")

    assert response.status == 200
    assert "aria_stream_login_failures_total 0.0" in await response.text()


async def test_login_wrong_token_is_401(server_factory: ServerFactory, simulator: Simulator):
    client = await auth_server(server_factory, simulator)

    response = await login(client, WRONG)

    assert response.status == 401
    assert "Set-Cookie" not in response.headers
    assert await response.json() == error_shape(401, "wrong_token", "the token is wrong")


async def test_login_missing_token_is_400(server_factory: ServerFactory, simulator: Simulator):
    client = await auth_server(server_factory, simulator)

    response = await client.post("/login", data={"password": TOKEN}, allow_redirects=False)

    assert response.status == 400
    assert await response.json() == error_shape(
        400, "invalid_parameter", "token is missing", "token"
    )


async def test_login_long_token_is_400(server_factory: ServerFactory, simulator: Simulator):
    client = await auth_server(server_factory, simulator)

    response = await login(client, "x" * 1025)

    assert response.status == 400
    body = await response.json()
    assert body == error_shape(
        400, "invalid_parameter", "token must be 1 to 1024 characters", "token"
    )


async def test_login_large_body_is_413(server_factory: ServerFactory, simulator: Simulator):
    client = await auth_server(server_factory, simulator)

    response = await login(client, "x" * 9000)

    assert response.status == 413
    assert (await response.json())["error"] == "request_too_large"


async def test_login_session_ids_differ(server_factory: ServerFactory, simulator: Simulator):
    client = await auth_server(server_factory, simulator)

    first = set_cookie(await login(client))[COOKIE_NAME].value
    second = set_cookie(await login(client))[COOKIE_NAME].value

    assert first != second


async def test_login_forged_cookie_is_401(server_factory: ServerFactory, simulator: Simulator):
    client = await auth_server(server_factory, simulator)

    response = await client.get(
        "/api/spend/logs", headers={"Cookie": f"{COOKIE_NAME}=made-up-session-id"}
    )

    assert response.status == 401


# Bearer tokens.


async def test_bearer_token_opens_api(server_factory: ServerFactory, simulator: Simulator):
    client = await auth_server(server_factory, simulator)

    response = await client.get(
        "/api/spend/logs", params={"limit": "2"}, headers={"Authorization": f"Bearer {TOKEN}"}
    )

    assert response.status == 200
    assert len((await response.json())["data"]) == 2


async def test_bearer_wrong_token_is_401(server_factory: ServerFactory, simulator: Simulator):
    client = await auth_server(server_factory, simulator)

    response = await client.get("/metrics", headers={"Authorization": f"Bearer {WRONG}"})

    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="aria_stream", error="invalid_token"'
    )
    assert await response.json() == error_shape(401, "unauthorized", "the bearer token is wrong")


async def test_bearer_basic_scheme_is_401(server_factory: ServerFactory, simulator: Simulator):
    client = await auth_server(server_factory, simulator)

    response = await client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"})

    assert response.status == 401


async def test_bearer_failure_counted_in_metric(
    server_factory: ServerFactory, simulator: Simulator
):
    client = await auth_server(server_factory, simulator)
    await client.get("/metrics", headers={"Authorization": f"Bearer {WRONG}"})
    await login(client, WRONG)

    response = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})

    assert "aria_stream_login_failures_total 2.0" in await response.text()


# Failure limit.


async def test_login_limited_after_failures(server_factory: ServerFactory, simulator: Simulator):
    client = await auth_server(server_factory, simulator, login_max_failures=3, login_window=60)
    statuses = [(await login(client, WRONG)).status for _ in range(3)]

    response = await login(client)

    assert statuses == [401, 401, 401]
    assert response.status == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    body = await response.json()
    assert body["error"] == "too_many_attempts"
    assert body["message"].startswith("too many wrong tokens from this address; try again in ")
    assert "Set-Cookie" not in response.headers


async def test_bearer_limited_after_failures(server_factory: ServerFactory, simulator: Simulator):
    client = await auth_server(server_factory, simulator, login_max_failures=2)
    for _ in range(2):
        await client.get("/metrics", headers={"Authorization": f"Bearer {WRONG}"})

    response = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status == 429
    assert "Retry-After" in response.headers


async def test_login_limit_is_per_address(server_factory: ServerFactory, simulator: Simulator):
    client = await auth_server(server_factory, simulator, login_max_failures=2, behind_proxy=True)
    blocked = {"X-Forwarded-For": "203.0.113.7"}
    other = {"X-Forwarded-For": "203.0.113.8"}
    for _ in range(2):
        await login(client, WRONG, headers=blocked)

    refused = await login(client, headers=blocked)
    accepted = await login(client, headers=other)

    assert refused.status == 429
    assert accepted.status == 303


async def test_login_limit_uses_last_forwarded_entry(
    server_factory: ServerFactory, simulator: Simulator
):
    """The client-supplied first entries of X-Forwarded-For must not pick the address."""
    client = await auth_server(server_factory, simulator, login_max_failures=2, behind_proxy=True)
    for forged in ("198.51.100.1", "198.51.100.2"):
        await login(client, WRONG, headers={"X-Forwarded-For": f"{forged}, 203.0.113.9"})

    response = await login(client, headers={"X-Forwarded-For": "198.51.100.3, 203.0.113.9"})

    assert response.status == 429


async def test_login_success_resets_failures(server_factory: ServerFactory, simulator: Simulator):
    client = await auth_server(server_factory, simulator, login_max_failures=3)
    for _ in range(2):
        await login(client, WRONG)
    await login(client)
    for _ in range(2):
        await login(client, WRONG)

    response = await login(client)

    assert response.status == 303


async def test_login_limit_ends_after_window(server_factory: ServerFactory, simulator: Simulator):
    client = await auth_server(server_factory, simulator, login_max_failures=1, login_window=0.3)
    await login(client, WRONG)
    refused = await login(client)

    # The window ends on the server's clock, which sends no event for it.
    async with asyncio.timeout(READ_TIMEOUT):
        while (response := await login(client)).status == 429:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    assert refused.status == 429
    assert response.status == 303


def test_token_checker_compares_digests(monkeypatch: pytest.MonkeyPatch):
    compared: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(left: bytes, right: bytes) -> bool:
        compared.append((len(left), len(right)))
        return real(left, right)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    checker = TokenChecker(SecretStr(TOKEN))

    assert checker.matches(TOKEN) is True
    assert checker.matches("short") is False
    assert checker.matches(TOKEN + "x" * 500) is False
    # Digests of equal length are compared, whatever the length of the presented token.
    assert compared == [(32, 32), (32, 32), (32, 32)]


# Sessions.


async def test_logout_ends_session(server_factory: ServerFactory, simulator: Simulator):
    client = await auth_server(server_factory, simulator)
    await login(client)
    old = session_id(client)

    response = await client.post("/logout", allow_redirects=False)
    replayed = await client.get("/metrics", headers={"Cookie": f"{COOKIE_NAME}={old}"})

    assert response.status == 303
    assert response.headers["Location"] == "/"
    assert set_cookie(response)[COOKIE_NAME].value == ""
    assert replayed.status == 401


async def test_logout_closes_open_stream(server_factory: ServerFactory, simulator: Simulator):
    client = await auth_server(server_factory, simulator)
    await login(client)
    stream = await client.get("/api/spend/stream", params={"limit": "5"})
    async with asyncio.timeout(READ_TIMEOUT):
        await read_events(stream)

    await client.post("/logout", allow_redirects=False)
    ended = await wait_for_end(stream)

    tail = client.server.app[tail_key]
    async with asyncio.timeout(READ_TIMEOUT):
        while tail.subscribers:  # noqa: ASYNC110 - the tail has no event for this
            await asyncio.sleep(0.02)
    assert ended is True
    assert tail.subscribers == set()


async def test_session_expiry_closes_stream(server_factory: ServerFactory, simulator: Simulator):
    client = await auth_server(server_factory, simulator, session_ttl=1.0)
    await login(client)
    stream = await client.get("/api/spend/stream", params={"limit": "5"})
    async with asyncio.timeout(READ_TIMEOUT):
        events = await read_events(stream)

    ended = await wait_for_end(stream)
    response = await client.get("/metrics")

    assert ended is True
    assert len(rows_of(events)) == 5
    assert response.status == 401


async def test_session_store_drops_oldest(server_factory: ServerFactory, simulator: Simulator):
    client = await auth_server(server_factory, simulator, session_max=2)
    ids = [set_cookie(await login(client))[COOKIE_NAME].value for _ in range(3)]
    client.session.cookie_jar.clear()

    statuses = [
        (await client.get("/metrics", headers={"Cookie": f"{COOKIE_NAME}={sid}"})).status
        for sid in ids
    ]

    assert statuses == [401, 200, 200]
    assert len(client.server.app[security_key].sessions) == 2


# Binding to a public address.


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.53", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("", False),
        ("::", False),
        ("192.168.1.20", False),
        ("aria.example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool):
    assert is_loopback(host) is loopback


def test_public_bind_without_token_refused():
    problem = public_bind_problem(Settings(host="0.0.0.0"))

    assert problem is not None
    assert problem.startswith("refusing to listen on 0.0.0.0 without a viewer token")
    assert "ARIA_AUTH_TOKEN" in problem
    assert "--insecure-public" in problem


@pytest.mark.parametrize(
    "overrides",
    [
        {"host": "0.0.0.0", "auth_token": TOKEN},
        {"host": "0.0.0.0", "insecure_public": True},
        {"host": "127.0.0.1"},
    ],
    ids=["token", "insecure-public", "loopback"],
)
def test_public_bind_allowed(overrides: dict):
    assert public_bind_problem(Settings(**overrides)) is None


def test_cli_public_bind_refused(capsys: pytest.CaptureFixture[str]):
    status = main(["serve", "--host", "0.0.0.0", "--port", "0"])

    assert status == 2
    error = capsys.readouterr().err
    assert error.startswith("aria-stream: refusing to listen on 0.0.0.0 without a viewer token")
    assert "ARIA_AUTH_TOKEN" in error
    assert "--insecure-public" in error


def test_cli_insecure_public_flag_parsed():
    args = build_parser().parse_args(["serve", "--insecure-public", "--behind-proxy"])

    assert args.insecure_public is True
    assert args.behind_proxy is True


def test_cli_bool_flags_default_to_environment():
    args = build_parser().parse_args(["serve"])

    assert args.insecure_public is None


def test_cli_auth_token_has_no_flag():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--auth-token", TOKEN])


async def test_app_refuses_public_host_at_startup(simulator: Simulator):
    app = create_app(settings_for(simulator, host="0.0.0.0"))
    server = TestServer(app, host="127.0.0.1")

    with pytest.raises(RuntimeError, match=r"refusing to listen on 0\.0\.0\.0"):
        await server.start_server()
    await server.close()


def test_auth_token_too_short_rejected():
    with pytest.raises(ValidationError) as caught:
        Settings(auth_token="short-token")

    assert "must be 16 to 1024 printable ASCII characters" in str(caught.value)
    assert "short-token" not in str(caught.value)


def test_auth_token_empty_means_off():
    assert Settings(auth_token="").auth_token is None


# CORS.

ORIGIN = "https://dash.example.com"


async def test_cors_off_by_default(server: TestClient):
    response = await server.get("/api/spend/logs", headers={"Origin": ORIGIN})

    assert response.status == 200
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Credentials" not in response.headers


async def test_cors_allowed_origin_echoed(server_factory: ServerFactory, simulator: Simulator):
    client = await server_factory(simulator, cors_origins=f"{ORIGIN},https://other.example.com")

    response = await client.get("/api/spend/logs", headers={"Origin": ORIGIN})

    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Origin" in response.headers.getall("Vary")


async def test_cors_unlisted_origin_not_echoed(server_factory: ServerFactory, simulator: Simulator):
    client = await server_factory(simulator, cors_origins=ORIGIN)

    response = await client.get("/api/spend/logs", headers={"Origin": "https://evil.example.net"})

    assert response.status == 200
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Credentials" not in response.headers


async def test_cors_stream_carries_headers(server_factory: ServerFactory, simulator: Simulator):
    client = await server_factory(simulator, cors_origins=ORIGIN)

    response = await client.get(
        "/api/spend/stream", params={"limit": "1"}, headers={"Origin": ORIGIN}
    )
    async with asyncio.timeout(READ_TIMEOUT):
        await read_events(response)
    response.close()

    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert response.headers["Access-Control-Allow-Credentials"] == "true"


async def test_cors_error_carries_headers(server_factory: ServerFactory, simulator: Simulator):
    client = await server_factory(simulator, cors_origins=ORIGIN, auth_token=TOKEN)

    response = await client.get("/api/spend/logs", headers={"Origin": ORIGIN})

    assert response.status == 401
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN


async def test_cors_preflight_allowed(server_factory: ServerFactory, simulator: Simulator):
    client = await server_factory(simulator, cors_origins=ORIGIN, auth_token=TOKEN)

    response = await client.options(
        "/api/spend/stream",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "last-event-id",
        },
    )

    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert response.headers["Access-Control-Allow-Methods"] == "GET, POST"
    assert response.headers["Access-Control-Allow-Headers"] == (
        "Authorization, Content-Type, Last-Event-ID"
    )
    assert response.headers["Access-Control-Max-Age"] == "600"


async def test_cors_preflight_unlisted_is_403(server_factory: ServerFactory, simulator: Simulator):
    client = await server_factory(simulator, cors_origins=ORIGIN)

    response = await client.options(
        "/api/spend/logs",
        headers={"Origin": "https://evil.example.net", "Access-Control-Request-Method": "GET"},
    )

    assert response.status == 403
    assert "Access-Control-Allow-Origin" not in response.headers
    assert (await response.json())["error"] == "origin_not_allowed"


@pytest.mark.parametrize(
    "origins",
    ["*", "https://dash.example.com/", "https://dash.example.com/path", "dash.example.com"],
)
def test_cors_origins_setting_rejects(origins: str):
    with pytest.raises(ValidationError, match="each origin must be scheme://host"):
        Settings(cors_origins=origins)


def test_cors_origins_setting_splits_commas():
    settings = Settings(cors_origins=" https://a.example.com , http://127.0.0.1:8080,")

    assert settings.cors_origins == ("https://a.example.com", "http://127.0.0.1:8080")


# Access log.


async def test_access_log_redacts_unlisted_query_values(
    server: TestClient, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG, logger="aria_stream.access")

    await server.get(
        "/api/spend/logs", params={"limit": "2", "model": "gpt-4o", "access_token": TOKEN}
    )

    lines = [
        record.getMessage() for record in caplog.records if record.name == "aria_stream.access"
    ]
    assert len(lines) == 1
    assert '"GET /api/spend/logs?limit=2&model=gpt-4o&access_token=%5Bredacted%5D" 200' in lines[0]
    assert TOKEN not in caplog.text


async def test_access_log_omits_credentials(
    server_factory: ServerFactory, simulator: Simulator, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    client = await auth_server(server_factory, simulator)
    await login(client)
    sid = session_id(client)

    await client.get("/api/spend/logs", params={"limit": "1"})
    await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})

    access = [r.getMessage() for r in caplog.records if r.name == "aria_stream.access"]
    assert [line.split('"')[1] for line in access] == [
        "POST /login",
        "GET /api/spend/logs?limit=1",
        "GET /metrics",
    ]
    assert TOKEN not in caplog.text
    assert sid not in caplog.text


async def test_access_log_records_status_and_client(
    server: TestClient, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="aria_stream.access")

    await server.get("/api/spend/logs", params={"limit": "0"}, headers={"X-Request-Id": "abc123"})

    [record] = [r for r in caplog.records if r.name == "aria_stream.access"]
    assert record.levelno == logging.INFO
    assert record.getMessage().startswith('[abc123] 127.0.0.1 "GET /api/spend/logs?limit=0" 400 ')


async def test_access_log_counts_bytes_of_stream_client_left(
    server: TestClient, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="aria_stream.access")
    response = await server.get("/api/spend/stream", params={"limit": "5"})
    received = 0
    while b"event: done" not in (chunk := await response.content.read(65536)) and chunk:
        received += len(chunk)
    received += len(chunk)
    response.close()

    def stream_lines() -> list[str]:
        messages = [record.getMessage() for record in caplog.records]
        return [message for message in messages if "/api/spend/stream" in message]

    await eventually(lambda: bool(stream_lines()), "the stream was logged")
    [line] = stream_lines()

    sent = int(line.split('" aborted ')[1].split(" bytes")[0])
    assert '"GET /api/spend/stream?limit=5" aborted ' in line
    assert sent >= received > 0


async def test_access_log_probes_at_debug(server: TestClient, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG, logger="aria_stream.access")

    await server.get("/healthz")

    [record] = [r for r in caplog.records if r.name == "aria_stream.access"]
    assert record.levelno == logging.DEBUG
