"""Operations endpoints over loopback HTTP: ``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from aria_stream.settings import Settings
from aria_stream.simulator import Fault, Simulator
from tests.conftest import ServerFactory, SimulatorFactory
from tests.tail_support import (
    FAST_TAIL,
    add_rows,
    ago,
    all_live,
    eventually,
    open_to_done,
    request_ids,
    tail_of,
)


async def get_json(client: TestClient, path: str) -> tuple[int, Any]:
    response = await client.get(path)
    return response.status, await response.json()


async def test_healthz_returns_ok(simulator: Simulator, server_factory: ServerFactory):
    client = await server_factory(simulator)

    assert await get_json(client, "/healthz") == (200, {"ok": True})


# Readiness.


async def test_readyz_ready_after_stream(simulator: Simulator, server_factory: ServerFactory):
    client = await server_factory(simulator, **FAST_TAIL)
    await open_to_done(client, limit="5")

    status, body = await get_json(client, "/readyz")

    assert status == 200
    assert body == {"ok": True, "reason": "LiteLLM answered 0 s ago"}


async def test_readyz_idle_server_asks_upstream(
    simulator: Simulator, server_factory: ServerFactory
):
    client = await server_factory(simulator, **FAST_TAIL)

    status, body = await get_json(client, "/readyz")

    assert (status, body) == (200, {"ok": True, "reason": "LiteLLM answered just now"})
    assert [record.query["page_size"] for record in simulator.requests] == ["1"]


async def test_readyz_unavailable_while_down(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    simulator = await simulator_factory(rows=10)
    client = await server_factory(simulator, **FAST_TAIL)
    await open_to_done(client, limit="5")
    # Stopping the simulator also closes the connections the app keeps alive to it.
    await simulator.stop()
    await eventually(lambda: tail_of(client).poller.failures >= 1, "the poller noticed the outage")

    status, body = await get_json(client, "/readyz")

    assert status == 503
    assert body == {
        "ok": False,
        "reason": f"Cannot reach LiteLLM at {simulator.url}: the connection was refused; check "
        "ARIA_LITELLM_URL and that the proxy is running.",
    }


async def test_readyz_unavailable_with_wrong_key(
    simulator: Simulator, server_factory: ServerFactory
):
    client = await server_factory(Settings(litellm_url=simulator.url, litellm_key="sk-not-the-key"))

    status, body = await get_json(client, "/readyz")

    assert status == 503
    assert body["ok"] is False
    assert "rejected the key with 401" in body["reason"]
    assert "sk-not-the-key" not in body["reason"]


async def test_readyz_probe_bounded_by_timeout(simulator: Simulator, server_factory: ServerFactory):
    client = await server_factory(simulator, first_byte_timeout=0.3)
    simulator.fault = Fault("hang")

    status, body = await get_json(client, "/readyz")
    simulator.fault = None

    assert status == 503
    assert "sent no response headers within 0.3 s" in body["reason"]


async def test_readyz_ready_again_after_recovery(
    simulator: Simulator, server_factory: ServerFactory
):
    client = await server_factory(simulator, **FAST_TAIL)
    simulator.fault = Fault("server_error", count=1)
    unavailable = await get_json(client, "/readyz")

    ready = await get_json(client, "/readyz")

    assert unavailable[0] == 503
    assert "failed with 500" in unavailable[1]["reason"]
    assert ready == (200, {"ok": True, "reason": "LiteLLM answered just now"})


# Metrics.


async def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Return every sample of ``/metrics`` by name and sorted labels."""
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


METRIC_NAMES = [
    "aria_stream_subscribers",
    "aria_stream_events_sent_total",
    "aria_stream_sent_bytes_total",
    "aria_stream_rows_dropped_lag_total",
    "aria_stream_rows_skipped_total",
    "aria_stream_upstream_requests_total",
    "aria_stream_upstream_latency_seconds_bucket",
    "aria_stream_upstream_latency_seconds_count",
    "aria_stream_poll_lag_seconds",
    "aria_stream_polls_total",
]


async def test_metrics_lists_every_metric(simulator: Simulator, server_factory: ServerFactory):
    client = await server_factory(simulator, **FAST_TAIL)
    reader = await open_to_done(client, limit="5")
    await all_live(client, 1)

    names = {name for name, _ in await scrape(client)}
    reader.close()

    assert set(METRIC_NAMES) <= names


async def test_metrics_values_follow_streams(simulator: Simulator, server_factory: ServerFactory):
    client = await server_factory(simulator, **FAST_TAIL)
    before = await scrape(client)
    reader = await open_to_done(client, limit="120")
    await all_live(client, 1)
    rows = add_rows(simulator, [ago(1.0), ago(1.5)])
    await reader.read_rows(request_ids(rows))
    during = await scrape(client)
    reader.close()
    await eventually(lambda: not tail_of(client).subscribers, "the stream left")
    after = await scrape(client)

    assert value(before, "aria_stream_subscribers") == 0
    assert value(during, "aria_stream_subscribers") == 1
    assert value(after, "aria_stream_subscribers") == 0
    # Backfill events: 120 rows in events of at most 100, and the live event of two rows.
    assert value(during, "aria_stream_events_sent_total", event="meta") == 1
    assert value(during, "aria_stream_events_sent_total", event="done") == 1
    assert value(during, "aria_stream_events_sent_total", event="entries") >= 3
    assert value(during, "aria_stream_sent_bytes_total") > len(reader.text) / 2
    assert value(during, "aria_stream_upstream_requests_total", endpoint="v2", outcome="200") >= 3
    assert value(during, "aria_stream_upstream_latency_seconds_count", endpoint="v2") >= 3
    assert value(during, "aria_stream_polls_total", outcome="ok") >= 1
    assert 0 < value(during, "aria_stream_poll_lag_seconds") < 60


async def test_metrics_bytes_match_wire(simulator: Simulator, server_factory: ServerFactory):
    client = await server_factory(simulator, **FAST_TAIL)
    reader = await open_to_done(client, limit="50")
    await all_live(client, 1)

    samples = await scrape(client)

    assert value(samples, "aria_stream_sent_bytes_total") == len(reader.text.encode())


async def test_metrics_count_upstream_failures(simulator: Simulator, server_factory: ServerFactory):
    client = await server_factory(simulator, **FAST_TAIL)
    reader = await open_to_done(client, limit="5")
    await all_live(client, 1)
    simulator.fault = Fault("server_error", count=2)
    await reader.read_event("upstream_ok")

    samples = await scrape(client)

    assert value(samples, "aria_stream_upstream_requests_total", endpoint="v2", outcome="500") == 2
    assert value(samples, "aria_stream_polls_total", outcome="error") == 2
