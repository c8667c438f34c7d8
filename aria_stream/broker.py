"""The broker between the one poller and the viewers of the live tail.

The poller publishes batches of new rows and upstream status changes; every subscribed viewer
receives them. ``LocalBroker`` does this inside one process and keeps recent batches so a viewer
that reconnects to the same process can be sent exactly the batches it missed. A broker shared by
several processes would implement the same ``Broker`` protocol.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aria_stream.events import EVENT_MAX_BYTES, EVENT_MAX_ROWS, encode_json, join_rows
from aria_stream.framing import sse_frame
from aria_stream.models import SpendLogEntry, project_full
from aria_stream.position import StreamPosition


@dataclass(slots=True)
class TailRow:
    """A new row as published: its cursor, lite fields and raw upstream form."""

    cursor: str
    lite: dict[str, Any]
    raw: dict[str, Any]
    lite_json: str
    full_json: str | None = None

    @classmethod
    def from_lite(cls, cursor: str, lite: dict[str, Any], raw: dict[str, Any]) -> TailRow:
        entry = SpendLogEntry.model_validate(lite).model_dump(mode="json")
        return cls(cursor, lite, raw, encode_json(entry))

    def json(self, full: bool) -> str:
        """Return the row's event JSON, lite or full, encoding the full form at most once."""
        if not full:
            return self.lite_json
        if self.full_json is None:
            self.full_json = encode_json(project_full(self.raw))
        return self.full_json


@dataclass(frozen=True, slots=True)
class Frame:
    """One encoded ``entries`` event, with the number of rows it carries."""

    data: bytes
    rows: int
    position: str


@dataclass(slots=True)
class TailBatch:
    """Rows one poll found, in cursor order; ``top`` is the newest cursor seen by then.

    ``baseline`` marks the first poll after the poller started: its rows were recorded before
    the poller ran, so viewers take from it only what their own backfill could not have read.
    """

    seq: int
    epoch: str
    top: str | None
    rows: list[TailRow]
    size: int
    baseline: bool = False
    frames: dict[Hashable, list[Frame]] = field(default_factory=dict)

    def frames_for(
        self,
        key: Hashable,
        matches: Callable[[dict[str, Any]], bool],
        full: bool,
        *,
        skip: int = 0,
        exclude: Callable[[TailRow, TailBatch], bool] | None = None,
    ) -> list[Frame]:
        """Return the ``entries`` events of this batch for one filter, cached per filter key.

        ``skip`` leaves out the first matching rows (already sent before a reconnect) and
        ``exclude`` leaves out rows the viewer already has; either makes the frames specific to
        one viewer.
        """
        shared = skip == 0 and exclude is None
        if shared and key in self.frames:
            return self.frames[key]
        frames: list[Frame] = []
        chunk: list[str] = []
        size = 2
        sent = 0
        for row in self.rows:
            if not matches(row.lite):
                continue
            sent += 1
            if sent <= skip or (exclude is not None and exclude(row, self)):
                continue
            encoded = row.json(full)
            if chunk and (len(chunk) >= EVENT_MAX_ROWS or size + len(encoded) > EVENT_MAX_BYTES):
                frames.append(self._frame(chunk, sent - 1))
                chunk, size = [], 2
            chunk.append(encoded)
            size += len(encoded) + 1
        if chunk:
            frames.append(self._frame(chunk, 0))
        if shared:
            self.frames[key] = frames
        return frames

    def _frame(self, chunk: list[str], sent: int) -> Frame:
        # An event in the middle of a batch records how many matching rows of the batch were
        # sent, so a reconnect skips exactly those; 0 marks the batch as complete.
        position = StreamPosition(top=self.top, epoch=self.epoch, seq=self.seq, seq_rows=sent)
        text = position.encode()
        data = sse_frame("entries", join_rows(chunk), id=text)
        return Frame(data, len(chunk), text)


@dataclass(frozen=True, slots=True)
class UpstreamStatus:
    """LiteLLM's state as the poller sees it; ``event`` is the data of the event to send."""

    ok: bool
    event: dict[str, Any] | None = None


class Listener(Protocol):
    """A subscriber of the broker."""

    def on_batch(self, batch: TailBatch) -> None: ...

    def on_status(self, status: UpstreamStatus) -> None: ...


class Broker(Protocol):
    """What the poller and the viewers need of a broker."""

    epoch: str
    status: UpstreamStatus

    @property
    def seq(self) -> int: ...

    def publish(
        self, rows: list[TailRow], top: str | None, *, baseline: bool = False
    ) -> TailBatch | None: ...

    def publish_status(self, status: UpstreamStatus) -> None: ...

    def subscribe(self, listener: Listener) -> int: ...

    def unsubscribe(self, listener: Listener) -> None: ...

    def replay(self, after_seq: int) -> list[TailBatch] | None: ...


class LocalBroker:
    """An in-process broker that keeps the last ``replay_bytes`` of batches for replay."""

    def __init__(self, replay_bytes: int) -> None:
        self.epoch = uuid.uuid4().hex[:10]
        self.status = UpstreamStatus(ok=True)
        self.listeners: set[Listener] = set()
        self.replay_bytes = replay_bytes
        self._seq = 0
        self._ring: deque[TailBatch] = deque()
        self._ring_bytes = 0

    @property
    def seq(self) -> int:
        """Sequence number of the last published batch (0 before the first)."""
        return self._seq

    def publish(
        self, rows: list[TailRow], top: str | None, *, baseline: bool = False
    ) -> TailBatch | None:
        """Publish new rows to every listener and keep them for replay."""
        if not rows:
            return None
        self._seq += 1
        size = sum(len(row.lite_json) for row in rows)
        batch = TailBatch(self._seq, self.epoch, top, rows, size, baseline)
        self._ring.append(batch)
        self._ring_bytes += size
        while self._ring and self._ring_bytes > self.replay_bytes:
            self._ring_bytes -= self._ring.popleft().size
        for listener in list(self.listeners):
            listener.on_batch(batch)
        return batch

    def publish_status(self, status: UpstreamStatus) -> None:
        """Tell every listener that LiteLLM failed or recovered."""
        self.status = status
        for listener in list(self.listeners):
            listener.on_status(status)

    def subscribe(self, listener: Listener) -> int:
        """Add a listener and return the sequence number it starts after."""
        self.listeners.add(listener)
        return self._seq

    def unsubscribe(self, listener: Listener) -> None:
        self.listeners.discard(listener)

    def replay(self, after_seq: int) -> list[TailBatch] | None:
        """Return the batches published after ``after_seq``, or None when some are gone."""
        if after_seq > self._seq:
            return None
        if after_seq == self._seq:
            return []
        if not self._ring or self._ring[0].seq > after_seq + 1:
            return None
        return [batch for batch in self._ring if batch.seq > after_seq]
