"""Full garbage collections at moments when no row is waiting for them.

CPython's cyclic collector runs a full collection whenever enough objects have outlived the
younger collections. With a thousand viewers connected, a full collection scans every task,
coroutine and buffer of their connections, which took 60-130 ms on one core in the fan-out
benchmark. The poll or the writes it interrupts are late by as much, and so are their rows.

While the poller runs, ``CollectionPacer`` takes full collections out of the collector's hands
and the poller requests one between two polls, after the writers have sent the last batch.
Younger collections are short and stay automatic. When the poller stops, the collector's own
thresholds come back.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from types import TracebackType

logger = logging.getLogger(__name__)

# A full collection runs at most this often while paced, in seconds.
FULL_COLLECTION_EVERY = 10.0
# The collector skips its oldest generation while this exceeds its count of younger collections.
NEVER = 2**30


class CollectionPacer:
    """Scheduler of full collections: on request, at most every ``every`` seconds, while entered.

    Pacers share the collector of the process: full collections stay with the pacers while any
    of them is entered, and the collector's thresholds come back when the last one leaves.
    """

    # Pacers entered in this process, and the collector's thresholds from before the first.
    _entered_count = 0
    _saved: tuple[int, ...] | None = None

    def __init__(
        self,
        every: float = FULL_COLLECTION_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.every = every
        self.clock = clock
        self.collections = 0
        self._entered = False
        self._last = 0.0

    def __enter__(self) -> CollectionPacer:
        if self._entered:
            raise RuntimeError("this CollectionPacer is already entered")
        cls = CollectionPacer
        if cls._entered_count == 0:
            cls._saved = gc.get_threshold()
            if len(cls._saved) == 3:
                gc.set_threshold(cls._saved[0], cls._saved[1], NEVER)
        cls._entered_count += 1
        self._entered = True
        self._last = self.clock()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self._entered:
            return
        self._entered = False
        cls = CollectionPacer
        cls._entered_count -= 1
        if cls._entered_count == 0 and cls._saved is not None:
            gc.set_threshold(*cls._saved)
            cls._saved = None

    def collect_if_due(self) -> bool:
        """Run a full collection if the last one is ``every`` seconds old; return True if it ran."""
        if not self._entered or self.clock() - self._last < self.every:
            return False
        started = time.perf_counter()
        gc.collect()
        self._last = self.clock()
        self.collections += 1
        logger.debug("Full garbage collection took %.1f ms", (time.perf_counter() - started) * 1e3)
        return True
