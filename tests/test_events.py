"""Event encoding: JSON text safe on one SSE data line, row grouping and row cursors."""

from __future__ import annotations

import itertools
import json
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from aria_stream.events import (
    EVENT_MAX_BYTES,
    EVENT_MAX_ROWS,
    chunk_rows,
    encode_json,
    join_rows,
    make_cursor,
    parse_cursor,
)

# Characters that end a line for SSE (CR, LF) or for Python's str.splitlines (the rest).
LINE_BREAKS = ["\r", "\n", "\r\n", "\u2028", "\u2029", "\u0085", "\x0b", "\x0c", "\x1c"]

ROUND_TRIP_VALUES = [
    pytest.param({"m": "a\rb"}, id="CR"),
    pytest.param({"m": "a\nb"}, id="LF"),
    pytest.param({"m": "a\r\nb"}, id="CRLF"),
    pytest.param({"m": "a\u2028b\u2029c"}, id="U+2028-U+2029"),
    pytest.param({"m": "a\u0085b"}, id="U+0085"),
    pytest.param({"m": "a\x00b"}, id="NUL"),
    pytest.param({"m": "</script><script>alert(1)</script>"}, id="script-tag"),
    pytest.param({"m": "ok 😀 done"}, id="emoji"),
    pytest.param({"m": "cut \ud83d"}, id="lone-high-surrogate"),
    pytest.param({"m": "\udc00 cut"}, id="lone-low-surrogate"),
    pytest.param({"ключ": ["naïve", "日本語", {"€": 1.5}]}, id="non-ascii-keys"),
    pytest.param(["\ud800", "😀", "\u2028", None, True, 3], id="list-mixed"),
]


@pytest.mark.parametrize("value", ROUND_TRIP_VALUES)
def test_encode_json_round_trips(value):
    assert json.loads(encode_json(value)) == value


@pytest.mark.parametrize("value", ROUND_TRIP_VALUES)
def test_encode_json_ascii_single_line(value):
    text = encode_json(value)

    assert text.isascii()
    assert "\r" not in text
    assert "\n" not in text
    assert text.splitlines() == [text]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param({"m": "a\r\nb"}, '{"m":"a\\r\\nb"}', id="CRLF"),
        pytest.param({"m": "a\rb"}, '{"m":"a\\rb"}', id="CR"),
        pytest.param({"m": "a\nb"}, '{"m":"a\\nb"}', id="LF"),
        pytest.param({"m": "a\u2028b"}, '{"m":"a\\u2028b"}', id="U+2028"),
        pytest.param({"m": "a\u2029b"}, '{"m":"a\\u2029b"}', id="U+2029"),
        pytest.param({"m": "a\u0085b"}, '{"m":"a\\u0085b"}', id="U+0085"),
        pytest.param({"m": "a\x00b"}, '{"m":"a\\u0000b"}', id="NUL"),
        pytest.param({"m": "</script>"}, '{"m":"</script>"}', id="script-tag"),
        pytest.param({"m": "é"}, '{"m":"\\u00e9"}', id="latin"),
        pytest.param({"m": "😀"}, '{"m":"\\ud83d\\ude00"}', id="emoji-pair"),
        pytest.param({"m": "\ud800"}, '{"m":"\\ud800"}', id="lone-surrogate"),
        pytest.param({"m": "\ud800😀"}, '{"m":"\\ud800\\ud83d\\ude00"}', id="lone-and-pair"),
        pytest.param({"é": 1}, '{"\\u00e9":1}', id="non-ascii-key"),
    ],
)
def test_encode_json_exact_text(value, expected: str):
    assert encode_json(value) == expected


def test_encode_json_sse_data_line_exact():
    rows = [
        {"request_id": "r-1", "error_message": "line one\r\nline two"},
        {"request_id": "r-2", "error_message": "cr\ronly lf\nonly"},
        {"request_id": "r-3", "error_message": "sep\u2028para\u2029nel\u0085end"},
        {"request_id": "r-4", "error_message": "</script><b>bold</b>"},
    ]

    payload = join_rows([encode_json(row) for row in rows])
    frame = f"event: entries\ndata: {payload}\n\n"

    assert payload == (
        '[{"request_id":"r-1","error_message":"line one\\r\\nline two"},'
        '{"request_id":"r-2","error_message":"cr\\ronly lf\\nonly"},'
        '{"request_id":"r-3","error_message":"sep\\u2028para\\u2029nel\\u0085end"},'
        '{"request_id":"r-4","error_message":"</script><b>bold</b>"}]'
    )
    for character in ["\r", "\n", "\u2028", "\u2029", "\u0085"]:
        assert character not in payload
    assert frame.encode("ascii").split(b"\n") == [
        b"event: entries",
        b"data: " + payload.encode("ascii"),
        b"",
        b"",
    ]
    assert json.loads(payload) == rows


@pytest.mark.parametrize("line_break", LINE_BREAKS, ids=lambda text: f"U+{ord(text[0]):04X}")
def test_encode_json_escapes_every_line_break(line_break: str):
    text = encode_json({"m": f"a{line_break}b"})

    assert len(text.splitlines()) == 1
    assert json.loads(text) == {"m": f"a{line_break}b"}


def test_chunk_rows_at_most_100_rows():
    rows = [f'{{"i":{index}}}' for index in range(250)]

    groups = list(chunk_rows(rows))

    assert [len(group) for group in groups] == [EVENT_MAX_ROWS, EVENT_MAX_ROWS, 50]
    assert list(itertools.chain.from_iterable(groups)) == rows


def test_chunk_rows_byte_limit():
    rows = [f'"{index:04d}{"x" * 994}"' for index in range(200)]

    groups = list(chunk_rows(rows))

    assert [len(group) for group in groups] == [65, 65, 65, 5]
    assert all(len(join_rows(group)) <= EVENT_MAX_BYTES for group in groups)
    assert list(itertools.chain.from_iterable(groups)) == rows


@pytest.mark.parametrize(("row_size", "expected"), [(32766, [2]), (32767, [1, 1])])
def test_chunk_rows_fills_event_exactly(row_size: int, expected: list[int]):
    rows = ["x" * row_size, "y" * row_size]

    groups = list(chunk_rows(rows))

    assert [len(group) for group in groups] == expected
    assert max(len(join_rows(group)) for group in groups) <= EVENT_MAX_BYTES


def test_chunk_rows_oversized_row_alone():
    big = '"' + "b" * (EVENT_MAX_BYTES * 2) + '"'
    rows = ['"a1"', '"a2"', big, '"c1"', big, big, '"d1"']

    groups = list(chunk_rows(rows))

    assert groups == [['"a1"', '"a2"'], [big], ['"c1"'], [big], [big], ['"d1"']]


def test_chunk_rows_empty_input():
    assert list(chunk_rows([])) == []


T0 = datetime(2026, 12, 4, 20, 1, 16, 534001, tzinfo=UTC)


def test_make_cursor_exact_text():
    assert make_cursor(T0, "chatcmpl-4e3069bc") == "1796414476534001-chatcmpl-4e3069bc"


def test_make_cursor_converts_offset_to_utc():
    local = T0.astimezone(timezone(timedelta(hours=-5)))

    assert make_cursor(local, "r") == make_cursor(T0, "r")


@pytest.mark.parametrize(
    "request_id",
    [
        "chatcmpl-4e3069bc-bc93-40c5-b96f-1fd298c0616f",
        "df47d4a7-0011-490d-8958-4081db38b288",
        "a/b/c",
        "100%",
        "with space",
        "a:b",
        "chatcmpl-1_cache_hit1733.25",
        "ключ",
        "emoji 😀",
        "cut \ud83d",
        "tab\tnew\nline\r\x00",
        "-",
        "~!.@_",
    ],
)
def test_cursor_round_trip(request_id: str):
    cursor = make_cursor(T0, request_id)

    assert parse_cursor(cursor) == (T0, request_id)


@pytest.mark.parametrize("request_id", ["a/b", "a b", "ключ", "a:b", "x\r\n\x00", "%41"])
def test_make_cursor_printable_ascii_without_colon(request_id: str):
    cursor = make_cursor(T0, request_id)

    assert re.fullmatch(r"[0-9]{16}-[-0-9A-Za-z!.@_~]+", cursor), cursor


def test_make_cursor_escapes_exact_text():
    assert make_cursor(T0, "a/b c:é") == "1796414476534001-a.2Fb!20c@3A~C3~A9"


ORDER_IDS = [
    "-",
    "0",
    "A",
    "Z",
    "a",
    "a b",
    "a!",
    "a%",
    "a-",
    "a-b",
    "a.b",
    "a/",
    "a/b",
    "a0",
    "a:b",
    "a@",
    "aA",
    "a[",
    "a_b",
    "a`",
    "ab",
    "a{",
    "a~",
    "a\x7f",
    "aé",
    "a\ud800",
    "a\uffff",
    "a😀",
    "b",
]
ORDER_TIMES = [T0 - timedelta(seconds=1), T0, T0 + timedelta(microseconds=1)]


def test_cursor_string_order_matches_row_order():
    """Percent-encoded ids sorted "/" and non-ASCII before "-" and letters, unlike raw ids."""
    pairs = [(time, request_id) for time in ORDER_TIMES for request_id in ORDER_IDS]

    by_cursor = sorted(pairs, key=lambda pair: make_cursor(*pair))

    assert by_cursor == sorted(pairs)


def test_cursor_order_for_all_single_bytes():
    ids = [chr(code) for code in range(1, 256)] + ["\u0800", "\U00010000"]
    cursors = {request_id: make_cursor(T0, request_id) for request_id in ids}

    assert sorted(ids, key=cursors.__getitem__) == sorted(ids)
    assert sorted(ids, key=lambda request_id: make_cursor(T0, request_id + "x")) == sorted(
        ids, key=lambda request_id: request_id + "x"
    )


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("", id="empty"),
        pytest.param("chatcmpl", id="no-dash"),
        pytest.param("-chatcmpl", id="no-digits"),
        pytest.param("179641447653400-r", id="15-digits"),
        pytest.param("17964144765340011-r", id="17-digits"),
        pytest.param("179641447653400a-r", id="letter-in-time"),
        pytest.param("١٧٩٦٤١٤٤٧٦٥٣٤٠٠١-r", id="non-ascii-digits"),
        pytest.param("1796414476534001", id="time-only"),
        pytest.param("1796414476534001-", id="empty-id"),
        pytest.param("1796414476534001-a b", id="raw-space"),
        pytest.param("1796414476534001-a%2Fb", id="percent-escape"),
        pytest.param("1796414476534001-a.2", id="short-escape"),
        pytest.param("1796414476534001-a.2f", id="lowercase-hex"),
        pytest.param("1796414476534001-!41", id="escaped-plain-letter"),
        pytest.param("1796414476534001-~2F", id="wrong-marker"),
        pytest.param("1796414476534001-~FF", id="invalid-utf8"),
        pytest.param("1796414476534001-é", id="raw-non-ascii"),
    ],
)
def test_parse_cursor_malformed(cursor: str):
    assert parse_cursor(cursor) is None


def test_make_cursor_clamps_before_epoch():
    cursor = make_cursor(datetime(1969, 12, 31, 23, 59, tzinfo=UTC), "r")

    assert cursor == "0000000000000000-r"
    assert parse_cursor(cursor) == (datetime(1970, 1, 1, tzinfo=UTC), "r")
