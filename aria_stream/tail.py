"""The live tail of a process: one broker, one poller, and the viewers subscribed to them.

The poller starts with the first viewer and stops ``poller_linger`` seconds after the last one
left, so an idle aria_stream sends LiteLLM nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from aria_stream.broker import LocalBroker
from aria_stream.metrics import Metrics
from aria_stream.poller import Poller
from aria_stream.settings import Settings
from aria_stream.subscriber import Subscriber

logger = logging.getLogger(__name__)


class TailService:
    """Starts and stops the poller as viewers come and go."""

    def __init__(self, source: Any, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.enabled = source.kind != "file"
        self.broker = LocalBroker(settings.replay_bytes)
        self.poller = Poller(source, self.broker, settings, metrics)
        self.subscribers: set[Subscriber] = set()
        # Set when the server begins to shut down; streams are no longer kept open.
        self.closing = False
        self._task: asyncio.Task[None] | None = None
        self._linger: asyncio.TimerHandle | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def attach(self, subscriber: Subscriber) -> int:
        """Subscribe a viewer and return the batch sequence number it starts after."""
        seq = self.broker.subscribe(subscriber)
        self.subscribers.add(subscriber)
        self.metrics.subscribers.set(len(self.subscribers))
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if self.enabled and not self.running and not self.closing:
            self.poller.restart()
            self._task = asyncio.create_task(self.poller.run(), name="aria-stream-poller")
            logger.info("Poller started")
        return seq

    def detach(self, subscriber: Subscriber) -> None:
        """Unsubscribe a viewer; the poller stops a while after the last one."""
        self.broker.unsubscribe(subscriber)
        self.subscribers.discard(subscriber)
        self.metrics.subscribers.set(len(self.subscribers))
        if not self.subscribers and self.running and self._linger is None:
            loop = asyncio.get_running_loop()
            self._linger = loop.call_later(self.settings.poller_linger, self._stop_poller)

    async def wait_covered(self, rows: Mapping[str, float]) -> None:
        """Wait until the poller has published every one of ``rows`` it may ever publish.

        ``rows`` maps request ids to start times: rows a viewer read from LiteLLM itself. After
        this, no live batch contains any of them, so the viewer's exclusion of them can end.
        """
        if not self.enabled:
            return
        while not self.poller.covers(rows):
            await self.poller.wait_polled()

    def _stop_poller(self) -> None:
        self._linger = None
        if self.subscribers or self._task is None:
            return
        self._task.cancel()
        self._task = None
        logger.info("Poller stopped: no viewer for %.0f s", self.settings.poller_linger)

    async def close(self) -> None:
        """Stop the poller for good."""
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
