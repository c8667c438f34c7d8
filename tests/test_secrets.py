"""The LiteLLM key and the viewer token stay inside the process.

Each test reads what leaves the server (bodies, headers, pages, events, metrics, logs at every
level, exception text) and looks for the secret, including when LiteLLM echoes our request.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import ValidationError

from aria_stream.errors import UpstreamError
from aria_stream.models import shorten_hash
from aria_stream.redact import REDACTED, RedactingFilter, install_log_filter, redact
from aria_stream.settings import Settings
from aria_stream.simulator import Simulator
from aria_stream.upstream import LiteLLMClient, build_http_client
from tests.conftest import ServerFactory, SimulatorFactory
from tests.sse import read_events, rows_of

KEY = "sk-master-secret-4242-aria"
TOKEN = "viewer-token-0123456789abcdef"
HASH = "78f900699fb3e059a87a4a2cd4aa99c9110c44cf652b2cf8719399944e74b2b6"
READ_TIMEOUT = 10.0


def assert_no_secret(text: str) -> None:
    assert KEY not in text
    assert TOKEN not in text


# An upstream that echoes our request in its errors.


def echo_text(request: web.Request) -> str:
    """Describe the request as a careless proxy's error page does, credentials first."""
    items = sorted(request.headers.items(), key=lambda item: item[0].lower() != "authorization")
    headers = "; ".join(f"{name}: {value}" for name, value in items)
    return f"headers {headers} of request {request.method} {request.path_qs}"


ECHOES: dict[str, Callable[[web.Request], web.Response]] = {
    "json-400": lambda request: web.json_response(
        {"error": {"message": echo_text(request), "type": "bad_request"}}, status=400
    ),
    "json-401": lambda request: web.json_response(
        {"error": {"message": echo_text(request), "type": "auth_error"}}, status=401
    ),
    "detail-422": lambda request: web.json_response({"detail": echo_text(request)}, status=422),
    "html-500": lambda request: web.Response(
        status=500,
        text=f"<html><body><pre>{echo_text(request)}</pre></body></html>",
        content_type="text/html",
    ),
    "html-200": lambda request: web.Response(
        text=f"<html><body>{echo_text(request)}</body></html>", content_type="text/html"
    ),
    "text-200": lambda request: web.Response(text=echo_text(request), content_type="text/plain"),
    "key-first-500": lambda request: web.Response(
        status=500,
        text=request.headers.get("Authorization", "") + " " + "x" * 300,
        content_type="text/plain",
    ),
}


@pytest.fixture
async def echo_upstream() -> AsyncIterator[Callable[[str], str]]:
    """Start an upstream on loopback whose responses echo the request; yield a URL factory."""
    app = web.Application()
    mode = {"name": "json-400"}

    async def handle(request: web.Request) -> web.Response:
        return ECHOES[mode["name"]](request)

    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]

    def use(name: str) -> str:
        mode["name"] = name
        return f"http://127.0.0.1:{port}"

    yield use
    await runner.cleanup()


async def echo_server(server_factory: ServerFactory, url: str, **overrides) -> TestClient:
    settings = Settings(litellm_url=url, litellm_key=KEY, auth_token=TOKEN, **overrides)
    return await server_factory(settings)


BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize("mode", sorted(ECHOES))
async def test_secret_absent_from_upstream_error_event(
    server_factory: ServerFactory, echo_upstream, mode: str
):
    client = await echo_server(server_factory, echo_upstream(mode))

    response = await client.get("/api/spend/stream", params={"limit": "5"}, headers=BEARER)
    async with asyncio.timeout(READ_TIMEOUT):
        events = await read_events(response, until=("upstream_error",))
    response.close()

    errors = [event.data for event in events if event.event == "upstream_error"]
    assert errors
    for error in errors:
        assert_no_secret(error)


@pytest.mark.parametrize("mode", sorted(ECHOES))
async def test_secret_absent_from_json_error(
    server_factory: ServerFactory, echo_upstream, mode: str
):
    client = await echo_server(server_factory, echo_upstream(mode))

    response = await client.get("/api/spend/logs", headers=BEARER)
    text = await response.text()

    assert response.status in (502, 504)
    assert_no_secret(text)
    assert_no_secret(str(dict(response.headers)))


async def test_secret_echo_is_redacted_in_message(server_factory: ServerFactory, echo_upstream):
    client = await echo_server(server_factory, echo_upstream("json-400"))

    response = await client.get("/api/spend/logs", headers=BEARER)
    body = await response.json()

    assert body["error"] == "upstream_rejected"
    assert f"authorization: Bearer {REDACTED}".lower() in body["message"].lower()


async def test_secret_prefix_not_left_by_cut(server_factory: ServerFactory, echo_upstream):
    """A message cut after the start of an echoed key kept that start, such as 'sk-master'."""
    client = await echo_server(server_factory, echo_upstream("key-first-500"))

    response = await client.get("/api/spend/logs", headers=BEARER)
    body = await response.json()

    assert body["error"] == "upstream_server_error"
    assert KEY[:10] not in body["message"]
    assert f"Bearer {REDACTED}" in body["message"]


async def test_secret_absent_from_logs_at_debug(
    server_factory: ServerFactory, echo_upstream, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    for mode in sorted(ECHOES):
        client = await echo_server(server_factory, echo_upstream(mode))
        await client.get("/api/spend/logs", headers=BEARER)
        await client.get("/readyz")
        await client.post("/login", data={"token": TOKEN}, allow_redirects=False)

    assert caplog.records
    assert_no_secret(caplog.text)
    for record in caplog.records:
        assert_no_secret(record.getMessage())


async def test_secret_absent_from_exception_text(echo_upstream):
    settings = Settings(litellm_url=echo_upstream("html-500"), litellm_key=KEY)
    http = build_http_client(settings)
    client = LiteLLMClient(http, settings)
    try:
        from aria_stream.query import SpendQuery

        with pytest.raises(UpstreamError) as caught:
            async for _ in client.iter_pages(SpendQuery()):
                pass
    finally:
        await http.aclose()

    assert_no_secret(str(caught.value))
    assert_no_secret(repr(caught.value))
    assert_no_secret(caught.value.message)


# A healthy upstream whose rows contain the key.


async def key_rows_server(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
) -> tuple[TestClient, Simulator]:
    simulator = await simulator_factory(rows=20, master_key=KEY)
    now = datetime.now(UTC) - timedelta(seconds=5)
    simulator.add_raw(
        {
            "request_id": "row-with-key",
            "startTime": now.isoformat(),
            "api_key": HASH,
            "model": f"model {KEY}",
            "metadata": {
                "user_api_key": HASH,
                "error_information": {"error_message": f"invalid key {KEY} passed"},
                "headers": {"Authorization": f"Bearer {KEY}", "accept": "*/*"},
            },
            "proxy_server_request": {
                "headers": {"authorization": "Bearer sk-other-user-key", "x-api-key": "k"},
                "messages": [{"role": "user", "content": f"my key is {KEY}"}],
            },
        },
        now,
    )
    client = await server_factory(simulator, auth_token=TOKEN)
    return client, simulator


async def test_secret_absent_from_every_response(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    client, _ = await key_rows_server(simulator_factory, server_factory)
    texts: list[str] = []
    login = await client.post("/login", data={"token": TOKEN}, allow_redirects=False)
    texts.append(str(dict(login.headers)))
    paths = [
        "/",
        "/static/index.html",
        "/static/login.html",
        "/static/login.js",
        "/static/viewer.js",
        "/api/spend/logs?full=true&limit=50",
        "/api/spend/logs?limit=50",
        "/api/spend/logs/row-with-key",
        "/api/spend/logs/unknown-row",
        "/api/spend/logs/bad%20id",
        "/metrics",
        "/healthz",
        "/readyz",
        "/no-such-page",
    ]
    for path in paths:
        response = await client.get(path)
        texts.append(await response.text())
        texts.append(str(dict(response.headers)))
    for params in ({"full": "true", "limit": "50"}, {"limit": "50"}):
        response = await client.get("/api/spend/stream", params=params)
        async with asyncio.timeout(READ_TIMEOUT):
            events = await read_events(response)
        response.close()
        texts.extend(event.data for event in events)
        texts.append(str(dict(response.headers)))

    assert len(texts) > 30
    for text in texts:
        assert_no_secret(text)


async def test_secret_redacted_in_full_row(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    client, _ = await key_rows_server(simulator_factory, server_factory)

    response = await client.get("/api/spend/logs/row-with-key", headers=BEARER)
    row = await response.json()

    assert row["model"] == f"model {REDACTED}"
    assert row["lite"]["model"] == f"model {REDACTED}"
    assert row["lite"]["error_message"] == f"invalid key {REDACTED} passed"
    assert row["proxy_server_request"]["messages"][0]["content"] == f"my key is {REDACTED}"


async def test_secret_headers_in_rows_redacted(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    client, _ = await key_rows_server(simulator_factory, server_factory)

    response = await client.get("/api/spend/logs/row-with-key", headers=BEARER)
    row = await response.json()

    assert row["metadata"]["headers"] == {"Authorization": REDACTED, "accept": "*/*"}
    assert row["proxy_server_request"]["headers"] == {
        "authorization": REDACTED,
        "x-api-key": REDACTED,
    }


async def test_secret_key_hashes_shortened(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    client, _ = await key_rows_server(simulator_factory, server_factory)

    response = await client.get(
        "/api/spend/stream", params={"full": "true", "limit": "1"}, headers=BEARER
    )
    async with asyncio.timeout(READ_TIMEOUT):
        events = await read_events(response)
    response.close()

    [row] = rows_of(events)
    assert row["request_id"] == "row-with-key"
    assert row["api_key"] == "78f90069…b2b6"
    assert row["metadata"]["user_api_key"] == "78f90069…b2b6"
    assert HASH not in json.dumps(rows_of(events))


async def test_secret_lite_row_has_no_key_hash(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    client, simulator = await key_rows_server(simulator_factory, server_factory)

    response = await client.get("/api/spend/stream", params={"limit": "21"}, headers=BEARER)
    async with asyncio.timeout(READ_TIMEOUT):
        events = await read_events(response)
    response.close()

    rows = rows_of(events)
    assert len(rows) == 21
    assert all("api_key" not in row for row in rows)
    for sim_row in simulator.rows:
        assert sim_row.api_key not in json.dumps(rows)


def test_shorten_hash_keeps_ends():
    assert shorten_hash(HASH) == "78f90069…b2b6"


# Settings and logging.


def test_settings_repr_hides_secrets():
    settings = Settings(litellm_key=KEY, auth_token=TOKEN)

    assert_no_secret(repr(settings))
    assert_no_secret(str(settings.model_dump()))


def test_settings_invalid_key_not_quoted():
    bad = KEY + " with space"

    with pytest.raises(ValidationError) as caught:
        Settings(litellm_key=bad)

    assert "must be printable ASCII without spaces" in str(caught.value)
    assert bad not in str(caught.value)


def test_settings_url_with_password_rejected():
    with pytest.raises(ValidationError) as caught:
        Settings(litellm_url=f"http://admin:{KEY}@127.0.0.1:4000")

    assert "must not contain a user or password" in str(caught.value)
    assert KEY not in str(caught.value)


def test_redacting_filter_cleans_message_and_traceback():
    from aria_stream.redact import register_secret

    register_secret(KEY)
    record = logging.LogRecord("test", logging.ERROR, __file__, 1, "key %s", (KEY,), None)
    try:
        raise ValueError(f"failed with {KEY}")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()

    RedactingFilter().filter(record)
    text = logging.Formatter().format(record)

    assert KEY not in text
    assert f"key {REDACTED}" in text
    assert f"ValueError: failed with {REDACTED}" in text


def test_install_log_filter_adds_one_filter():
    handler = logging.StreamHandler()

    install_log_filter([handler])
    install_log_filter([handler])

    assert [type(item) for item in handler.filters] == [RedactingFilter]


def test_redact_replaces_every_occurrence():
    from aria_stream.redact import register_secret

    register_secret(KEY)

    assert redact(f"{KEY}/{KEY}") == f"{REDACTED}/{REDACTED}"
