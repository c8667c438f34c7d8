"""LiteLLMClient against the simulator and small aiohttp apps, over real loopback HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web

from aria_stream.errors import (
    UpstreamAuthError,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamNotFound,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
    UpstreamTimeout,
    UpstreamTruncated,
    UpstreamUnreachable,
)
from aria_stream.jsonrows import MalformedRow
from aria_stream.models import project_lite
from aria_stream.query import SpendQuery
from aria_stream.settings import Settings
from aria_stream.simulator import Fault, Simulator
from aria_stream.upstream import (
    LiteLLMClient,
    PageEnd,
    PageEvent,
    PageStart,
    RowBatch,
    build_http_client,
)
from tests.conftest import SimulatorFactory, settings_for

# A recognisable key: no error message may ever contain it.
SECRET_KEY = "sk-secret-aria-test-key"
LIST_PATHS = ("/spend/logs/v2", "/spend/logs/ui", "/spend/logs")
UNRESOLVABLE_HOST = "aria-stream-test.invalid"

ClientFactory = Callable[..., LiteLLMClient]
AppFactory = Callable[[web.RouteTableDef], Awaitable[str]]


@dataclass
class Reading:
    """Everything one ``iter_pages`` run yielded, and the error that ended it, if any."""

    events: list[PageEvent]
    error: UpstreamError | None

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [row for event in self.events if isinstance(event, RowBatch) for row in event.rows]

    @property
    def ids(self) -> list[str]:
        return [row["request_id"] for row in self.rows]

    @property
    def malformed(self) -> list[MalformedRow]:
        return [
            item for event in self.events if isinstance(event, RowBatch) for item in event.malformed
        ]

    @property
    def page_ends(self) -> list[PageEnd]:
        return [event for event in self.events if isinstance(event, PageEnd)]


async def read_pages(
    client: LiteLLMClient,
    query: SpendQuery | None = None,
    *,
    stop_after: int | None = None,
    **options: Any,
) -> Reading:
    """Run ``iter_pages`` to its end, to an error, or until ``stop_after`` rows were read."""
    events: list[PageEvent] = []
    rows = 0
    try:
        async with aclosing(client.iter_pages(query or SpendQuery(), **options)) as pages:
            async for event in pages:
                events.append(event)
                if isinstance(event, RowBatch):
                    rows += len(event.rows)
                if stop_after is not None and rows >= stop_after:
                    break
    except UpstreamError as error:
        return Reading(events, error)
    return Reading(events, None)


async def list_requests(simulator: Simulator) -> list[tuple[str, str | None, str | None, int]]:
    """Return ``(path, page, page_size, status)`` of every spend-log list request, in order."""
    async with asyncio.timeout(5):
        await simulator.wait_until_idle()
    return [
        (record.path, record.query.get("page"), record.query.get("page_size"), record.status)
        for record in simulator.requests
        if record.path in LIST_PATHS
    ]


def visible_ids(simulator: Simulator) -> list[str]:
    return [row.request_id for row in simulator.visible_rows()]


def assert_clean_message(error: UpstreamError) -> None:
    """Check that a message is one line, ends as a sentence and does not leak the key."""
    assert SECRET_KEY not in error.message
    assert SECRET_KEY not in str(error)
    assert SECRET_KEY not in repr(error.args)
    assert "\n" not in error.message
    assert error.message.endswith(".")


@pytest.fixture
async def client_factory() -> AsyncIterator[ClientFactory]:
    """Build LiteLLM clients from settings or a simulator; their httpx clients close after."""
    http_clients = []

    def make(target: Simulator | Settings, **overrides: Any) -> LiteLLMClient:
        settings = settings_for(target, **overrides) if isinstance(target, Simulator) else target
        http = build_http_client(settings)
        http_clients.append(http)
        return LiteLLMClient(http, settings)

    yield make
    for http in http_clients:
        await http.aclose()


@pytest.fixture
async def app_factory() -> AsyncIterator[AppFactory]:
    """Serve small aiohttp apps on loopback, for upstream responses the simulator never sends."""
    runners: list[web.AppRunner] = []

    async def start(routes: web.RouteTableDef) -> str:
        app = web.Application()
        app.add_routes(routes)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def secret_simulator(simulator_factory: SimulatorFactory) -> Simulator:
    """A simulator with 40 rows whose master key is ``SECRET_KEY``."""
    return await simulator_factory(rows=40, master_key=SECRET_KEY)


def app_settings(url: str, **overrides: Any) -> Settings:
    return Settings(litellm_url=url, litellm_key=SECRET_KEY, **overrides)


def single_route(status: int, body: bytes, content_type: str = "application/json"):
    """Build routes that return one fixed response on every spend-log path."""
    routes = web.RouteTableDef()

    async def respond(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body, content_type=content_type)

    for path in LIST_PATHS:
        routes.get(path)(respond)
    return routes


# Endpoint fallback.


async def test_endpoint_v2_used_first(simulator_factory, client_factory):
    simulator = await simulator_factory(rows=30, variant="v2")
    client = client_factory(simulator, first_page_size=50)

    reading = await read_pages(client)

    assert reading.error is None
    assert reading.ids == visible_ids(simulator)
    assert await list_requests(simulator) == [("/spend/logs/v2", "1", "50", 200)]
    assert client.endpoint == "v2"
    assert reading.events[0] == PageStart("v2", 1, 50)


async def test_pages_default_start_at_five_rows(simulator_factory, client_factory):
    simulator = await simulator_factory(rows=30)
    client = client_factory(simulator)

    reading = await read_pages(client)

    assert reading.error is None
    assert reading.ids == visible_ids(simulator)
    # Page numbers count pages of the current size: rows 0-4, 5-9, 10-19, then 20-29 of 20.
    assert await list_requests(simulator) == [
        ("/spend/logs/v2", "1", "5", 200),
        ("/spend/logs/v2", "2", "5", 200),
        ("/spend/logs/v2", "2", "10", 200),
        ("/spend/logs/v2", "2", "20", 200),
    ]


async def test_endpoint_ui_after_v2_not_found(simulator_factory, client_factory):
    simulator = await simulator_factory(rows=30, variant="ui")
    client = client_factory(simulator, first_page_size=50)

    reading = await read_pages(client)

    assert reading.error is None
    assert reading.ids == visible_ids(simulator)
    assert await list_requests(simulator) == [
        ("/spend/logs/v2", "1", "50", 404),
        ("/spend/logs/ui", "1", "50", 200),
    ]
    assert client.endpoint == "ui"
    assert reading.events[0] == PageStart("ui", 1, 50)


async def test_endpoint_legacy_after_both_not_found(simulator_factory, client_factory):
    simulator = await simulator_factory(rows=30, variant="legacy")
    client = client_factory(simulator, first_page_size=50)

    reading = await read_pages(client)

    assert reading.error is None
    assert reading.ids == visible_ids(simulator)
    assert await list_requests(simulator) == [
        ("/spend/logs/v2", "1", "50", 404),
        ("/spend/logs/ui", "1", "50", 404),
        ("/spend/logs", None, None, 200),
    ]
    assert client.endpoint == "legacy"
    assert reading.events[0] == PageStart("legacy", None, None)


async def test_endpoint_legacy_sent_without_dates(simulator_factory, client_factory):
    simulator = await simulator_factory(rows=5, variant="legacy")
    client = client_factory(simulator)

    await read_pages(client, SpendQuery(model="openai/gpt-4o"))

    legacy = [record for record in simulator.requests if record.path == "/spend/logs"]
    assert [record.query for record in legacy] == [{}]


@pytest.mark.parametrize(
    ("variant", "path"),
    [
        ("v2", "/spend/logs/v2"),
        ("ui", "/spend/logs/ui"),
        ("legacy", "/spend/logs"),
    ],
)
async def test_endpoint_remembered_for_next_read(simulator_factory, client_factory, variant, path):
    simulator = await simulator_factory(rows=30, variant=variant)
    client = client_factory(simulator, first_page_size=50)
    await read_pages(client)
    await list_requests(simulator)
    simulator.requests.clear()

    reading = await read_pages(client)

    assert reading.error is None
    assert reading.ids == visible_ids(simulator)
    requests = await list_requests(simulator)
    assert [(request[0], request[3]) for request in requests] == [(path, 200)]
    assert client.endpoint == variant


async def test_endpoint_missing_everywhere_raises_not_found(app_factory, client_factory):
    url = await app_factory(web.RouteTableDef())
    client = client_factory(app_settings(url))

    reading = await read_pages(client)

    assert isinstance(reading.error, UpstreamNotFound)
    assert reading.error.status == 404
    assert reading.error.message == (
        f"LiteLLM at {url} has none of /spend/logs/v2, /spend/logs/ui or /spend/logs; check "
        "that ARIA_LITELLM_URL points at the proxy itself."
    )
    assert client.endpoint is None
    assert reading.events == []
    assert_clean_message(reading.error)


# Paging.


async def test_paging_reads_every_row_newest_first(simulator_factory, client_factory):
    simulator = await simulator_factory(rows=230)
    client = client_factory(simulator, first_page_size=50, page_size=100)

    reading = await read_pages(client)

    assert reading.error is None
    assert reading.ids == visible_ids(simulator)
    assert len(set(reading.ids)) == 230
    assert await list_requests(simulator) == [
        ("/spend/logs/v2", "1", "50", 200),
        ("/spend/logs/v2", "2", "50", 200),
        ("/spend/logs/v2", "2", "100", 200),
        ("/spend/logs/v2", "3", "100", 200),
    ]
    assert [end.rows for end in reading.page_ends] == [50, 50, 100, 30]


async def test_paging_stops_after_empty_page(simulator_factory, client_factory):
    simulator = await simulator_factory(rows=200)
    client = client_factory(simulator, first_page_size=50, page_size=100)

    reading = await read_pages(client)

    assert reading.ids == visible_ids(simulator)
    assert await list_requests(simulator) == [
        ("/spend/logs/v2", "1", "50", 200),
        ("/spend/logs/v2", "2", "50", 200),
        ("/spend/logs/v2", "2", "100", 200),
        ("/spend/logs/v2", "3", "100", 200),
    ]
    assert [end.rows for end in reading.page_ends] == [50, 50, 100, 0]


async def test_paging_doubles_page_size_to_maximum(simulator_factory, client_factory):
    simulator = await simulator_factory(rows=1000)
    client = client_factory(simulator, first_page_size=25, page_size=200)

    reading = await read_pages(client)

    assert reading.ids == visible_ids(simulator)
    requests = await list_requests(simulator)
    assert [(page, size) for _, page, size, _ in requests] == [
        ("1", "25"),
        ("2", "25"),
        ("2", "50"),
        ("2", "100"),
        ("2", "200"),
        ("3", "200"),
        ("4", "200"),
        ("5", "200"),
        ("6", "200"),
    ]


async def test_paging_fixed_page_size_never_doubles(simulator_factory, client_factory):
    simulator = await simulator_factory(rows=100)
    client = client_factory(simulator, first_page_size=10)

    reading = await read_pages(client, page_size=40)

    assert reading.ids == visible_ids(simulator)
    requests = await list_requests(simulator)
    assert [(page, size) for _, page, size, _ in requests] == [
        ("1", "40"),
        ("2", "40"),
        ("3", "40"),
    ]


async def test_prefetch_overlaps_next_page_request(simulator_factory, client_factory):
    # Each page waits 0.1 s before its first byte and then streams for about 0.25 s.
    simulator = await simulator_factory(rows=50, latency_base=0.1, bandwidth=1_000_000)
    client = client_factory(simulator, first_page_size=20, page_size=20)

    reading = await read_pages(client, expected_rows=50)

    assert reading.error is None
    assert reading.ids == visible_ids(simulator)
    await list_requests(simulator)
    pages = [record for record in simulator.requests if record.path in LIST_PATHS]
    assert [record.query["page"] for record in pages] == ["1", "2", "3"]
    assert all(record.completed for record in pages)
    # Page 2 was requested before page 1 had finished, and page 3 before page 2 had.
    assert pages[1].started < pages[0].at
    assert pages[2].started < pages[1].at


async def test_prefetch_stays_within_expected_rows(simulator_factory, client_factory):
    simulator = await simulator_factory(rows=100)
    client = client_factory(simulator, first_page_size=10, page_size=10)

    reading = await read_pages(client, expected_rows=20, stop_after=20)

    assert reading.error is None
    assert reading.ids == visible_ids(simulator)[:20]
    requests = await list_requests(simulator)
    assert [(page, size) for _, page, size, _ in requests] == [("1", "10"), ("2", "10")]


async def test_prefetch_closed_when_caller_stops_early(simulator_factory, client_factory):
    # Page 1 streams for about 0.6 s after its first byte, and page 2 waits 1 s for its own.
    simulator = await simulator_factory(rows=100, latency_base=1.0, bandwidth=200_000)
    client = client_factory(simulator, first_page_size=10, page_size=10)

    reading = await read_pages(client, expected_rows=100, stop_after=10)

    assert reading.error is None
    assert reading.ids == visible_ids(simulator)[:10]
    requests = await list_requests(simulator)
    assert [(page, size) for _, page, size, _ in requests] == [("1", "10"), ("2", "10")]
    # Page 2 was still waiting for its first byte when the caller stopped.
    page_two = [record for record in simulator.requests if record.query.get("page") == "2"]
    assert [record.completed for record in page_two] == [False]


async def test_prefetch_failure_ignored_when_unread(simulator_factory, client_factory):
    # Page 1 streams for about 0.6 s, long enough for the request for page 2 to fail.
    simulator = await simulator_factory(rows=100, bandwidth=200_000)
    client = client_factory(simulator, first_page_size=10, page_size=10)
    events: list[PageEvent] = []

    async with aclosing(client.iter_pages(SpendQuery(), expected_rows=100)) as pages:
        async for event in pages:
            events.append(event)
            if isinstance(event, PageStart):
                # The request for page 2 has not reached the simulator yet.
                simulator.fault = Fault("server_error", count=1)
            if isinstance(event, PageEnd):
                break

    await list_requests(simulator)
    requests = sorted(simulator.requests, key=lambda record: record.started)
    assert [(record.query["page"], record.status) for record in requests] == [
        ("1", 200),
        ("2", 500),
    ]
    assert sum(len(event.rows) for event in events if isinstance(event, RowBatch)) == 10


async def test_prefetch_failure_raised_when_read(simulator_factory, client_factory):
    simulator = await simulator_factory(rows=100)
    client = client_factory(simulator, first_page_size=10, page_size=10, max_backoff=0.1)
    events: list[PageEvent] = []
    error: UpstreamError | None = None

    try:
        async with aclosing(client.iter_pages(SpendQuery(), expected_rows=100)) as pages:
            async for event in pages:
                events.append(event)
                if isinstance(event, PageStart) and event.page == 1:
                    simulator.fault = Fault("server_error", count=1)
    except UpstreamError as raised:
        error = raised

    assert isinstance(error, UpstreamServerError)
    assert error.status == 500
    assert sum(len(event.rows) for event in events if isinstance(event, RowBatch)) == 10


async def test_sort_by_sent_and_followed(simulator_factory, client_factory):
    simulator = await simulator_factory(rows=40)
    client = client_factory(simulator, first_page_size=20, page_size=20)

    reading = await read_pages(client, sort_by="endTime")

    assert reading.error is None
    by_end = sorted(simulator.visible_rows(), key=lambda row: row.end, reverse=True)
    assert reading.ids == [row.request_id for row in by_end]
    await list_requests(simulator)
    sorts = {(r.query.get("sort_by"), r.query.get("sort_order")) for r in simulator.requests}
    assert sorts == {("endTime", "desc")}


def sort_rejecting_routes(simulator: Simulator, queries: list[dict[str, str]]) -> web.RouteTableDef:
    """Build a v2 route that rejects ``sort_by``, else returns ``simulator``'s response."""
    routes = web.RouteTableDef()

    @routes.get("/spend/logs/v2")
    async def pages(request: web.Request) -> web.Response:
        queries.append(dict(request.query))
        if "sort_by" in request.query:
            error = {
                "message": f"Invalid sort_by: {request.query['sort_by']}",
                "type": "bad_request",
                "param": "sort_by",
                "code": "400",
            }
            return web.json_response({"error": error}, status=400)
        async with httpx.AsyncClient(base_url=simulator.url) as http:
            upstream = await http.get(
                "/spend/logs/v2",
                params=dict(request.query),
                headers={"Authorization": request.headers["Authorization"]},
            )
        return web.Response(body=upstream.content, status=upstream.status_code)

    return routes


async def test_sort_rejected_retries_without_sort(simulator_factory, app_factory, client_factory):
    simulator = await simulator_factory(rows=30)
    queries: list[dict[str, str]] = []
    url = await app_factory(sort_rejecting_routes(simulator, queries))
    settings = settings_for(simulator).model_copy(
        update={"litellm_url": url, "first_page_size": 50}
    )
    client = client_factory(settings)

    first = await read_pages(client, sort_by="endTime")
    second = await read_pages(client, sort_by="endTime")

    assert first.error is None
    assert first.ids == visible_ids(simulator)
    assert second.ids == visible_ids(simulator)
    assert client.sorts is False
    assert [query.get("sort_by") for query in queries] == ["endTime", None, None]


async def test_paging_offset_skips_leading_rows(simulator_factory, client_factory):
    simulator = await simulator_factory(rows=120)
    client = client_factory(simulator, first_page_size=50, page_size=100)

    reading = await read_pages(client, offset=75)

    assert reading.ids == visible_ids(simulator)[75:]
    requests = await list_requests(simulator)
    assert [(page, size) for _, page, size, _ in requests] == [("2", "50"), ("2", "100")]


async def test_paging_reads_past_capped_total(simulator_factory, client_factory):
    simulator = await simulator_factory(rows=10_050)
    client = client_factory(simulator, first_page_size=1000, page_size=1000)

    reading = await read_pages(client)

    assert reading.error is None
    assert len(reading.ids) == 10_050
    assert reading.ids == visible_ids(simulator)
    assert [(end.total, end.total_is_capped) for end in reading.page_ends] == [(10_000, True)] * 11
    requests = await list_requests(simulator)
    assert [page for _, page, _, _ in requests] == [str(page) for page in range(1, 12)]


# Page size fallback.


async def test_page_size_rejected_drops_to_100(simulator_factory, client_factory):
    simulator = await simulator_factory(rows=700, max_page_size=100)
    client = client_factory(simulator, first_page_size=50, page_size=1000)

    reading = await read_pages(client)

    assert reading.error is None
    assert reading.ids == visible_ids(simulator)
    assert client.max_page_size == 100
    assert await list_requests(simulator) == [
        ("/spend/logs/v2", "1", "50", 200),
        ("/spend/logs/v2", "2", "50", 200),
        ("/spend/logs/v2", "2", "100", 200),
        ("/spend/logs/v2", "2", "200", 422),
        ("/spend/logs/v2", "3", "100", 200),
        ("/spend/logs/v2", "4", "100", 200),
        ("/spend/logs/v2", "5", "100", 200),
        ("/spend/logs/v2", "6", "100", 200),
        ("/spend/logs/v2", "7", "100", 200),
        ("/spend/logs/v2", "8", "100", 200),
    ]


async def test_page_size_rejected_on_first_page(simulator_factory, client_factory):
    simulator = await simulator_factory(rows=150, max_page_size=100, variant="ui")
    client = client_factory(simulator, first_page_size=1000, page_size=1000)

    reading = await read_pages(client)

    assert reading.ids == visible_ids(simulator)
    assert await list_requests(simulator) == [
        ("/spend/logs/v2", "1", "1000", 404),
        ("/spend/logs/ui", "1", "1000", 422),
        ("/spend/logs/ui", "1", "100", 200),
        ("/spend/logs/ui", "2", "100", 200),
    ]
    assert client.endpoint == "ui"


async def test_page_size_limit_kept_for_next_read(simulator_factory, client_factory):
    simulator = await simulator_factory(rows=250, max_page_size=100)
    client = client_factory(simulator, first_page_size=1000, page_size=1000)
    await read_pages(client)
    await list_requests(simulator)
    simulator.requests.clear()

    reading = await read_pages(client)

    assert reading.ids == visible_ids(simulator)
    requests = await list_requests(simulator)
    assert [(page, size, status) for _, page, size, status in requests] == [
        ("1", "100", 200),
        ("2", "100", 200),
        ("3", "100", 200),
    ]


# Early close.


async def test_legacy_close_stops_body_early(simulator_factory, client_factory):
    # About 60 MB, far more than the socket buffers of both ends can hold.
    simulator = await simulator_factory(rows=400, variant="legacy", prompt_bytes=150_000)
    rows = simulator.visible_rows()
    body_size = len(b"[]") + sum(len(orjson.dumps(row.to_dict("legacy"))) for row in rows)
    body_size += len(rows) - 1
    client = client_factory(simulator)

    reading = await read_pages(client, stop_after=2)

    assert reading.ids[:2] == visible_ids(simulator)[:2]
    async with asyncio.timeout(5):
        await simulator.wait_until_idle()
    record = next(record for record in simulator.requests if record.path == "/spend/logs")
    assert record.status == 200
    assert record.completed is False
    assert record.bytes_sent < body_size // 4


# Typed errors.


@pytest.mark.parametrize(
    ("fault", "error_class", "status", "message"),
    [
        pytest.param(
            Fault("unauthorized"),
            UpstreamAuthError,
            401,
            "LiteLLM at {url} rejected the key with 401 (Authentication Error, Invalid proxy "
            "server token passed.); set ARIA_LITELLM_KEY to a key that may read spend logs, such "
            "as the master key.",
            id="unauthorized",
        ),
        pytest.param(
            Fault("rate_limit", retry_after=7),
            UpstreamRateLimited,
            429,
            "LiteLLM at {url} is rate limiting us with 429 (Rate limit exceeded for the spend "
            "logs route. Try again later.); retry after 7 s.",
            id="rate-limit",
        ),
        pytest.param(
            Fault("server_error"),
            UpstreamServerError,
            500,
            "LiteLLM at {url} failed with 500 (/spend/logs Error(Database not connected. Connect "
            "a database to your proxy)); check the proxy's logs and database.",
            id="server-error",
        ),
        pytest.param(
            Fault("html_502"),
            UpstreamServerError,
            502,
            "LiteLLM at {url} failed with 502 (HTML page: 502 Bad Gateway 502 Bad Gateway "
            "nginx); check the proxy's logs and database.",
            id="html-502",
        ),
        pytest.param(
            Fault("html_200"),
            UpstreamBadResponse,
            200,
            "LiteLLM at {url} answered with an HTML page instead of JSON ('Sign in'); check that "
            "ARIA_LITELLM_URL is the proxy, not a login page or gateway.",
            id="html-200",
        ),
        pytest.param(
            Fault("reset"),
            UpstreamUnreachable,
            None,
            "LiteLLM at {url} closed the connection before answering (RemoteProtocolError); "
            "check that the proxy is running.",
            id="reset",
        ),
    ],
)
async def test_error_from_fault_is_typed(
    secret_simulator, client_factory, fault, error_class, status, message
):
    secret_simulator.fault = fault
    client = client_factory(secret_simulator)

    reading = await read_pages(client)

    assert type(reading.error) is error_class
    assert reading.error.status == status
    assert reading.error.message == message.format(url=secret_simulator.url)
    assert reading.rows == []
    assert client.last_error is reading.error
    assert_clean_message(reading.error)


async def test_error_rate_limit_keeps_retry_after(secret_simulator, client_factory):
    secret_simulator.fault = Fault("rate_limit", retry_after=7)
    client = client_factory(secret_simulator)

    reading = await read_pages(client)

    assert isinstance(reading.error, UpstreamRateLimited)
    assert reading.error.retry_after == 7.0


async def test_error_wrong_key_names_setting(simulator_factory, client_factory):
    simulator = await simulator_factory(rows=10)
    client = client_factory(app_settings(simulator.url))

    reading = await read_pages(client)

    assert isinstance(reading.error, UpstreamAuthError)
    assert reading.error.status == 401
    key_hash = hashlib.sha256(SECRET_KEY.encode()).hexdigest()
    assert reading.error.message.startswith(
        f"LiteLLM at {simulator.url} rejected the key with 401 (Authentication Error, Invalid "
        f"proxy server token passed. key={key_hash}, not found in db."
    )
    assert reading.error.message.endswith(
        "; set ARIA_LITELLM_KEY to a key that may read spend logs, such as the master key."
    )
    assert await list_requests(simulator) == [("/spend/logs/v2", "1", "5", 401)]
    assert_clean_message(reading.error)


async def test_error_connection_refused(secret_simulator, client_factory):
    client = client_factory(secret_simulator)
    await secret_simulator.stop_listening()

    reading = await read_pages(client)

    assert isinstance(reading.error, UpstreamUnreachable)
    assert reading.error.message == (
        f"Cannot reach LiteLLM at {secret_simulator.url}: the connection was refused; check "
        "ARIA_LITELLM_URL and that the proxy is running."
    )
    assert_clean_message(reading.error)


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (socket.EAI_NONAME, "Name or service not known"),
        (socket.EAI_AGAIN, "Temporary failure in name resolution"),
        (socket.EAI_NODATA, "No address associated with hostname"),
    ],
    ids=["no-name", "again", "no-data"],
)
async def test_error_host_not_resolved(client_factory, monkeypatch, code, text):
    # The lookup fails in-process: the machine's resolver is not on loopback, and a query for
    # the name must not leave it.
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == UNRESOLVABLE_HOST:
            raise socket.gaierror(code, text)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    url = f"http://{UNRESOLVABLE_HOST}:4000"
    client = client_factory(app_settings(url))

    reading = await read_pages(client)

    assert isinstance(reading.error, UpstreamUnreachable)
    assert reading.error.message == (
        f"Cannot reach LiteLLM at {url}: its host name could not be resolved; check "
        "ARIA_LITELLM_URL and that the proxy is running."
    )
    assert_clean_message(reading.error)


async def test_error_first_byte_timeout(secret_simulator, client_factory):
    secret_simulator.fault = Fault("hang")
    client = client_factory(secret_simulator, first_byte_timeout=0.2)

    reading = await read_pages(client)

    assert isinstance(reading.error, UpstreamTimeout)
    assert reading.error.message == (
        f"LiteLLM at {secret_simulator.url} sent no response headers within 0.2 s; raise "
        "ARIA_FIRST_BYTE_TIMEOUT or ask for fewer rows."
    )
    assert_clean_message(reading.error)


async def test_error_idle_timeout_keeps_rows(secret_simulator, client_factory):
    secret_simulator.fault = Fault("stall")
    client = client_factory(secret_simulator, idle_timeout=0.5)

    reading = await read_pages(client)

    assert reading.ids == visible_ids(secret_simulator)[:1]
    assert isinstance(reading.error, UpstreamTimeout)
    assert reading.error.message == (
        f"LiteLLM at {secret_simulator.url} stopped sending for 0.5 s in the middle of a "
        "response, after 1 rows; raise ARIA_IDLE_TIMEOUT if the proxy is slow."
    )
    assert_clean_message(reading.error)


async def test_error_cut_mid_row_keeps_rows(secret_simulator, client_factory):
    secret_simulator.fault = Fault("truncate")
    client = client_factory(secret_simulator)

    reading = await read_pages(client)

    assert reading.ids == visible_ids(secret_simulator)[:1]
    assert isinstance(reading.error, UpstreamTruncated)
    assert reading.error.status == 200
    assert reading.error.message == (
        f"LiteLLM at {secret_simulator.url} closed the connection in the middle of a response "
        "after 1 rows (RemoteProtocolError); the rows before the cut were kept."
    )
    assert_clean_message(reading.error)


async def test_error_body_ends_inside_json(app_factory, client_factory, secret_simulator):
    first, second = secret_simulator.visible_rows()[:2]
    body = b'{"data":[' + first.render("v2") + b"," + second.render("v2")[:200]
    url = await app_factory(single_route(200, body))
    client = client_factory(app_settings(url))

    reading = await read_pages(client)

    assert reading.ids == [first.request_id]
    assert isinstance(reading.error, UpstreamTruncated)
    assert reading.error.message == (
        f"LiteLLM at {url} sent an incomplete body (body ended inside the row list after 1 "
        "rows); the rows before the cut were kept and the rest will be read again."
    )
    assert_clean_message(reading.error)


async def test_error_plain_text_body(app_factory, client_factory):
    url = await app_factory(single_route(200, b"Internal error, try later", "application/json"))
    client = client_factory(app_settings(url))

    reading = await read_pages(client)

    assert isinstance(reading.error, UpstreamBadResponse)
    assert reading.error.message == (
        f"LiteLLM at {url} answered with a body that is not JSON ('Internal error, try later'); "
        "check that ARIA_LITELLM_URL is the proxy."
    )
    assert_clean_message(reading.error)


@pytest.mark.parametrize(
    ("status", "body", "error_class", "message"),
    [
        pytest.param(
            403,
            {
                "error": {
                    "message": {"error": "Not authorized to view team spend for team_id=team-x"},
                    "type": "auth_error",
                    "param": "None",
                    "code": "403",
                }
            },
            UpstreamAuthError,
            "LiteLLM at {url} rejected the key with 403 (Not authorized to view team spend for "
            "team_id=team-x); set ARIA_LITELLM_KEY to a key that may read spend logs, such as "
            "the master key.",
            id="403-object-message",
        ),
        pytest.param(
            401,
            {
                "error": {
                    "message": "Authentication Error, No api key passed in.",
                    "type": "auth_error",
                    "param": "None",
                    "code": "401",
                }
            },
            UpstreamAuthError,
            "LiteLLM at {url} rejected the key with 401 (Authentication Error, No api key "
            "passed in.); set ARIA_LITELLM_KEY to a key that may read spend logs, such as the "
            "master key.",
            id="401-string-message",
        ),
        pytest.param(
            422,
            {
                "detail": [
                    {
                        "type": "missing",
                        "loc": ["query", "session_id"],
                        "msg": "Field required",
                        "input": None,
                    }
                ]
            },
            UpstreamRejected,
            "LiteLLM at {url} rejected the query with 422 (query.session_id: Field required); "
            "check the filter values.",
            id="422-validation-list",
        ),
        pytest.param(
            400,
            {"detail": "Invalid sort_by: cost"},
            UpstreamRejected,
            "LiteLLM at {url} rejected the query with 400 (Invalid sort_by: cost); check the "
            "filter values.",
            id="400-detail-string",
        ),
        pytest.param(
            500,
            {"detail": {"error": "Database not connected"}},
            UpstreamServerError,
            'LiteLLM at {url} failed with 500 ({{"error":"Database not connected"}}); check the '
            "proxy's logs and database.",
            id="500-detail-object",
        ),
        pytest.param(
            503,
            None,
            UpstreamServerError,
            "LiteLLM at {url} failed with 503 (empty body); check the proxy's logs and database.",
            id="503-empty",
        ),
    ],
)
async def test_error_body_message_extracted(
    app_factory, client_factory, status, body, error_class, message
):
    url = await app_factory(single_route(status, b"" if body is None else orjson.dumps(body)))
    client = client_factory(app_settings(url))

    reading = await read_pages(client)

    assert type(reading.error) is error_class
    assert reading.error.status == status
    assert reading.error.message == message.format(url=url)
    assert client.max_page_size == 1000
    assert_clean_message(reading.error)


# Tolerance.


async def test_v188_metadata_string_projects_like_v2(simulator_factory, client_factory):
    simulator = await simulator_factory(rows=60, variant="v1.88")
    client = client_factory(simulator)

    reading = await read_pages(client)

    assert reading.error is None
    assert all(isinstance(row["metadata"], str) for row in reading.rows)
    expected = [project_lite(row.to_dict("v2")) for row in simulator.visible_rows()]
    assert [project_lite(row) for row in reading.rows] == expected


async def test_malformed_row_fault_keeps_good_rows(simulator_factory, client_factory):
    simulator = await simulator_factory(rows=30, fault=Fault("malformed_row", count=1))
    client = client_factory(simulator)

    reading = await read_pages(client)

    assert reading.error is None
    assert reading.ids == visible_ids(simulator)
    assert len(reading.malformed) == 1
    assert "malformed-row" in reading.malformed[0].excerpt


async def test_malformed_row_counts_toward_page(simulator_factory, client_factory):
    """A malformed row made its page look short, so the pages after it were never read."""
    simulator = await simulator_factory(rows=120)
    middle = simulator.visible_rows()[20]
    broken = simulator.add_raw(b'{"request_id": "broken", "spend": }', middle.start)
    client = client_factory(simulator, first_page_size=50, page_size=50)

    reading = await read_pages(client)

    assert reading.error is None
    assert len(reading.malformed) == 1
    assert reading.ids == [row for row in visible_ids(simulator) if row != broken.request_id]
    assert len(reading.ids) == 120


# Single entries.


async def test_fetch_entry_merges_heavy_columns(simulator_factory, client_factory):
    simulator = await simulator_factory(rows=30)
    client = client_factory(simulator)
    target = simulator.visible_rows()[7]

    entry = await client.fetch_entry(target.request_id)

    assert entry is not None
    assert entry["request_id"] == target.request_id
    assert entry["proxy_server_request"] == target.detail()["proxy_server_request"]
    assert entry["response"] == target.detail()["response"]
    assert entry["spend"] == target.spend
    async with asyncio.timeout(5):
        await simulator.wait_until_idle()
    assert [record.path for record in simulator.requests] == [
        "/spend/logs/v2",
        f"/spend/logs/ui/{target.request_id}",
    ]


async def test_fetch_entry_legacy_variant(simulator_factory, client_factory):
    simulator = await simulator_factory(rows=30, variant="legacy", prompt_bytes=300)
    client = client_factory(simulator)
    target = simulator.visible_rows()[4]

    entry = await client.fetch_entry(target.request_id)

    assert entry is not None
    assert entry["request_id"] == target.request_id
    assert entry["proxy_server_request"] == target.detail()["proxy_server_request"]
    assert entry["response"] == target.detail()["response"]
    legacy = [record for record in simulator.requests if record.path == "/spend/logs"]
    assert [record.query for record in legacy] == [{"request_id": target.request_id}]


@pytest.mark.parametrize("variant", ["v2", "legacy"])
async def test_fetch_entry_unknown_id_returns_none(simulator_factory, client_factory, variant):
    simulator = await simulator_factory(rows=30, variant=variant)
    client = client_factory(simulator)

    entry = await client.fetch_entry("chatcmpl-does-not-exist")

    assert entry is None
