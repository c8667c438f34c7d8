"""The broker between the one poller and the viewers of the live tail.

The poller publishes batches of new rows and upstream status changes; every subscribed viewer
receives them. ``LocalBroker`` does this inside one process and keeps recent batches so a viewer
that reconnects to the same process can be sent exactly the batches it missed. A broker shared by
several processes would implement the same ``Broker`` protocol.

A viewer reads its first rows from LiteLLM itself (its backfill, or a catch-up after a
reconnect), and the poller may publish some of those rows again later. The broker keeps a
``Handover`` per such viewer: the rows to leave out of the live batches. Its number travels in
the viewer's event ids, so a reconnect to the same process leaves out the same rows.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from aria_stream.events import EVENT_MAX_BYTES, EVENT_MAX_ROWS, encode_json, join_rows
from aria_stream.framing import sse_frame
from aria_stream.models import FULL_ROW_MAX_BYTES, SpendLogEntry, project_full
from aria_stream.position import StreamPosition

# Request ids kept in handovers, at most, counted over all of them; the oldest go first.
HANDOVER_IDS = 200_000


@dataclass(slots=True)
class TailRow:
    """A new row as published: its cursor, lite fields and raw upstream form."""

    cursor: str
    lite: dict[str, Any]
    raw: dict[str, Any]
    lite_json: str
    # Bytes of the raw row as JSON: the replay buffer keeps the raw row, so it counts them.
    raw_size: int = 0
    full_max_bytes: int = FULL_ROW_MAX_BYTES
    full_json: str | None = None

    @classmethod
    def from_lite(
        cls,
        cursor: str,
        lite: dict[str, Any],
        raw: dict[str, Any],
        *,
        full_max_bytes: int = FULL_ROW_MAX_BYTES,
    ) -> TailRow:
        entry = SpendLogEntry.model_validate(lite).model_dump(mode="json", exclude_none=True)
        return cls(
            cursor,
            lite,
            raw,
            encode_json(entry),
            raw_size=_json_size(raw),
            full_max_bytes=full_max_bytes,
        )

    @property
    def size(self) -> int:
        """Approximate bytes of memory this row uses: its lite JSON, raw form and full JSON."""
        return len(self.lite_json) + self.raw_size + len(self.full_json or "")

    def json(self, full: bool) -> str:
        """Return the row's event JSON, lite or full, encoding the full form at most once."""
        if not full:
            return self.lite_json
        if self.full_json is None:
            self.full_json = encode_json(project_full(self.raw, max_bytes=self.full_max_bytes))
        return self.full_json


def _json_size(value: Any) -> int:
    try:
        return len(orjson.dumps(value))
    except TypeError:
        return len(encode_json(value))


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
        handover: Handover | None = None,
    ) -> list[Frame]:
        """Return the ``entries`` events of this batch for one filter, cached per filter key.

        ``skip`` leaves out the first matching rows (already sent before a reconnect), and
        ``handover`` leaves out rows the viewer read from LiteLLM itself and puts its number in
        the event ids. Either makes the frames specific to one viewer, so they are not cached.
        """
        shared = skip == 0 and handover is None
        if shared and key in self.frames:
            return self.frames[key]
        frames: list[Frame] = []
        chunk: list[str] = []
        size = 2
        # Matching rows of the batch up to the current one, the skipped and excluded ones too,
        # so that a reconnect counts them the same way whatever it leaves out.
        counted = 0
        for row in self.rows:
            if not matches(row.lite):
                continue
            counted += 1
            if counted <= skip or (handover is not None and handover.excludes(row, self)):
                continue
            encoded = row.json(full)
            limit = min(EVENT_MAX_BYTES, row.full_max_bytes)
            if chunk and (len(chunk) >= EVENT_MAX_ROWS or size + len(encoded) > limit):
                frames.append(self._frame(chunk, counted - 1, handover))
                chunk, size = [], 2
            chunk.append(encoded)
            size += len(encoded) + 1
        if chunk:
            frames.append(self._frame(chunk, 0, handover))
        if shared:
            self.frames[key] = frames
        return frames

    def _frame(self, chunk: list[str], counted: int, handover: Handover | None) -> Frame:
        # An event in the middle of a batch records how many matching rows of the batch come
        # before the next one, so a reconnect skips exactly those; 0 marks the batch as complete.
        position = StreamPosition(
            top=self.top,
            epoch=self.epoch,
            seq=self.seq,
            seq_rows=counted,
            handover=None if handover is None else handover.token,
        )
        text = position.encode()
        data = sse_frame("entries", join_rows(chunk), id=text)
        return Frame(data, len(chunk), text)


@dataclass(frozen=True, slots=True)
class Handover:
    """Rows a viewer read from LiteLLM itself, to leave out of the live batches it is sent.

    ``ids`` maps request ids to start times (seconds since the epoch). ``below`` applies to the
    baseline batch of a poller that started after the viewer subscribed, because LiteLLM
    recorded that batch's rows earlier. Its rows with a cursor below ``below`` (or equal, when
    ``inclusive``) lie outside what the viewer requested or already has.
    """

    token: int
    ids: Mapping[str, float]
    below: str | None = None
    inclusive: bool = False

    def excludes(self, row: TailRow, batch: TailBatch) -> bool:
        if row.lite["request_id"] in self.ids:
            return True
        if not batch.baseline or self.below is None:
            return False
        return row.cursor <= self.below if self.inclusive else row.cursor < self.below


@dataclass(frozen=True, slots=True)
class UpstreamStatus:
    """LiteLLM's state as observed by the poller; ``event`` is the data of the event to send."""

    ok: bool
    event: dict[str, Any] | None = None


class Listener(Protocol):
    """A subscriber of the broker."""

    def on_batch(self, batch: TailBatch) -> None: ...

    def on_status(self, status: UpstreamStatus) -> None: ...

    def on_skipped(self, rows: int) -> None: ...


class Broker(Protocol):
    """Interface between the poller and the viewers."""

    epoch: str
    status: UpstreamStatus

    @property
    def seq(self) -> int: ...

    def publish(
        self, rows: list[TailRow], top: str | None, *, baseline: bool = False
    ) -> TailBatch | None: ...

    def publish_status(self, status: UpstreamStatus) -> None: ...

    def publish_skipped(self, rows: int) -> None: ...

    def subscribe(self, listener: Listener) -> int: ...

    def unsubscribe(self, listener: Listener) -> None: ...

    def replay(self, after_seq: int) -> list[TailBatch] | None: ...

    def open_handover(
        self, ids: Mapping[str, float], below: str | None = None, *, inclusive: bool = False
    ) -> Handover: ...

    def handover(self, token: int) -> Handover | None: ...


class LocalBroker:
    """An in-process broker that keeps the last ``replay_bytes`` of batches for replay.

    It also keeps the handovers of the last ``handover_ids`` request ids; a reconnect whose
    handover was dropped resumes from LiteLLM instead of the replay.
    """

    def __init__(self, replay_bytes: int, handover_ids: int = HANDOVER_IDS) -> None:
        self.epoch = uuid.uuid4().hex[:10]
        self.status = UpstreamStatus(ok=True)
        self.listeners: set[Listener] = set()
        self.replay_bytes = replay_bytes
        self.handover_ids = handover_ids
        self._seq = 0
        self._ring: deque[TailBatch] = deque()
        self._ring_bytes = 0
        self._handovers: OrderedDict[int, Handover] = OrderedDict()
        self._handover_count = 0
        self._handover_size = 0

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
        size = sum(row.size for row in rows)
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

    def publish_skipped(self, rows: int) -> None:
        """Tell every listener that a poll met rows it could not read."""
        for listener in list(self.listeners):
            listener.on_skipped(rows)

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

    def open_handover(
        self, ids: Mapping[str, float], below: str | None = None, *, inclusive: bool = False
    ) -> Handover:
        """Record the rows a viewer read from LiteLLM itself and return the record."""
        self._handover_count += 1
        record = Handover(self._handover_count, dict(ids), below, inclusive)
        self._handovers[record.token] = record
        self._handover_size += len(record.ids) + 1
        while self._handover_size > self.handover_ids and len(self._handovers) > 1:
            _, dropped = self._handovers.popitem(last=False)
            self._handover_size -= len(dropped.ids) + 1
        return record

    def handover(self, token: int) -> Handover | None:
        """Return a handover by its number, or None when it was dropped or never existed."""
        return self._handovers.get(token)
