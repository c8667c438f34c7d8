"""The live tail over loopback HTTP: one shared poller, fan-out with server-side filters, late
rows, the hand-over from the backfill, and upstream faults while the streams stay open."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from aria_stream.broker import LocalBroker
from aria_stream.errors import UpstreamRateLimited, UpstreamServerError
from aria_stream.metrics import Metrics
from aria_stream.poller import Poller
from aria_stream.query import SpendQuery
from aria_stream.settings import Settings
from aria_stream.simulator import Fault, SimRow, Simulator
from aria_stream.simulator.dataset import FAILURES, PROFILES
from tests.conftest import ServerFactory, SimulatorFactory
from tests.tail_support import (
    FAST_TAIL,
    StreamReader,
    add_ended,
    add_rows,
    ago,
    all_live,
    allow_streams,
    backfill_ids,
    calls_per_poll,
    eventually,
    ids_of,
    live_ids,
    metric_value,
    named,
    oldest_first,
    open_stream,
    open_to_done,
    polls_pass,
    read_exactly,
    request_ids,
    split_at_done,
    tail_of,
)


def spread(count: int, newest: float = 1.0) -> list[Any]:
    """Return ``count`` distinct start times from ``newest`` seconds ago backwards, 10 ms apart."""
    return [ago(newest + index * 0.01) for index in range(count)]


# The poller's lifetime and its load on LiteLLM.


async def test_poller_idle_without_streams(simulator: Simulator, server_factory: ServerFactory):
    client = await server_factory(simulator, **FAST_TAIL)
    await asyncio.sleep(3 * FAST_TAIL["poll_interval"])

    assert tail_of(client).running is False
    assert simulator.list_calls() == 0


async def test_poller_starts_with_first_stream(simulator: Simulator, server_factory: ServerFactory):
    client = await server_factory(simulator, **FAST_TAIL)
    await open_to_done(client, limit="5")

    assert tail_of(client).running is True
    await polls_pass(client, 1)


async def test_poller_stops_linger_after_last_stream(
    simulator: Simulator, server_factory: ServerFactory
):
    client = await server_factory(simulator, **{**FAST_TAIL, "poller_linger": 0.5})
    tail = tail_of(client)
    reader = await open_to_done(client, limit="5")
    await polls_pass(client, 1)

    reader.close()
    await eventually(lambda: not tail.subscribers, "the stream left")
    running_after_leave = tail.running
    await eventually(lambda: not tail.running, "the poller stopped")
    calls = simulator.list_calls()
    await asyncio.sleep(3 * FAST_TAIL["poll_interval"])

    assert running_after_leave is True
    assert simulator.list_calls() == calls


async def test_poller_starts_polls_at_fixed_rate(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    # Every request waits 0.2 s for its response, half the poll interval.
    simulator = await simulator_factory(rows=5, latency_base=0.2)
    client = await server_factory(simulator, **{**FAST_TAIL, "poll_interval": 0.4})
    await open_to_done(client, limit="5")
    await polls_pass(client, 6)
    await simulator.wait_until_idle()

    starts = sorted(
        record.started for record in simulator.requests if record.query.get("page_size") == "1"
    )
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]

    assert len(gaps) >= 5
    # Never two polls within one interval, and the next starts one interval after the last
    # started, not after it ended (that would make the gaps 0.6 s).
    assert min(gaps) >= 0.39
    assert sorted(gaps)[len(gaps) // 2] < 0.5


@pytest.mark.parametrize("streams", [1, 50])
async def test_poller_one_request_per_quiet_poll(
    simulator: Simulator, server_factory: ServerFactory, streams: int
):
    settings = {**FAST_TAIL, "poll_interval": 0.3}
    client = await server_factory(simulator, **settings, **allow_streams(streams))
    readers = [await open_to_done(client, limit="5") for _ in range(streams)]
    await all_live(client, streams)

    polls, calls = await calls_per_poll(client, simulator, 3)

    assert polls >= 3
    assert calls == polls
    assert len(tail_of(client).subscribers) == len(readers)


async def busy_tail(
    simulator: Simulator, server_factory: ServerFactory
) -> tuple[TestClient, StreamReader]:
    """Start one live stream over a window of 400 rows; return its client and reader."""
    add_ended(simulator, spread(400, newest=2.0))
    client = await server_factory(simulator, **FAST_TAIL)
    reader = await open_to_done(client, limit="5")
    await all_live(client, 1)
    await polls_pass(client, 1)
    await simulator.wait_until_idle()
    return client, reader


def window_reads(simulator: Simulator, since: float) -> list[dict[str, str]]:
    """Return the queries of the poller's reads (not its counts) logged from ``since`` on."""
    return [
        record.query
        for record in simulator.requests
        if record.at >= since and record.query.get("page_size", "1") != "1"
    ]


async def test_poller_page_sized_to_missing_rows(
    simulator: Simulator, server_factory: ServerFactory
):
    client, reader = await busy_tail(simulator, server_factory)
    mark = time.monotonic()

    fresh = add_ended(simulator, spread(3, newest=0.5))
    received = await read_exactly(client, simulator, [reader], request_ids(fresh), polls=1)
    await simulator.wait_until_idle()
    sizes = [int(query["page_size"]) for query in window_reads(simulator, mark)]

    assert received == [oldest_first(fresh)]
    # The 3 new rows, then the marker row: each read requests the missing rows plus 10.
    assert sizes == [13, 11]


async def test_poller_finds_late_row_on_first_page(
    simulator: Simulator, server_factory: ServerFactory
):
    client, reader = await busy_tail(simulator, server_factory)
    mark = time.monotonic()

    # A request of 4.3 s that just ended: about 300 rows of the window started after it.
    late = add_ended(simulator, [ago(0.2)], duration_ms=4300)
    received = await read_exactly(client, simulator, [reader], request_ids(late), polls=1)
    await simulator.wait_until_idle()
    reads = window_reads(simulator, mark)

    assert received == [request_ids(late)]
    # Sorted by end time, the late row and then the marker row each lie on the first page.
    assert [(query["page"], query["page_size"]) for query in reads] == [("1", "11"), ("1", "11")]
    assert {query["sort_by"] for query in reads} == {"endTime"}


# Fan-out and filters.


async def test_tail_sends_new_rows_to_every_stream(
    simulator: Simulator, server_factory: ServerFactory
):
    client = await server_factory(simulator, **FAST_TAIL)
    readers = [await open_to_done(client, limit="5") for _ in range(3)]
    await all_live(client, 3)

    rows = add_rows(simulator, spread(7))
    received = await read_exactly(client, simulator, readers, request_ids(rows))

    assert received == [oldest_first(rows)] * 3


def error_code(row: SimRow) -> str | None:
    return FAILURES[row.profile.failure][0] if row.failed else None


FILTERS: dict[str, tuple[dict[str, str], Any]] = {
    "model": ({"model": "openai/gpt-4o"}, lambda row: row.profile.model == "openai/gpt-4o"),
    "model_group": ({"model_group": "free-llama"}, lambda row: row.profile.group == "free-llama"),
    "status": ({"status": "failure"}, lambda row: row.failed),
    "error_code": ({"error_code": "429"}, lambda row: error_code(row) == "429"),
    "none": ({}, lambda row: True),
}


async def test_tail_applies_each_stream_filter(simulator: Simulator, server_factory: ServerFactory):
    client = await server_factory(simulator, **FAST_TAIL)
    readers = {
        name: await open_to_done(client, limit="5", **params)
        for name, (params, _) in FILTERS.items()
    }
    await all_live(client, len(FILTERS))

    rows = add_rows(simulator, spread(120))
    for name, reader in readers.items():
        expected = oldest_first([row for row in rows if FILTERS[name][1](row)])
        assert expected, f"the generated rows hold none for the {name} filter"
        await reader.read_rows(expected)
    # Two marker rows that together match every filter; they follow any row sent twice.
    await polls_pass(client, 2)
    markers = add_rows(simulator, [ago(0.5), ago(0.6)])
    profiles = {profile.group: profile for profile in PROFILES}
    markers[0].profile, markers[0].failed = profiles["free-llama"], True
    markers[1].profile, markers[1].failed = profiles["gpt-4o"], False

    for name, reader in readers.items():
        predicate = FILTERS[name][1]
        ids = await reader.read_rows(oldest_first([row for row in markers if predicate(row)]))
        marker_ids = request_ids(markers)
        assert [i for i in ids if i not in marker_ids] == oldest_first(
            [row for row in rows if predicate(row)]
        ), name


def live_entry_blocks(reader: StreamReader) -> list[bytes]:
    """Return the raw bytes of the live ``entries`` events, as written on the wire."""
    live_text = reader.text.split("event: done\n", 1)[1].split("\n\n", 1)[1]
    blocks = [block + "\n\n" for block in live_text.split("\n\n")[:-1]]
    return [block.encode() for block in blocks if "\nevent: entries\n" in block]


async def test_tail_encodes_batch_once_per_filter(
    simulator: Simulator, server_factory: ServerFactory
):
    client = await server_factory(simulator, **FAST_TAIL)
    broker = tail_of(client).broker
    readers = [await open_to_done(client, limit="5") for _ in range(2)]
    await all_live(client, 2)

    rows = add_rows(simulator, spread(150))
    for reader in readers:
        await reader.read_rows(request_ids(rows))
    batches = broker.replay(broker.seq - 1)
    assert batches is not None
    batch = batches[0]
    key = (SpendQuery(), False)
    frames = batch.frames[key]

    assert list(batch.frames) == [key]
    assert batch.frames_for(key, SpendQuery().matches, False) is frames
    assert [frame.rows for frame in frames] == [100, 50]
    assert live_entry_blocks(readers[0]) == [frame.data for frame in frames]
    assert live_entry_blocks(readers[1]) == [frame.data for frame in frames]


# Rows that LiteLLM records late or in bursts.


async def test_tail_late_rows_arrive_once(simulator: Simulator, server_factory: ServerFactory):
    client = await server_factory(simulator, **FAST_TAIL)
    readers = [await open_to_done(client, limit="5") for _ in range(2)]
    await all_live(client, 2)
    first = add_rows(simulator, [ago(1.0)])
    for reader in readers:
        await reader.read_rows(request_ids(first))

    # Long requests: they started before the row already sent, and LiteLLM writes them later,
    # in two flushes.
    late = add_rows(simulator, [ago(6.0), ago(4.0)], visible_in=0.3)
    later = add_rows(simulator, [ago(9.0)], visible_in=0.7)
    received = await read_exactly(client, simulator, readers, request_ids(late + later))

    expected = request_ids(first + late + later)
    for ids in received:
        assert Counter(ids) == Counter(expected)
        assert ids[0] == first[0].request_id


async def test_tail_burst_of_1000_rows(simulator: Simulator, server_factory: ServerFactory):
    client = await server_factory(simulator, **FAST_TAIL)
    readers = [await open_to_done(client, limit="5") for _ in range(3)]
    await all_live(client, 3)

    rows = add_rows(simulator, spread(1000, newest=2.0))
    received = await read_exactly(client, simulator, readers, request_ids(rows))

    assert received == [oldest_first(rows)] * 3


async def test_tail_flushed_rows_arrive_once(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    simulator = await simulator_factory(rows=200, rows_per_second=40.0, flush_interval=0.25)
    client = await server_factory(simulator, **FAST_TAIL)
    # A limit above every row the simulator holds: each stream must get every row once.
    readers = [await open_to_done(client, limit="2000") for _ in range(3)]
    await polls_pass(client, 4)

    visible = {row.request_id for row in simulator.visible_rows()}
    produced = {row.request_id for row in simulator.rows if row.visible_at > 0} & visible
    for reader in readers:
        await reader.read_until(lambda events: visible <= set(ids_of(events)))
        ids = ids_of(reader.events)

        assert len(produced) >= 10
        assert len(ids) == len(set(ids))
        assert set(backfill_ids(reader.events)).isdisjoint(live_ids(reader.events))


# The hand-over from a stream's backfill to the live tail.


async def test_tail_first_stream_skips_older_rows(
    simulator: Simulator, server_factory: ServerFactory
):
    # The poller's first poll reads the whole overlap, far more rows than the backfill's 5.
    client = await server_factory(simulator, **{**FAST_TAIL, "poll_overlap": 3600.0})
    reader = await open_to_done(client, limit="5")

    received = await read_exactly(client, simulator, [reader], [])

    assert received == [[]]
    assert len(backfill_ids(reader.events)) == 5


async def test_tail_backfill_row_once_after_backoff(
    simulator: Simulator, server_factory: ServerFactory
):
    """A row the backfill sent came again live when the poller, backing off, published it after
    the stream's hand-over had stopped leaving out backfill rows (2 poll intervals later)."""
    settings = {**FAST_TAIL, "poll_interval": 0.1, "max_backoff": 2.0, "first_byte_timeout": 0.5}
    client = await server_factory(simulator, **settings)
    poller = tail_of(client).poller
    await open_to_done(client, limit="1")
    await all_live(client, 1)

    simulator.fault = Fault("server_error")
    # The fourth failure makes the poller wait at least 1.28 s before it polls again.
    await eventually(lambda: poller.failures >= 4, "the poller failed 4 times")
    simulator.fault = None
    row = add_rows(simulator, [ago(0.5)])[0]
    reader = await open_to_done(client, limit="5")
    received = await read_exactly(client, simulator, [reader], [])

    assert backfill_ids(reader.events)[0] == row.request_id
    assert received == [[]]


async def test_tail_short_backfill_keeps_late_row(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    """A late row older than every backfill row was dropped from the poller's first batch
    even when the backfill had sent fewer rows than its limit, so it had not cut any."""
    simulator = await simulator_factory(rows=0)
    newest = add_rows(simulator, [ago(3.0)])[0]
    settings = {**FAST_TAIL, "poll_interval": 1.0, "max_backoff": 5.0}
    client = await server_factory(simulator, **settings)
    poller = tail_of(client).poller

    # Both the backfill and the poller's first poll fail; the backfill retries after one poll
    # interval and the poller after at least 1.6.
    await simulator.stop_listening()
    opened = time.monotonic()
    reader = await open_stream(client, limit="10")
    await eventually(lambda: poller.failures == 1, "the first poll failed")
    await asyncio.sleep(0.1)
    await simulator.resume_listening()
    visible_in = opened + 1.3 - time.monotonic()
    late = add_rows(simulator, [ago(10.0)], visible_in=visible_in)[0]
    await reader.read_event("done")
    received = await read_exactly(client, simulator, [reader], [late.request_id], polls=1)

    assert backfill_ids(reader.events) == [newest.request_id]
    assert received == [[late.request_id]]


async def test_tail_legacy_proxy_sends_rows_once(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    """Legacy /spend/logs ignores the window, so the poller published rows older than its
    window at every poll, and a stream sent them as live rows again and again."""
    simulator = await simulator_factory(rows=30, variant="legacy")
    client = await server_factory(simulator, **FAST_TAIL)
    # The 30 rows span minutes, far more than the poller's 30-second window.
    reader = await open_to_done(client, limit="5")
    await polls_pass(client, 3)

    rows = add_rows(simulator, [ago(1.0), ago(1.1)])
    received = await read_exactly(client, simulator, [reader], request_ids(rows))

    assert backfill_ids(reader.events) == request_ids(simulator.visible_rows()[3:8])
    assert received == [oldest_first(rows)]


# Upstream faults while streams are live.


@dataclass
class Outage:
    """How to take the simulator down, and the error every stream must then receive."""

    fault: Fault | None
    kind: str
    status: int | None
    settings: dict[str, Any] = field(default_factory=dict)


OUTAGES = {
    "down": Outage(None, "unreachable", None),
    "timeout": Outage(Fault("hang"), "timeout", None, {"first_byte_timeout": 0.3}),
    "unauthorized": Outage(Fault("unauthorized"), "auth", 401),
    "rate_limit": Outage(Fault("rate_limit", retry_after=0.15), "rate_limited", 429),
    "server_error": Outage(Fault("server_error"), "server_error", 500),
    "html_502": Outage(Fault("html_502"), "server_error", 502),
    "html_200": Outage(Fault("html_200"), "bad_response", 200),
    "truncate": Outage(Fault("truncate"), "truncated", 200),
}


@pytest.mark.parametrize("name", list(OUTAGES))
async def test_tail_outage_one_error_then_ok(
    simulator: Simulator, server_factory: ServerFactory, name: str
):
    outage = OUTAGES[name]
    settings = {**FAST_TAIL, "poll_interval": 0.1, "max_backoff": 0.2, **outage.settings}
    client = await server_factory(simulator, **settings)
    poller = tail_of(client).poller
    readers = [await open_to_done(client, limit="5") for _ in range(2)]
    await all_live(client, 2)

    if outage.fault is None:
        await simulator.stop_listening()
    else:
        simulator.fault = outage.fault
    during = add_rows(simulator, [ago(1.0), ago(2.0)])
    await eventually(lambda: poller.failures >= 3, "the poller failed 3 times")
    if outage.fault is None:
        await simulator.resume_listening()
    else:
        simulator.fault = None
    received = await read_exactly(client, simulator, readers, request_ids(during))

    for reader, ids in zip(readers, received, strict=True):
        _, live = split_at_done(reader.events)
        names = [event.event for event in live if event.event != "entries"]
        assert names == ["upstream_error", "upstream_ok"]
        error = named(live, "upstream_error")[0].json()
        assert (error["kind"], error["status"], error["retry"]) == (
            outage.kind,
            outage.status,
            True,
        )
        assert error["message"].startswith("LiteLLM at ") or error["message"].startswith(
            "Cannot reach LiteLLM at "
        )
        assert 0.0 < error["retry_in"] <= 0.2
        assert Counter(ids) == Counter(request_ids(during))
    assert len(tail_of(client).subscribers) == 2


async def test_tail_rate_limit_waits_retry_after(
    simulator: Simulator, server_factory: ServerFactory
):
    client = await server_factory(simulator, **{**FAST_TAIL, "max_backoff": 5.0})
    poller = tail_of(client).poller
    reader = await open_to_done(client, limit="5")
    await all_live(client, 1)

    simulator.fault = Fault("rate_limit", retry_after=2.5)
    error = (await reader.read_event("upstream_error")).json()
    simulator.fault = None

    assert error["kind"] == "rate_limited"
    assert error["retry_in"] == 2.5
    assert poller.failures == 1


@dataclass
class FailingSource:
    """A source whose every read fails with ``error``; enough of LiteLLMClient for a poll."""

    error: Exception
    kind: str = "litellm"
    endpoint: str | None = "v2"
    filters_upstream: bool = True

    async def iter_pages(self, query: SpendQuery, **_: Any) -> Any:
        raise self.error
        yield  # pragma: no cover - makes this an async generator


async def failed_delays(error: Exception, polls: int, **settings: Any) -> list[float]:
    """Return the delays a poller picks after each of ``polls`` failed polls."""
    config = Settings(litellm_url="http://127.0.0.1:9", **settings)
    poller = Poller(FailingSource(error), LocalBroker(1024 * 1024), config, Metrics())
    return [await poller.poll_once() for _ in range(polls)]


async def test_poller_backoff_doubles_with_jitter():
    delays = await failed_delays(
        UpstreamServerError("failed", status=500), 20, poll_interval=1.0, max_backoff=10.0
    )

    for failures, delay in enumerate(delays[:3], start=1):
        assert 0.8 * 2**failures <= delay <= 1.2 * 2**failures
    assert all(8.0 <= delay <= 10.0 for delay in delays[3:])
    assert len(set(delays[3:])) > 1


async def test_poller_backoff_waits_retry_after():
    error = UpstreamRateLimited("slow down", status=429, retry_after=7.0)
    delays = await failed_delays(error, 2, poll_interval=1.0, max_backoff=10.0)

    assert delays == [7.0, 7.0]


async def test_poller_backoff_caps_retry_after():
    error = UpstreamRateLimited("slow down", status=429, retry_after=600.0)
    delays = await failed_delays(error, 3, poll_interval=1.0, max_backoff=10.0)

    assert delays == [10.0, 10.0, 10.0]


# Rows the poller cannot read.


async def test_poller_unreadable_row_counted_once(
    simulator: Simulator, server_factory: ServerFactory
):
    """A row in the window that could not be read kept LiteLLM's count above the known rows,
    so every poll read the whole window and counted and logged the row again."""
    client = await server_factory(simulator, **FAST_TAIL)
    simulator.add_raw({"request_id": "row-without-start", "startTime": "not a time"}, ago(2.0))
    simulator.add_raw(b'{"request_id": "row-with-nan", "spend": NaN}', ago(3.0))
    # A window that ended long ago: the backfill reads nothing, so only the poller skips rows.
    await open_to_done(client, until="2000-01-01")
    await polls_pass(client, 2)

    polls, calls = await calls_per_poll(client, simulator, 4)

    assert metric_value(client, "aria_stream_rows_skipped_total") == 2
    assert calls == polls
