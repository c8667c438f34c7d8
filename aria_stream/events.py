"""Pure encoding of stream events: JSON text that is safe on an SSE ``data:`` line, and cursors.

SSE ends a line at CR, LF or CRLF, and several parsers (Python's ``str.splitlines`` among them)
also split at U+2028, U+2029 and U+0085. Event data is therefore JSON with every non-ASCII
character escaped, so one event is always one ``data:`` line, whatever a row contains.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

import orjson

# Most rows fit, and browsers render an event this size in one go.
EVENT_MAX_BYTES = 64 * 1024
EVENT_MAX_ROWS = 100

_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def encode_json(value: Any) -> str:
    """Encode a value as compact JSON text with non-ASCII characters escaped."""
    try:
        data = orjson.dumps(value)
    except TypeError:
        # orjson rejects strings holding lone surrogates, which LiteLLM rows can carry when a
        # prompt was cut in the middle of a pair; the standard library escapes them.
        return json.dumps(value, ensure_ascii=True, separators=(",", ":"), default=str)
    if data.isascii():
        return data.decode("ascii")
    return _NON_ASCII.sub(_escape_char, data.decode("utf-8"))


def chunk_rows(encoded: Iterable[str]) -> Iterator[list[str]]:
    """Group encoded rows into event-sized lists: at most 100 rows or about 64 KB each.

    A single row larger than the byte limit gets an event of its own.
    """
    batch: list[str] = []
    size = 2
    for row in encoded:
        if batch and (len(batch) >= EVENT_MAX_ROWS or size + len(row) + 1 > EVENT_MAX_BYTES):
            yield batch
            batch, size = [], 2
        batch.append(row)
        size += len(row) + 1
    if batch:
        yield batch


def join_rows(encoded: list[str]) -> str:
    """Join encoded rows into the JSON array that an ``entries`` event carries."""
    return "[" + ",".join(encoded) + "]"


def make_cursor(start_time: datetime, request_id: str) -> str:
    """Build an event id that orders rows by start time, then request id.

    The form is ``<microseconds since the epoch, 16 digits>-<percent-encoded request id>``, so
    plain string comparison follows time order and the id never holds CR, LF or NUL.
    """
    micros = int(start_time.astimezone(UTC).timestamp() * 1_000_000)
    return f"{micros:016d}-{quote(request_id, safe='')}"


def parse_cursor(cursor: str) -> tuple[datetime, str] | None:
    """Return ``(start_time, request_id)`` of a cursor, or None when it is malformed."""
    micros, sep, request_id = cursor.partition("-")
    if not sep or len(micros) != 16 or not micros.isdigit() or not request_id:
        return None
    try:
        start = datetime.fromtimestamp(int(micros) / 1_000_000, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return start, unquote(request_id)
