"""Full garbage collections paced by the poller, so that none interrupts a poll or its writes."""

from __future__ import annotations

import gc
import weakref

from aria_stream.gcpace import NEVER, CollectionPacer
from aria_stream.simulator import Simulator
from tests.conftest import ServerFactory
from tests.tail_support import FAST_TAIL, eventually, open_to_done, tail_of


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Node:
    """A cyclic object: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


def old_cyclic_garbage() -> weakref.ref[Node]:
    """Make a cycle that has reached the oldest generation, then drop it."""
    node = Node()
    gc.collect(1)
    gc.collect(1)
    ref = weakref.ref(node)
    del node
    return ref


def test_pacer_disables_then_restores_full_collections():
    before = gc.get_threshold()

    with CollectionPacer():
        paced = gc.get_threshold()

    assert paced == (before[0], before[1], NEVER)
    assert gc.get_threshold() == before


def test_pacers_restore_collector_when_last_leaves():
    before = gc.get_threshold()
    first = CollectionPacer()
    second = CollectionPacer()

    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    paced_by_second = gc.get_threshold()
    second.__exit__(None, None, None)

    assert paced_by_second == (before[0], before[1], NEVER)
    assert gc.get_threshold() == before


def test_pacer_collects_old_garbage_only_when_due():
    clock = Clock()
    with CollectionPacer(every=10.0, clock=clock) as pacer:
        ref = old_cyclic_garbage()
        clock.now += 9.0
        early = pacer.collect_if_due()
        alive_before_due = ref() is not None
        clock.now += 1.0
        due = pacer.collect_if_due()
        again = pacer.collect_if_due()

    assert (early, due, again) == (False, True, False)
    assert alive_before_due is True
    assert ref() is None
    assert pacer.collections == 1


def test_pacer_outside_its_block_never_collects():
    clock = Clock()
    pacer = CollectionPacer(every=0.0, clock=clock)

    assert pacer.collect_if_due() is False
    assert pacer.collections == 0


async def test_running_poller_collects_old_garbage_between_polls(
    simulator: Simulator, server_factory: ServerFactory
):
    client = await server_factory(simulator, **{**FAST_TAIL, "poller_linger": 0.2})
    tail = tail_of(client)
    before = gc.get_threshold()
    reader = await open_to_done(client, limit="5")
    pacer = tail.poller.pacer
    pacer.every = 0.2
    await eventually(lambda: gc.get_threshold()[2] == NEVER, "the poller paces collections")

    ref = old_cyclic_garbage()
    await eventually(lambda: ref() is None, "a paced collection freed the old cycle")
    collections = pacer.collections
    reader.close()
    await eventually(lambda: not tail.running, "the poller stopped")

    assert collections >= 1
    assert gc.get_threshold() == before
