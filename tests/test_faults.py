"""Upstream faults while viewers are connected, end to end over loopback HTTP.

Each test keeps a viewer live on the tail, makes the simulator fail or serve odd rows, and lets
a second viewer join in the middle. Both must get the right event, never hang, and receive
every good row the simulator served exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import ClientPayloadError, ClientResponse
from aiohttp.test_utils import TestClient

from aria_stream.appkeys import metrics_key
from aria_stream.simulator import Fault, Simulator
from tests.conftest import ServerFactory, SimulatorFactory
from tests.sse import Event, parse_events

# A bound on every wait, so that a stream that hangs fails its test instead of the suite.
WAIT = 15.0
ROWS = 40
FAST = {
    "poll_interval": 0.1,
    "poll_overlap": 60.0,
    "max_backoff": 0.5,
    "first_byte_timeout": 0.5,
    "idle_timeout": 0.5,
    "poller_linger": 0.0,
    "first_page_size": 10,
}


class Viewer:
    """A stream read in the background; its events collect in ``events``."""

    def __init__(self, client: TestClient, **params: str) -> None:
        self.client = client
        self.params = {"limit": "1000", **params}
        self.events: list[Event] = []
        self.ended = False
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.response: ClientResponse | None = None

    async def open(self) -> Viewer:
        self.response = await self.client.get("/api/spend/stream", params=self.params)
        assert self.response.status == 200
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.response is not None
        text = ""
        try:
            async for chunk in self.response.content.iter_any():
                text += chunk.decode("utf-8")
                end = text.rfind("\n\n")
                if end >= 0:
                    self.events.extend(parse_events(text[: end + 2]))
                    text = text[end + 2 :]
                    self._changed.set()
        except ClientPayloadError:
            pass
        self.ended = True
        self._changed.set()

    async def wait_for(self, check: Callable[[list[Event]], bool], what: str) -> None:
        """Wait until ``check(events)`` holds; fail after ``WAIT`` seconds naming ``what``."""
        try:
            async with asyncio.timeout(WAIT):
                while not check(self.events):
                    assert not self.ended, f"the stream ended before {what}"
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            names = [event.event for event in self.events]
            raise AssertionError(f"no {what} within {WAIT} s; events: {names}") from None

    async def wait_event(self, name: str, count: int = 1) -> None:
        await self.wait_for(lambda events: len(named(events, name)) >= count, f"{name!r} event")

    async def wait_rows(self, ids: set[str]) -> None:
        await self.wait_for(lambda events: ids <= set(row_ids(events)), f"rows {sorted(ids)}")

    def rows(self) -> list[dict[str, Any]]:
        return [row for event in named(self.events, "entries") for row in event.json()]

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.response is not None:
            self.response.close()


def named(events: list[Event], name: str) -> list[Event]:
    return [event for event in events if event.event == name]


def row_ids(events: list[Event]) -> list[str]:
    return [row["request_id"] for event in named(events, "entries") for row in event.json()]


def after_done(viewer: Viewer) -> list[str]:
    """Return the ids of the rows a viewer got after its backfill ended."""
    names = [event.event for event in viewer.events]
    return row_ids(viewer.events[names.index("done") :])


def assert_once(ids: list[str]) -> None:
    repeated = {request_id: count for request_id, count in Counter(ids).items() if count > 1}
    assert repeated == {}


@pytest.fixture
async def viewers() -> Any:
    opened: list[Viewer] = []

    async def open_viewer(client: TestClient, **params: str) -> Viewer:
        viewer = await Viewer(client, **params).open()
        opened.append(viewer)
        return viewer

    yield open_viewer
    for viewer in opened:
        viewer.close()
        if viewer._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await viewer._task


async def live_setup(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory, viewers: Any, **overrides
) -> tuple[Simulator, TestClient, Viewer]:
    """Start a simulator and the app, and one viewer that finished its backfill."""
    simulator = await simulator_factory(rows=ROWS)
    client = await server_factory(simulator, **{**FAST, **overrides})
    witness = await viewers(client)
    await witness.wait_event("done")
    assert len(witness.rows()) == ROWS
    return simulator, client, witness


# Faults of the upstream request: kind of the event, how to start and how to end the fault.

REQUEST_FAULTS = {
    "refused": ("unreachable", None),
    "hang": ("timeout", Fault("hang")),
    "stall": ("timeout", Fault("stall")),
    "unauthorized": ("auth", Fault("unauthorized")),
    "rate_limit": ("rate_limited", Fault("rate_limit", retry_after=0.3)),
    "html_500": ("server_error", Fault("html_500")),
    "html_200": ("bad_response", Fault("html_200")),
    "truncate": ("truncated", Fault("truncate")),
}


async def start_fault(simulator: Simulator, name: str) -> None:
    if name == "refused":
        await simulator.stop_listening()
    else:
        fault = REQUEST_FAULTS[name][1]
        assert fault is not None
        simulator.fault = Fault(fault.kind, None, fault.retry_after)


async def end_fault(simulator: Simulator, name: str) -> None:
    if name == "refused":
        await simulator.resume_listening()
    simulator.fault = None


@pytest.mark.parametrize("name", sorted(REQUEST_FAULTS))
async def test_fault_live_viewer_gets_error_then_rows(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory, viewers: Any, name: str
):
    simulator, _, witness = await live_setup(simulator_factory, server_factory, viewers)
    kind = REQUEST_FAULTS[name][0]

    await start_fault(simulator, name)
    produced = {row.request_id for row in simulator.produce(5)}
    await witness.wait_event("upstream_error")
    await end_fault(simulator, name)
    await witness.wait_event("upstream_ok")
    await witness.wait_rows(produced)

    error = named(witness.events, "upstream_error")[0].json()
    assert error["kind"] == kind
    assert error["retry"] is True
    live = after_done(witness)
    assert_once(live)
    assert set(live) == produced
    assert not witness.ended


@pytest.mark.parametrize("name", sorted(REQUEST_FAULTS))
async def test_fault_joining_viewer_gets_error_then_backfill(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory, viewers: Any, name: str
):
    simulator, client, witness = await live_setup(simulator_factory, server_factory, viewers)
    kind = REQUEST_FAULTS[name][0]

    await start_fault(simulator, name)
    simulator.produce(3)
    joining = await viewers(client)
    await joining.wait_event("upstream_error")
    await end_fault(simulator, name)
    await joining.wait_event("done")

    names = [event.event for event in joining.events]
    assert names[0] == "meta"
    assert named(joining.events, "upstream_error")[0].json()["kind"] == kind
    ids = row_ids(joining.events)
    assert_once(ids)
    assert set(ids) == {row.request_id for row in simulator.visible_rows()}
    assert not witness.ended


async def test_fault_rate_limit_reports_status(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory, viewers: Any
):
    simulator, _, witness = await live_setup(
        simulator_factory, server_factory, viewers, max_backoff=2.0
    )

    simulator.fault = Fault("rate_limit", None, retry_after=1.0)
    await witness.wait_event("upstream_error")
    simulator.fault = None

    error = named(witness.events, "upstream_error")[0].json()
    assert error["status"] == 429
    assert error["retry_in"] >= 1.0


async def test_fault_html_500_message_names_page(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory, viewers: Any
):
    simulator, _, witness = await live_setup(simulator_factory, server_factory, viewers)

    simulator.fault = Fault("html_500")
    await witness.wait_event("upstream_error")
    simulator.fault = None

    error = named(witness.events, "upstream_error")[0].json()
    assert error["status"] == 500
    assert "(HTML page: 500 Internal Server Error Internal Server Error" in error["message"]


async def test_fault_error_sent_once_per_outage(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory, viewers: Any
):
    simulator, _, witness = await live_setup(simulator_factory, server_factory, viewers)

    simulator.fault = Fault("server_error")
    await witness.wait_event("upstream_error")
    # Several polls fail while the fault lasts.
    polls = simulator.list_calls()
    async with asyncio.timeout(WAIT):
        while simulator.list_calls() < polls + 3:  # noqa: ASYNC110 - no event for this
            await asyncio.sleep(0.05)
    simulator.fault = None
    await witness.wait_event("upstream_ok")

    assert len(named(witness.events, "upstream_error")) == 1
    assert len(named(witness.events, "upstream_ok")) == 1


async def test_fault_truncated_rows_before_cut_kept_once(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory, viewers: Any
):
    simulator = await simulator_factory(rows=ROWS)
    client = await server_factory(simulator, **FAST)
    simulator.fault = Fault("truncate", count=1)

    viewer = await viewers(client)
    await viewer.wait_event("done")

    ids = row_ids(viewer.events)
    assert_once(ids)
    assert ids == [row.request_id for row in simulator.visible_rows()]
    assert named(viewer.events, "upstream_error")[0].json()["kind"] == "truncated"


# Odd rows among good ones.


def now_minus(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


def raw_row(request_id: str, start: datetime, **fields: Any) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "startTime": start.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "model": "openai/gpt-4o-mini",
        "model_group": "gpt-4o-mini",
        "spend": 0.25,
        **fields,
    }


async def test_fault_malformed_row_skipped_in_backfill(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory, viewers: Any
):
    simulator = await simulator_factory(rows=ROWS)
    good = [simulator.add_raw(raw_row(f"good-{i}", now_minus(i)), now_minus(i)) for i in (1, 3)]
    simulator.add_raw(b'{"request_id": "bad-row", "spend": NaN, "startTime": }', now_minus(2))
    client = await server_factory(simulator, **FAST)

    viewer = await viewers(client)
    await viewer.wait_event("done")

    ids = row_ids(viewer.events)
    assert_once(ids)
    assert {row.request_id for row in good} <= set(ids)
    assert "bad-row" not in ids
    assert len(ids) == ROWS + 2
    assert named(viewer.events, "done")[0].json()["skipped"] == 1
    metrics = client.server.app[metrics_key]
    assert metrics.rows_skipped._value.get() >= 1


async def test_fault_malformed_row_skipped_live(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory, viewers: Any
):
    simulator, client, witness = await live_setup(simulator_factory, server_factory, viewers)
    skipped_before = client.server.app[metrics_key].rows_skipped._value.get()

    good = {
        simulator.add_raw(raw_row(f"good-{i}", now_minus(i)), now_minus(i)).request_id
        for i in (1, 3)
    }
    simulator.add_raw(b'{"request_id": "bad-row", "startTime": NaN}', now_minus(2))
    await witness.wait_rows(good)

    live = after_done(witness)
    assert_once(live)
    assert set(live) == good
    assert client.server.app[metrics_key].rows_skipped._value.get() > skipped_before


async def test_fault_malformed_row_reported_live(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory, viewers: Any
):
    simulator, _, witness = await live_setup(simulator_factory, server_factory, viewers)

    simulator.add_raw(raw_row("good-1", now_minus(1)), now_minus(1))
    simulator.add_raw(b'{"request_id": "bad-row", "startTime": NaN}', now_minus(2))
    await witness.wait_rows({"good-1"})
    await witness.wait_event("skipped")

    assert named(witness.events, "skipped")[0].json()["rows"] == 1


async def test_fault_two_mb_row_delivered(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory, viewers: Any
):
    simulator, client, witness = await live_setup(simulator_factory, server_factory, viewers)
    full = await viewers(client, full="true")
    await full.wait_event("done")

    simulator.add_raw(raw_row("big-row", now_minus(1), response="x" * 2_000_000), now_minus(1))
    simulator.add_raw(raw_row("after-big", now_minus(0.5)), now_minus(0.5))
    await witness.wait_rows({"big-row", "after-big"})
    await full.wait_rows({"big-row", "after-big"})

    assert after_done(witness) == ["big-row", "after-big"]
    [big] = [row for row in full.rows() if row["request_id"] == "big-row"]
    assert big["truncated"] == {"response": 2_000_000}
    assert big["original_bytes"] > 2_000_000
    assert_once(after_done(full))


WEIRD_TEXT = "line\u2028sep\u2029para\x00nul\rcr\nlf\ud800lone\udfffend\U0001f600"


async def test_fault_weird_characters_survive(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory, viewers: Any
):
    simulator, client, witness = await live_setup(simulator_factory, server_factory, viewers)
    # json.dumps escapes the lone surrogates, as a proxy must; U+2028 goes out unescaped.
    text = json.dumps(raw_row("weird-row", now_minus(1), user=WEIRD_TEXT), ensure_ascii=False)
    simulator.add_raw(
        text.encode("utf-8", "surrogatepass").replace(b"\\u2028", "\u2028".encode()), now_minus(1)
    )
    await witness.wait_rows({"weird-row"})
    joining = await viewers(client, full="true")
    await joining.wait_event("done")

    [live] = [row for row in witness.rows() if row["request_id"] == "weird-row"]
    [full] = [row for row in joining.rows() if row["request_id"] == "weird-row"]
    assert live["user"] == WEIRD_TEXT
    assert full["user"] == WEIRD_TEXT
    assert full["lite"]["user"] == WEIRD_TEXT
    for event in named(witness.events, "entries") + named(joining.events, "entries"):
        assert event.data.isascii()


async def test_fault_metadata_string_and_naive_time(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory, viewers: Any
):
    simulator, client, witness = await live_setup(simulator_factory, server_factory, viewers)
    start = now_minus(1).replace(tzinfo=None)
    metadata = json.dumps({"user_api_key_alias": "string-meta", "status": "failure"})
    row = raw_row("odd-row", start, metadata=metadata)
    row["startTime"] = start.strftime("%Y-%m-%dT%H:%M:%S.%f")
    simulator.add_raw(row, start.replace(tzinfo=UTC))

    await witness.wait_rows({"odd-row"})
    joining = await viewers(client, full="true")
    await joining.wait_event("done")

    [live] = [row for row in witness.rows() if row["request_id"] == "odd-row"]
    assert live["key_alias"] == "string-meta"
    assert live["status"] == "failure"
    assert live["start_time"] == start.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    [full] = [row for row in joining.rows() if row["request_id"] == "odd-row"]
    assert full["metadata"] == {"user_api_key_alias": "string-meta", "status": "failure"}


async def test_fault_duplicate_ids_across_pages(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory, viewers: Any
):
    simulator = await simulator_factory(rows=ROWS)
    # The same id near the top and near the bottom, so the backfill meets it on two pages.
    simulator.add_raw(raw_row("twice", now_minus(1), spend=1.0), now_minus(1))
    oldest = simulator.rows[-1].start - timedelta(seconds=1)
    simulator.add_raw(raw_row("twice", oldest, spend=2.0), oldest)
    client = await server_factory(simulator, **FAST)

    viewer = await viewers(client)
    await viewer.wait_event("done")

    ids = row_ids(viewer.events)
    assert ids.count("twice") == 1
    assert len(ids) == ROWS + 1
    [row] = [row for row in viewer.rows() if row["request_id"] == "twice"]
    assert row["spend"] == 1.0


async def test_fault_duplicate_id_live_sent_once(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory, viewers: Any
):
    simulator, _, witness = await live_setup(simulator_factory, server_factory, viewers)

    simulator.add_raw(raw_row("again", now_minus(2)), now_minus(2))
    await witness.wait_rows({"again"})
    simulator.add_raw(raw_row("again", now_minus(1)), now_minus(1))
    simulator.add_raw(raw_row("marker", now_minus(0.5)), now_minus(0.5))
    await witness.wait_rows({"marker"})

    assert after_done(witness) == ["again", "marker"]


async def test_fault_out_of_order_rows_delivered(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory, viewers: Any
):
    simulator, client, witness = await live_setup(simulator_factory, server_factory, viewers)

    simulator.add_raw(raw_row("recent", now_minus(1)), now_minus(1))
    await witness.wait_rows({"recent"})
    # A long request finishes later and is recorded with an older start time.
    simulator.add_raw(raw_row("late-long", now_minus(40)), now_minus(40))
    # A row whose body position disagrees with its start time.
    simulator.add_raw(raw_row("misplaced", now_minus(30)), now_minus(0.5))
    await witness.wait_rows({"late-long", "misplaced"})
    joining = await viewers(client)
    await joining.wait_event("done")

    live = after_done(witness)
    assert_once(live)
    assert set(live) == {"recent", "late-long", "misplaced"}
    ids = row_ids(joining.events)
    assert_once(ids)
    assert set(ids) == {row.request_id for row in simulator.visible_rows()}
