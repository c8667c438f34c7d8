"""Stream positions: what an event id tells the server when a viewer reconnects.

An event id has the form ``1:<top>:<low>:<remaining>:<epoch>:<seq>``, with ``:<handover>``
appended when there is one:

- ``top`` is the cursor of the newest row the viewer has (cursors sort in time order);
- ``low`` is the cursor of the oldest backfill row it has, set only while the backfill runs;
- ``remaining`` is how many backfill rows it is still owed;
- ``epoch`` and ``seq`` name the last live batch it got from this server process, as ``<seq>`` or
  ``<seq>+<n>`` when only the first ``n`` matching rows of that batch were sent;
- ``handover`` names the broker's record of the rows the viewer read from LiteLLM itself (its
  backfill or catch-up) that the poller may publish again, so a replay leaves them out.

The row cursors make the id valid after a restart; ``epoch``, ``seq`` and ``handover`` let the
same process replay exactly the live batches the viewer missed. A bare row cursor (as an
``after`` value) is also accepted and means "everything newer than this row".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from aria_stream.events import parse_cursor

VERSION = "1"
# Longer ids are rejected before parsing; a real one is under 300 characters.
MAX_ID_CHARS = 2048


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """Position of a viewer in a stream."""

    top: str | None = None
    low: str | None = None
    remaining: int = 0
    epoch: str | None = None
    seq: int | None = None
    seq_rows: int = 0
    handover: int | None = None

    @property
    def in_backfill(self) -> bool:
        """Whether the id was sent before the backfill's ``done``."""
        return self.low is not None

    def top_time(self) -> datetime | None:
        parsed = parse_cursor(self.top) if self.top else None
        return parsed[0] if parsed else None

    def encode(self) -> str:
        """Return the event id text of this position."""
        fields = [
            VERSION,
            self.top or "",
            self.low or "",
            str(self.remaining),
            self.epoch or "",
            _encode_seq(self.seq, self.seq_rows),
        ]
        if self.handover is not None:
            fields.append(str(self.handover))
        return ":".join(fields)


def parse_position(text: str) -> StreamPosition | None:
    """Parse an event id or a bare row cursor; return None when it is malformed."""
    if not text or len(text) > MAX_ID_CHARS:
        return None
    if ":" not in text:
        return StreamPosition(top=text) if parse_cursor(text) else None

    parts = text.split(":")
    if len(parts) not in (6, 7) or parts[0] != VERSION:
        return None
    _, top, low, remaining, epoch, seq = parts[:6]
    handover = parts[6] if len(parts) == 7 else ""
    if len(parts) == 7 and not handover:
        return None

    if top and parse_cursor(top) is None:
        return None
    if low and parse_cursor(low) is None:
        return None
    seq_number, _, seq_rows = seq.partition("+")
    numbers = [remaining] + [part for part in (seq_number, seq_rows, handover) if part]
    if not all(part.isascii() and part.isdigit() for part in numbers):
        return None
    if seq_rows and not seq_number:
        return None
    if epoch and not (epoch.isascii() and epoch.isalnum()):
        return None

    return StreamPosition(
        top=top or None,
        low=low or None,
        remaining=int(remaining),
        epoch=epoch or None,
        seq=int(seq_number) if seq_number else None,
        seq_rows=int(seq_rows) if seq_rows else 0,
        handover=int(handover) if handover else None,
    )


def _encode_seq(seq: int | None, rows: int) -> str:
    if seq is None:
        return ""
    return f"{seq}+{rows}" if rows else str(seq)
