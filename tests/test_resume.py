"""Event ids and resuming a stream over loopback HTTP: after a drop in the backfill or in the
live tail, after a server restart, and with ids that cannot be resumed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aria_stream.events import make_cursor
from aria_stream.position import parse_position
from aria_stream.simulator import Fault, Simulator
from tests.conftest import ServerFactory, SimulatorFactory
from tests.tail_support import (
    FAST_TAIL,
    StreamReader,
    add_rows,
    ago,
    all_live,
    backfill_ids,
    eventually,
    ids_of,
    live_ids,
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


def last_id(reader: StreamReader) -> str:
    """Return the id a browser would send as Last-Event-ID: the last one received."""
    ids = [event.id for event in reader.events if event.id is not None]
    assert ids
    return ids[-1]


async def resume(client, reader: StreamReader, *, via: str = "header", **params: str):
    """Close ``reader`` and open the stream again from its last event id."""
    position = last_id(reader)
    reader.close()
    if via == "header":
        return await open_stream(client, headers={"Last-Event-ID": position}, **params)
    return await open_stream(client, after=position, **params)


# Ids and the retry hint.


async def test_resume_every_entries_event_has_id(
    simulator: Simulator, server_factory: ServerFactory
):
    client = await server_factory(simulator, **FAST_TAIL)
    reader = await open_to_done(client, limit="250")
    await all_live(client, 1)
    rows = add_rows(simulator, [ago(1.0), ago(1.1)])
    await reader.read_rows(request_ids(rows))

    entries = named(reader.events, "entries")
    assert len(ids_of(reader.events)) == 252
    assert all(parse_position(event.id or "") is not None for event in entries)
    assert parse_position(named(reader.events, "done")[0].id or "") is not None


async def test_resume_retry_hint_on_first_event(
    simulator: Simulator, server_factory: ServerFactory
):
    client = await server_factory(simulator, **FAST_TAIL, retry_ms=1234)
    reader = await open_to_done(client, limit="5")

    assert reader.events[0].event == "meta"
    assert reader.events[0].retry == 1234
    assert reader.text.split("\n\n", 1)[0].endswith("\nretry: 1234")


# A drop in the backfill.


@pytest.mark.parametrize("via", ["header", "after"])
async def test_resume_backfill_drop_completes_limit(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory, via: str
):
    simulator = await simulator_factory(rows=1500)
    client = await server_factory(simulator, **FAST_TAIL)
    expected = request_ids(simulator.visible_rows()[:1000])
    first = await open_stream(client, limit="1000")
    await first.read_until(lambda events: len(named(events, "entries")) >= 3)

    second = await resume(client, first, via=via, limit="1000")
    await second.read_event("done")

    ids = ids_of(first.events) + backfill_ids(second.events)
    assert len(ids_of(first.events)) < 1000
    assert ids == expected
    assert named(second.events, "done")[0].json()["sent"] == 1000 - len(ids_of(first.events))


async def test_resume_backfill_drop_gets_newer_rows(
    simulator: Simulator, server_factory: ServerFactory
):
    client = await server_factory(simulator, **FAST_TAIL)
    expected = request_ids(simulator.visible_rows()[:200])
    first = await open_stream(client, limit="200")
    await first.read_until(lambda events: len(named(events, "entries")) >= 1)
    newer = add_rows(simulator, [ago(0.5), ago(0.6)])

    second = await resume(client, first, limit="200")
    received = await read_exactly(client, simulator, [second], request_ids(newer))

    assert ids_of(first.events) + backfill_ids(second.events) == expected
    assert received == [oldest_first(newer)]


# A drop in the live tail.


@pytest.mark.parametrize("keeper", [True, False], ids=["poller-running", "poller-stopped"])
async def test_resume_tail_drop_sends_missed_rows(
    simulator: Simulator, server_factory: ServerFactory, keeper: bool
):
    client = await server_factory(simulator, **FAST_TAIL)
    if keeper:
        # Another viewer keeps the poller running while this one is away.
        await open_to_done(client, limit="1")
    first = await open_to_done(client, limit="5")
    await all_live(client, 2 if keeper else 1)
    before = add_rows(simulator, [ago(1.0), ago(1.1), ago(1.2)])
    await first.read_rows(request_ids(before))

    position = last_id(first)
    first.close()
    missed = add_rows(simulator, [ago(0.5), ago(0.6), ago(0.7), ago(0.8)])
    if keeper:
        await polls_pass(client, 2)
    else:
        await eventually(lambda: not tail_of(client).running, "the poller stopped")
    second = await open_stream(client, headers={"Last-Event-ID": position})
    received = await read_exactly(client, simulator, [second], request_ids(missed))

    assert received == [oldest_first(missed)]
    assert [event.event for event in second.events[:2]] == ["meta", "done"]


async def test_resume_replay_larger_than_queue(simulator: Simulator, server_factory: ServerFactory):
    """A reconnect that missed more than queue_bytes of rows was sent the replay without
    waiting for room in its queue, so it lost rows at once and got a lagged event."""
    client = await server_factory(simulator, **FAST_TAIL, queue_bytes=64 * 1024)
    # Another viewer keeps the poller running while this one is away.
    await open_to_done(client, limit="1")
    first = await open_to_done(client, limit="5")
    await all_live(client, 2)
    position = last_id(first)
    first.close()

    # Five polls' worth of rows, about 70 KB each.
    missed = []
    for batch in range(5):
        missed += add_rows(simulator, [ago(20.0 - batch - index * 0.001) for index in range(100)])
        await polls_pass(client, 1)
    second = await open_stream(client, headers={"Last-Event-ID": position})
    received = await read_exactly(client, simulator, [second], request_ids(missed))

    assert received == [oldest_first(missed)]
    assert "lagged" not in [event.event for event in second.events]


@pytest.mark.parametrize("frames_read", [1, 2])
async def test_resume_mid_batch_skips_sent_rows(
    simulator: Simulator, server_factory: ServerFactory, frames_read: int
):
    client = await server_factory(simulator, **FAST_TAIL)
    first = await open_to_done(client, limit="5")
    await all_live(client, 1)
    rows = add_rows(simulator, [ago(1.0 + index * 0.01) for index in range(250)])
    await first.read_until(lambda events: len(named(split_at_done(events)[1], "entries")) >= 2)

    # Pretend the connection broke after ``frames_read`` of the batch's three events.
    live = named(split_at_done(first.events)[1], "entries")[:frames_read]
    sent = sum(len(event.json()) for event in live)
    first.close()
    second = await open_stream(client, headers={"Last-Event-ID": live[-1].id or ""})
    received = await read_exactly(client, simulator, [second], oldest_first(rows)[sent:])

    assert parse_position(live[-1].id or "") is not None
    assert received == [oldest_first(rows)[sent:]]


async def test_resume_from_done_sends_only_new_rows(
    simulator: Simulator, server_factory: ServerFactory
):
    """A reconnect with the last backfill event's id replayed the poller's batches from the
    stream's start once the backfill had reached its limit. It repeated backfill rows and sent
    older rows that the stream had not requested."""
    # The poller's first batch contains every row of the last hour, not only the backfill's five.
    client = await server_factory(simulator, **{**FAST_TAIL, "poll_overlap": 3600.0})
    first = await open_to_done(client, limit="5")
    await polls_pass(client, 2)
    # Another viewer keeps the poller running while this one is away.
    await open_to_done(client, limit="1")

    position = last_id(first)
    first.close()
    new = add_rows(simulator, [ago(0.5), ago(0.6), ago(0.7)])
    await polls_pass(client, 2)
    second = await open_stream(client, headers={"Last-Event-ID": position})
    received = await read_exactly(client, simulator, [second], request_ids(new))

    assert received == [oldest_first(new)]


async def test_resume_empty_backfill_done_id(
    simulator_factory: SimulatorFactory, server_factory: ServerFactory
):
    simulator = await simulator_factory(rows=0)
    client = await server_factory(simulator, **FAST_TAIL)
    first = await open_to_done(client, limit="5")
    await all_live(client, 1)

    position = last_id(first)
    first.close()
    new = add_rows(simulator, [ago(0.5)])
    second = await open_stream(client, headers={"Last-Event-ID": position})
    received = await read_exactly(client, simulator, [second], request_ids(new))

    assert parse_position(position) is not None
    assert parse_position(position).top is None  # type: ignore[union-attr]
    assert received == [request_ids(new)]
    assert "reset" not in [event.event for event in second.events]


async def test_resume_mid_handover_skips_backfill_rows(
    simulator: Simulator, server_factory: ServerFactory
):
    """A reconnect with the id of a live event sent while the stream still left out its
    backfill rows replayed the next batches in full, so it repeated a backfill row."""
    settings = {**FAST_TAIL, "poll_interval": 0.5, "max_backoff": 0.3}
    client = await server_factory(simulator, **settings)
    await open_to_done(client, limit="1")
    await all_live(client, 1)

    # In the second after a poll: a row the next stream's backfill reads, then a newer row
    # whose poll is cut after that newer row, so the backfill row comes in the batch after.
    await polls_pass(client, 1)
    read_first = add_rows(simulator, [ago(2.0)])[0]
    first = await open_to_done(client, limit="5")
    simulator.fault = Fault("truncate", count=2)
    newer = add_rows(simulator, [ago(0.5)])[0]
    await first.read_rows([newer.request_id])
    event = next(
        event
        for event in named(split_at_done(first.events)[1], "entries")
        if newer.request_id in [row["request_id"] for row in event.json()]
    )

    first.close()
    after = add_rows(simulator, [ago(0.3)])
    second = await open_stream(client, headers={"Last-Event-ID": event.id or ""})
    received = await read_exactly(client, simulator, [second], request_ids(after), polls=1)

    assert received == [request_ids(after)]
    assert backfill_ids(first.events)[0] == read_first.request_id
    assert read_first.request_id not in live_ids(first.events)
    assert parse_position(event.id or "").handover is not None  # type: ignore[union-attr]


# A server restart.


async def test_resume_restart_sends_downtime_rows(
    simulator: Simulator, server_factory: ServerFactory
):
    # The new poller's first batch contains every row of the last hour, rows sent before too.
    settings = {**FAST_TAIL, "poll_overlap": 3600.0}
    before = await server_factory(simulator, **settings)
    first = await open_to_done(before, limit="5")
    await all_live(before, 1)
    sent = add_rows(simulator, [ago(1.0)])
    await first.read_rows(request_ids(sent))

    position = last_id(first)
    first.close()
    await before.close()
    downtime = add_rows(simulator, [ago(0.5), ago(0.4)])
    after = await server_factory(simulator, **settings)
    second = await open_stream(after, headers={"Last-Event-ID": position})
    received = await read_exactly(after, simulator, [second], request_ids(downtime))

    assert received == [oldest_first(downtime)]
    assert [event.event for event in second.events[:2]] == ["meta", "done"]


async def test_resume_restart_too_many_rows_resets(
    simulator: Simulator, server_factory: ServerFactory
):
    """A catch-up with more new rows than backfill_cap kept only the newest ones, so the
    stream silently lost the older rows between the id and those."""
    settings = {**FAST_TAIL, "backfill_cap": 50}
    before = await server_factory(simulator, **settings)
    first = await open_to_done(before, limit="5")
    position = last_id(first)
    first.close()
    await before.close()
    add_rows(simulator, [ago(1.0 + index * 0.01) for index in range(60)])

    after = await server_factory(simulator, **settings)
    second = await open_stream(after, headers={"Last-Event-ID": position}, limit="50")
    await second.read_event("done")

    names = [event.event for event in second.events]
    assert names[:2] == ["meta", "reset"]
    assert second.events[1].json() == {
        "reason": "more than 50 rows were recorded after the event id"
    }
    assert backfill_ids(second.events) == request_ids(simulator.visible_rows()[:50])


# Ids that cannot be resumed.


def cursor_at(moment: datetime) -> str:
    return make_cursor(moment, "chatcmpl-resume-test")


NOW = datetime.now(UTC)
UNUSABLE_IDS = {
    "garbage": ("garbage!", "the event id is malformed"),
    "unknown version": (f"2:{cursor_at(NOW)}::0:abc:1", "the event id is malformed"),
    "non-ASCII digit": (f"1:{cursor_at(NOW)}::\u00b2:abc:1", "the event id is malformed"),
    "empty handover": (f"1:{cursor_at(NOW)}::0:abc:1:", "the event id is malformed"),
    "no row": ("1:::0::", "the event id names no row"),
    "too old": (
        f"1:{cursor_at(NOW - timedelta(hours=2))}::0:abc:1",
        "the event id is older than the server can resume from",
    ),
    "future": (f"1:{cursor_at(NOW + timedelta(days=3))}::0:abc:1", "the event id is in the future"),
}


@pytest.mark.parametrize("name", list(UNUSABLE_IDS))
async def test_resume_unusable_id_resets(
    simulator: Simulator, server_factory: ServerFactory, name: str
):
    """A remaining count or sequence of non-ASCII digits (such as a superscript two) passed
    the id check and then failed int(), so the request ended with a 500."""
    position, reason = UNUSABLE_IDS[name]
    client = await server_factory(simulator, **FAST_TAIL, resume_max_age=3600.0)
    reader = await open_stream(client, after=position, limit="20")
    await reader.read_event("done")

    names = [event.event for event in reader.events]
    assert names[:2] == ["meta", "reset"]
    assert reader.events[1].json() == {"reason": reason}
    assert backfill_ids(reader.events) == request_ids(simulator.visible_rows()[:20])


async def test_resume_header_wins_over_after(simulator: Simulator, server_factory: ServerFactory):
    client = await server_factory(simulator, **FAST_TAIL)
    first = await open_stream(client, limit="100")
    await first.read_until(lambda events: len(named(events, "entries")) >= 1)
    position = last_id(first)
    first.close()

    second = await open_stream(
        client, headers={"Last-Event-ID": position}, after="garbage!", limit="100"
    )
    await second.read_event("done")

    assert "reset" not in [event.event for event in second.events]
    assert ids_of(first.events) + backfill_ids(second.events) == request_ids(
        simulator.visible_rows()[:100]
    )
