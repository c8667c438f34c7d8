"""Incremental splitting of a spend-log response body into rows, as its bytes arrive.

Three body shapes are accepted: a top-level array (legacy ``/spend/logs``), the ``{"data": [...]}``
envelope of ``/spend/logs/v2`` and ``/spend/logs/ui``, and JSON lines (one row per line).

How rows are found, and why it is safe:

1. Each array element is cut out of the buffer and decoded on its own with orjson, so memory
   holds at most one unfinished row and decoding runs at orjson's speed.
2. The end of an object element is found cheaply with a regular expression: a ``}`` followed by
   ``,`` and the opening of the next row (``{"request_id"`` once the first key is known), or by
   the closing ``]`` where no such separator follows. Such a match can also occur inside a row,
   for example in a nested list of objects, but a JSON object is never a valid prefix of a
   longer JSON object, so orjson accepts the slice only at the true end. Candidates other than
   the separator are skipped when the braces of the slice do not balance, which saves a failing
   orjson call on every nested list of objects.
3. When orjson rejects a slice, the row is scanned byte by byte (strings and nesting tracked) to
   find its exact end. The exact slice is decoded with orjson, then with the standard library's
   ``json`` when orjson rejects it, because orjson rejects escaped lone surrogates
   (``"\\ud800"``) that a client can send inside a prompt. A row that still fails to decode is
   reported as malformed and skipped.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

import orjson

_WHITESPACE = b" \t\r\n"
# RFC 8259 lets a parser ignore a leading byte order mark, which some Windows tools write.
_UTF8_BOM = b"\xef\xbb\xbf"
_ENVELOPE_HEAD = re.compile(
    rb'\{\s*((?:"[^"\\]*"\s*:\s*(?:-?[0-9][0-9.eE+-]*|true|false|null|"[^"\\]*")\s*,\s*)*)'
    rb'"data"\s*:\s*\['
)
_ANY_ROW_END = re.compile(rb"\}[ \t\r\n]*[,\]]")
_ROW_LIST_END = re.compile(rb"\}[ \t\r\n]*\]")
_STRUCTURAL = re.compile(rb'[\[\]{}"]')
_STRING_REST = re.compile(rb'(?:[^"\\]|\\.)*"', re.DOTALL)
_SCALAR_END = re.compile(rb"[,\]]")
# Bytes kept unsearched at the end of the buffer, because a row end pattern may be cut there.
_LOOKAHEAD = 256
# Row end matches tried per row before exact scanning. Rows with nested lists of objects, such as
# ``messages`` or ``choices``, contain a few false matches, and each failed try costs one orjson
# pass over the row, far less than an exact scan in Python.
_MAX_ROW_END_TRIES = 8
_EXCERPT_CHARS = 120
# A body that does not start like JSON is collected up to this size before NotJSONBody is raised,
# so that its excerpt contains more than the first network chunk.
_NOT_JSON_PEEK_BYTES = 4 * _EXCERPT_CHARS
_JSON_TYPE_NAMES = {
    dict: "object",
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


class BodyError(ValueError):
    """The body is not a spend-log document that can be read to its end."""


class NotJSONBody(BodyError):
    """The body does not start like JSON (an HTML error page, plain text...)."""

    def __init__(self, excerpt: str) -> None:
        super().__init__(f"body is not JSON: {excerpt!r}")
        self.excerpt = excerpt


class TruncatedBody(BodyError):
    """The body ended before its JSON document was complete."""


@dataclass(frozen=True, slots=True)
class MalformedRow:
    """An element that could be cut out of the body but not decoded into a row object."""

    reason: str
    excerpt: str


def excerpt_of(data: bytes | bytearray, limit: int = _EXCERPT_CHARS) -> str:
    """Return a short, single-line, printable excerpt of a body for an error message."""
    text = bytes(data[: limit * 4]).decode("utf-8", errors="replace")
    text = re.sub(r"<[^>]*>", " ", text)
    text = " ".join(text.split())
    return text[:limit]


def decode_json(data: bytes | bytearray | str) -> Any:
    """Decode JSON text with orjson, or with the standard library when orjson rejects it.

    The fallback exists for escaped lone surrogates (``"\\ud800"``), which orjson rejects. Like
    orjson, it rejects ``NaN``, ``Infinity`` and numbers out of float range. When both decoders
    reject the text, orjson's ``JSONDecodeError`` is raised.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
        try:
            return json.loads(data, parse_constant=_reject_constant, parse_float=_finite_float)
        except (ValueError, RecursionError):
            raise error from None


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text} is out of range")
    return value


def _scan_to_close(buf: bytes | bytearray, pos: int, depth: int) -> tuple[int, int, int]:
    """Scan ``buf`` from ``pos``, at nesting ``depth``, for the bracket that closes an element.

    Return ``(end, pos, depth)``. ``end`` is the index just past that bracket, or -1 when the
    buffer ends first. In that case ``pos`` and ``depth`` are where to resume once more bytes
    arrive.
    """
    while True:
        match = _STRUCTURAL.search(buf, pos)
        if match is None:
            return -1, len(buf), depth
        pos = match.start()
        byte = buf[pos]
        if byte == ord('"'):
            string = _STRING_REST.match(buf, pos + 1)
            if string is None:
                return -1, pos, depth
            pos = string.end()
            continue
        pos += 1
        if byte in b"{[":
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return pos, pos, depth


def _is_whole_object(text: bytes | bytearray) -> bool:
    """Check that ``text`` is one object whose braces balance, whether or not it is valid JSON."""
    end, _, _ = _scan_to_close(text, 0, 0)
    return text[:1] == b"{" and end > 0 and not text[end:].strip(_WHITESPACE)


Item = dict[str, Any] | MalformedRow


class RowSplitter:
    """Push parser: ``feed`` bytes as they arrive and get the rows completed so far.

    After the last chunk, ``close`` checks that the document ended properly and raises
    ``TruncatedBody`` otherwise. ``envelope`` holds the envelope's other members (``total``,
    ``total_is_capped``...) once they have been read; LiteLLM sends them after ``data``.
    """

    def __init__(self) -> None:
        self.shape: Literal["array", "envelope", "lines", "document"] | None = None
        self.envelope: dict[str, Any] = {}
        self.rows_seen = 0
        self._buf = bytearray()
        self._pos = 0
        self._search_from = 0
        self._in_array = False
        self._array_done = False
        self._expect_value = True
        self._row_sep: re.Pattern[bytes] | None = None
        self._first_key: str | None = None
        self._first_key_json = b""
        self._scan_depth = 0
        self._scan_from = -1
        self._row_end_tries = 0
        # Brace balance of the current row from its start up to ``_balance_to``, kept so that
        # each byte is counted once however many candidates the row has. -1 means unset.
        self._balance_start = -1
        self._balance_to = 0
        self._balance = 0
        self._elements = 0
        self._decoded: object = None

    def feed(self, chunk: bytes) -> list[Item]:
        """Add a chunk of the body and return the rows it completed, in body order."""
        self._buf += chunk
        items: list[Item] = []
        if self.shape is None and not self._detect_shape(final=False):
            return items
        if self.shape == "lines":
            self._split_lines(items, final=False)
        elif not self._array_done:
            self._split_array(items)
        self._compact()
        return items

    def close(self) -> list[Item]:
        """Finish the body: return the last rows, or raise ``BodyError`` if it is incomplete."""
        items: list[Item] = []
        if self.shape is None and not self._detect_shape(final=True):
            return items
        if self.shape == "lines":
            self._split_lines(items, final=True)
            return items
        if self.shape == "document":
            self._read_document(items)
            return items
        if not self._array_done:
            self._split_array(items, final=True)
        if not self._array_done:
            raise TruncatedBody(f"body ended inside the row list after {self.rows_seen} rows")
        if self.shape == "envelope":
            self._read_envelope_tail()
        elif self._buf[self._pos :].strip(_WHITESPACE):
            raise BodyError(
                f"unexpected data after the row list: {excerpt_of(self._buf[self._pos :])!r}"
            )
        return items

    def _detect_shape(self, *, final: bool) -> bool:
        start = len(_UTF8_BOM) if self._buf.startswith(_UTF8_BOM) else 0
        while start < len(self._buf) and self._buf[start] in _WHITESPACE:
            start += 1
        if start == len(self._buf):
            if final:
                raise BodyError("body is empty")
            return False

        first = self._buf[start]
        if first not in b"[{":
            if not final and len(self._buf) - start < _NOT_JSON_PEEK_BYTES:
                return False
            raise NotJSONBody(excerpt_of(self._buf[start:]))

        if first == ord("["):
            self.shape = "array"
            self._pos = start + 1
            self._in_array = True
            return True

        head = _ENVELOPE_HEAD.match(self._buf, start)
        if head is not None:
            self.shape = "envelope"
            members = head.group(1).rstrip(_WHITESPACE).rstrip(b",")
            if members:
                self.envelope.update(orjson.loads(b"{" + members + b"}"))
            self._pos = head.end()
            self._in_array = True
            return True

        # A first line that contains a whole object, valid or not, starts JSON lines. The first
        # line of a pretty-printed document never does, because the document closes later.
        newline = self._buf.find(b"\n", start)
        if newline >= 0 and _is_whole_object(self._buf[start:newline]):
            self.shape = "lines"
            self._pos = start
            return True

        if final:
            self.shape = "document"
            self._pos = start
            return True
        if len(self._buf) > 1 << 20:
            raise BodyError(
                'body starts with an object that is neither a {"data": [...]} envelope '
                "nor JSON lines"
            )
        return False

    def _split_lines(self, items: list[Item], *, final: bool) -> None:
        buf = self._buf
        while True:
            newline = buf.find(b"\n", self._pos)
            if newline < 0:
                if final and buf[self._pos :].strip(_WHITESPACE):
                    line = bytes(buf[self._pos :])
                    self._pos = len(buf)
                    items.append(self._decode_last_line(line))
                return
            line = bytes(buf[self._pos : newline])
            self._pos = newline + 1
            if line.strip(_WHITESPACE):
                items.append(self._decode(line))

    def _decode_last_line(self, line: bytes) -> Item:
        """Decode a last line that has no newline, or raise ``TruncatedBody`` if it was cut.

        A line that does not decode is still complete when its braces balance, because an object
        cut short never does. It is then a malformed row.
        """
        try:
            value = decode_json(line)
        except orjson.JSONDecodeError as error:
            if not _is_whole_object(line.strip(_WHITESPACE)):
                raise TruncatedBody(
                    f"body ended inside a JSON line after {self.rows_seen} rows"
                ) from error
            return MalformedRow(reason=f"invalid JSON: {error}", excerpt=excerpt_of(line))
        return self._as_row(value, line)

    def _split_array(self, items: list[Item], *, final: bool = False) -> None:
        buf = self._buf
        size = len(buf)
        while True:
            pos = self._pos
            while pos < size and buf[pos] in _WHITESPACE:
                pos += 1
            if pos == size:
                self._pos = pos
                return
            byte = buf[pos]
            if not self._expect_value:
                if byte == ord(","):
                    self._pos = pos + 1
                    self._expect_value = True
                    continue
                if byte == ord("]"):
                    self._finish_array(pos)
                    return
                self._pos = pos
                raise BodyError(f"expected ',' or ']' between rows, got {excerpt_of(buf[pos:])!r}")
            if byte == ord("]") and self._elements == 0:
                self._finish_array(pos)
                return
            self._pos = pos
            self._decoded = None
            end = self._find_element_end(pos, final=final)
            if end < 0:
                return
            if self._decoded is not None:
                items.append(self._as_row(self._decoded, b""))
            else:
                items.append(self._decode(bytes(buf[pos:end])))
            self._elements += 1
            self._pos = end
            self._search_from = end
            self._scan_from = -1
            self._row_end_tries = 0
            self._balance_start = -1
            self._expect_value = False

    def _finish_array(self, pos: int) -> None:
        self._pos = pos + 1
        self._array_done = True
        self._in_array = False

    def _find_element_end(self, start: int, *, final: bool) -> int:
        """Return the index just past the element starting at ``start``, or -1 for more data."""
        buf = self._buf
        if buf[start] != ord("{"):
            return self._find_other_end(start)
        if self._scan_from < 0:
            search = max(self._search_from, start)
            while True:
                match = self._next_row_end(buf, search)
                if match is None and final:
                    self._scan_from, self._scan_depth = start, 0
                    break
                if match is None:
                    end = self._row_end_at_tail(start)
                    if end < 0:
                        self._search_from = max(search, len(buf) - _LOOKAHEAD)
                    return end
                end = match.start() + 1
                if not self._may_close_row(match, start, end):
                    search = end
                    continue
                try:
                    self._decoded = orjson.loads(buf[start:end])
                except orjson.JSONDecodeError:
                    # A match inside a nested list of objects, or a malformed row. The first is
                    # settled by a later match, the second by exact scanning.
                    self._row_end_tries += 1
                    if self._row_end_tries < _MAX_ROW_END_TRIES:
                        search = end
                        continue
                    self._scan_from = start
                    self._scan_depth = 0
                    break
                return end
        return self._scan_exact()

    def _next_row_end(self, buf: bytearray, search: int) -> re.Match[bytes] | None:
        """Find the next row end candidate at or after ``search``.

        Once the first key is known, a row separator such as ``},{"request_id"`` is searched
        first. A ``}]`` before it can only close a nested list of objects (``messages``,
        ``choices``), so the end of the row list is looked for only where no separator follows,
        which is in the last row.
        """
        if self._row_sep is None:
            return _ANY_ROW_END.search(buf, search)
        match = self._row_sep.search(buf, search)
        if match is not None:
            return match
        return _ROW_LIST_END.search(buf, search)

    def _may_close_row(self, match: re.Match[bytes], start: int, end: int) -> bool:
        """Cheaply rule out a row end candidate whose slice has unbalanced braces.

        A row separator with the learned first key is nearly always the true end and is decoded
        at once. Other candidates, a ``}]`` or a ``},`` before the first key is known, are
        common inside a row, where the slice has more ``{`` than ``}``. Such a slice is skipped
        without a failing orjson call, which costs as much as decoding the row. Braces inside
        strings can upset the count either way: a skipped true end is then found by the exact
        scan, and orjson still validates every slice it accepts.
        """
        if self._row_sep is not None and self._buf[match.end() - 1] != ord("]"):
            return True
        buf = self._buf
        if self._balance_start != start or end < self._balance_to:
            self._balance_start, self._balance_to, self._balance = start, start, 0
        counted_from, self._balance_to = self._balance_to, end
        self._balance += buf.count(b"{", counted_from, end) - buf.count(b"}", counted_from, end)
        return self._balance == 0

    def _row_end_at_tail(self, start: int) -> int:
        """Return the end of a row that closes at the last ``}`` of the buffer, or -1.

        The row end pattern needs the bytes that follow ``}``. Without this check, a body cut
        between two rows would hold back its last complete row until ``close``, which raises
        ``TruncatedBody`` instead of returning it.
        """
        buf = self._buf
        brace = buf.rfind(b"}", max(start, len(buf) - _LOOKAHEAD))
        if brace < 0 or not self._may_open_next_row(bytes(buf[brace + 1 :])):
            return -1
        try:
            self._decoded = orjson.loads(buf[start : brace + 1])
        except orjson.JSONDecodeError:
            return -1
        return brace + 1

    def _may_open_next_row(self, tail: bytes) -> bool:
        """Check whether ``tail`` can begin a row separator such as ``,{"request_id"``."""
        rest = tail.lstrip(_WHITESPACE)
        if rest.startswith(b","):
            rest = rest[1:].lstrip(_WHITESPACE)
            if rest.startswith(b"{"):
                rest = rest[1:].lstrip(_WHITESPACE)
                return self._first_key_json.startswith(rest)
        return not rest

    def _scan_exact(self) -> int:
        end, pos, depth = _scan_to_close(self._buf, self._scan_from, self._scan_depth)
        if end < 0:
            self._scan_from, self._scan_depth = pos, depth
        return end

    def _find_other_end(self, start: int) -> int:
        if self._buf[start] in b'["':
            if self._scan_from < 0:
                self._scan_from, self._scan_depth = start, 0
            if self._buf[start] == ord('"'):
                string = _STRING_REST.match(self._buf, start + 1)
                return -1 if string is None else string.end()
            return self._scan_exact()
        match = _SCALAR_END.search(self._buf, start)
        if match is None:
            return -1
        end = match.start()
        while end > start and self._buf[end - 1] in _WHITESPACE:
            end -= 1
        return end

    def _decode(self, data: bytes) -> Item:
        try:
            value = decode_json(data)
        except orjson.JSONDecodeError as error:
            return MalformedRow(reason=f"invalid JSON: {error}", excerpt=excerpt_of(data))
        return self._as_row(value, data)

    def _as_row(self, value: object, data: bytes) -> Item:
        if not isinstance(value, dict):
            return MalformedRow(
                reason=f"row is a JSON {_JSON_TYPE_NAMES.get(type(value), 'value')}, not an object",
                excerpt=excerpt_of(data or orjson.dumps(value)),
            )
        self.rows_seen += 1
        if self._first_key is None and value and self.shape != "lines":
            self._learn_first_key(next(iter(value)))
        return value

    def _learn_first_key(self, key: str) -> None:
        self._first_key = key
        self._first_key_json = orjson.dumps(key)
        quoted = re.escape(self._first_key_json)
        self._row_sep = re.compile(rb"\}[ \t\r\n]*,[ \t\r\n]*\{[ \t\r\n]*" + quoted)

    def _read_document(self, items: list[Item]) -> None:
        data = bytes(self._buf[self._pos :])
        try:
            document = decode_json(data)
        except orjson.JSONDecodeError as error:
            raise TruncatedBody(f"body is not a complete JSON document: {error}") from error
        rows = document.get("data") if isinstance(document, dict) else None
        if isinstance(rows, list):
            self.shape = "envelope"
            self.envelope.update({key: value for key, value in document.items() if key != "data"})
            items.extend(self._as_row(row, b"") for row in rows)
        else:
            items.append(self._as_row(document, data))
        self._pos = len(self._buf)

    def _read_envelope_tail(self) -> None:
        """Read the envelope members after the row list, such as ``, "total": 5}``."""
        tail = bytes(self._buf[self._pos :]).strip(_WHITESPACE)
        # Re-open the envelope so that its remaining members read as one object of their own.
        if tail.startswith(b","):
            rest = b"{" + tail[1:]
        elif tail.startswith(b"}") or not tail:
            rest = b"{" + tail
        else:
            raise BodyError(f"unexpected data after the row list: {excerpt_of(tail)!r}")
        end, _, _ = _scan_to_close(rest, 0, 0)
        if end < 0:
            raise TruncatedBody("body ended after the row list, before the envelope closed")
        if rest[end:].strip(_WHITESPACE):
            raise BodyError(f"unexpected data after the envelope: {excerpt_of(rest[end:])!r}")
        try:
            extra = orjson.loads(rest)
        except orjson.JSONDecodeError as error:
            raise BodyError(f"envelope members after the row list are invalid: {error}") from error
        if isinstance(extra, dict):
            self.envelope.update(extra)

    def _compact(self) -> None:
        """Drop consumed bytes so the buffer holds only the unfinished row."""
        keep_from = self._pos
        if self._scan_from >= 0:
            keep_from = min(keep_from, self._scan_from)
        if keep_from < 1 << 16 and keep_from * 2 < len(self._buf):
            return
        del self._buf[:keep_from]
        self._pos -= keep_from
        self._search_from = max(0, self._search_from - keep_from)
        if self._scan_from >= 0:
            self._scan_from -= keep_from
        if self._balance_start >= keep_from:
            self._balance_start -= keep_from
            self._balance_to -= keep_from
        else:
            self._balance_start = -1
