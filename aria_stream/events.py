"""Pure encoding of stream events: JSON text that is safe on an SSE ``data:`` line, and cursors.

SSE ends a line at CR, LF or CRLF, and several parsers (Python's ``str.splitlines`` among them)
also split at U+2028, U+2029 and U+0085. Event data is therefore JSON with every non-ASCII
character escaped, so one event is always one ``data:`` line, whatever a row contains.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

# Most rows fit, and browsers render an event this size in one go.
EVENT_MAX_BYTES = 64 * 1024
EVENT_MAX_ROWS = 100

_NON_ASCII = re.compile(r"[^\x00-\x7f]")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR_MAX_MICROS = 10**16 - 1
# Request id bytes that a cursor keeps as they are. Every other byte is escaped.
_CURSOR_PLAIN = frozenset(b"-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_CURSOR_PLAIN_ID = re.compile(r"[-0-9A-Za-z]+")
_CURSOR_ID = re.compile(r"(?:[-0-9A-Za-z]|[!.@_~][0-9A-F]{2})+")
_CURSOR_ESCAPE = re.compile(rb"[!.@_~]([0-9A-F]{2})")


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


def chunk_rows(encoded: Iterable[str], max_bytes: int = EVENT_MAX_BYTES) -> Iterator[list[str]]:
    """Group encoded rows into event-sized lists: at most 100 rows or about ``max_bytes`` each.

    ``max_bytes`` is at most 64 KB. A single row larger than the byte limit gets an event of its
    own.
    """
    limit = min(max_bytes, EVENT_MAX_BYTES)
    batch: list[str] = []
    size = 2
    for row in encoded:
        if batch and (len(batch) >= EVENT_MAX_ROWS or size + len(row) + 1 > limit):
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

    The form is ``<microseconds since the epoch, 16 digits>-<escaped request id>``. Plain string
    comparison of two cursors gives the order of their ``(start_time, request_id)`` pairs, and a
    cursor holds only printable ASCII without ``:``, so it is a valid SSE id and a field of a
    ``:``-separated position. Times outside 1970 to 2286 are clamped to that range.
    """
    micros = (start_time.astimezone(UTC) - _EPOCH) // timedelta(microseconds=1)
    micros = min(max(micros, 0), _CURSOR_MAX_MICROS)
    return f"{micros:016d}-{_escape_request_id(request_id)}"


def parse_cursor(cursor: str) -> tuple[datetime, str] | None:
    """Return ``(start_time, request_id)`` of a cursor, or None when it is malformed."""
    micros, sep, escaped = cursor.partition("-")
    if not sep or len(micros) != 16 or not micros.isascii() or not micros.isdigit():
        return None
    request_id = _unescape_request_id(escaped)
    if request_id is None:
        return None
    return _EPOCH + timedelta(microseconds=int(micros)), request_id


def _cursor_marker(byte: int) -> str:
    """Return the escape marker for a byte outside ``[-0-9A-Za-z]``.

    The marker sorts among the plain characters where the byte does, so escaping keeps the order
    of request ids. No marker is ``:``.
    """
    if byte < 0x2D:  # below "-"
        return "!"
    if byte < 0x30:  # "." and "/"
        return "."
    if byte < 0x41:  # ":" to "@"
        return "@"
    if byte < 0x61:  # "[" to "`"
        return "_"
    return "~"  # "{" and above, which includes every byte of a non-ASCII character


def _escape_request_id(request_id: str) -> str:
    """Escape every UTF-8 byte outside ``[-0-9A-Za-z]`` as its marker and two hex digits."""
    if _CURSOR_PLAIN_ID.fullmatch(request_id):
        return request_id
    parts = []
    for byte in request_id.encode("utf-8", "surrogatepass"):
        parts.append(chr(byte) if byte in _CURSOR_PLAIN else f"{_cursor_marker(byte)}{byte:02X}")
    return "".join(parts)


def _unescape_request_id(escaped: str) -> str | None:
    """Reverse ``_escape_request_id``; return None unless ``escaped`` is exactly its output."""
    if not _CURSOR_ID.fullmatch(escaped):
        return None
    data = _CURSOR_ESCAPE.sub(lambda match: bytes([int(match.group(1), 16)]), escaped.encode())
    try:
        request_id = data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return None
    # A different spelling of the same id (a plain letter escaped, a wrong marker) would break
    # the ordering of cursors, so only the one that make_cursor writes is accepted.
    if _escape_request_id(request_id) != escaped:
        return None
    return request_id
