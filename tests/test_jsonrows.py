"""RowSplitter: rows cut out of a spend-log body while it arrives, in any chunking."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from aria_stream.jsonrows import (
    BodyError,
    Item,
    MalformedRow,
    NotJSONBody,
    RowSplitter,
    TruncatedBody,
)

# Rows whose strings and nested lists contain what the row end pattern looks for, so a row end
# taken from the pattern alone would be wrong.
TRICKY_ROWS: list[dict[str, Any]] = [
    {
        "request_id": "chatcmpl-1",
        "model": "gpt-4o-mini",
        "spend": 1.35e-05,
        "metadata": {"status": None, "tags": ["batch-2", "seed"], "usage": {"total": 30}},
    },
    {"request_id": "chatcmpl-2", "error_message": '},{"request_id": "x"}]'},
    {
        "request_id": "chatcmpl-3",
        "children": [
            {"request_id": "child-1", "spend": 0},
            {"request_id": "child-2", "nested": [{"request_id": "grandchild"}]},
        ],
    },
    {
        "request_id": "chatcmpl-4",
        "error_message": (
            "litellm.BadRequestError: {'error': {'message': \"bad } ] {\", 'code': 400}}"
        ),
    },
    {"request_id": "chatcmpl-5", "path": "C:\\logs\\", "quote": 'say "hi"', "ends": "\\\\"},
    {"request_id": "chatcmpl-6", "text": 'naïve – 😀 \u2028 line\nbreak "}" ]'},
    {"request_id": "chatcmpl-7", "empty": {}, "list": [], "none": None, "flag": True},
]
ENVELOPE_AFTER = {
    "total": 7,
    "page": 1,
    "page_size": 50,
    "total_pages": 1,
    "total_is_capped": False,
}
CHUNK_SIZES = [1, 2, 3, 7, 64, 1000, None]


def split_body(body: bytes, size: int | None) -> tuple[list[Item], RowSplitter]:
    """Feed ``body`` in pieces of ``size`` bytes (one piece for None) and close the splitter."""
    splitter = RowSplitter()
    step = size or max(len(body), 1)
    items: list[Item] = []
    for offset in range(0, len(body), step):
        items.extend(splitter.feed(body[offset : offset + step]))
    items.extend(splitter.close())
    return items, splitter


def feed_until_error(body: bytes, size: int | None) -> tuple[list[Item], BodyError]:
    """Feed ``body`` in pieces, close, and return the items before the error and the error."""
    splitter = RowSplitter()
    step = size or max(len(body), 1)
    items: list[Item] = []
    try:
        for offset in range(0, len(body), step):
            items.extend(splitter.feed(body[offset : offset + step]))
        items.extend(splitter.close())
    except BodyError as error:
        return items, error
    raise AssertionError(f"no BodyError for {body[:80]!r}; items {items!r}")


def dumps(value: Any, layout: str) -> bytes:
    if layout == "pretty":
        return json.dumps(value, indent=2, ensure_ascii=False).encode()
    if layout == "ascii":
        return json.dumps(value).encode()
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def document(shape: str, layout: str) -> bytes:
    if shape == "array":
        return dumps(TRICKY_ROWS, layout)
    if shape == "envelope-after":
        return dumps({"data": TRICKY_ROWS, **ENVELOPE_AFTER}, layout)
    if shape == "envelope-around":
        head = {"total": 7, "page": 1}
        tail = {"page_size": 50, "total_pages": 1, "total_is_capped": True}
        return dumps({**head, "data": TRICKY_ROWS, **tail}, layout)
    lines = b"\n".join(
        dumps(row, "compact" if layout == "pretty" else layout) for row in TRICKY_ROWS
    )
    if shape == "lines-newline":
        return lines + b"\n"
    if shape == "lines-crlf":
        return lines.replace(b"\n", b"\r\n") + b"\r\n"
    return lines


def expected_rows(shape: str, body: bytes) -> list[Any]:
    if shape.startswith("lines"):
        return [json.loads(line) for line in body.splitlines() if line.strip()]
    parsed = json.loads(body)
    return parsed if shape == "array" else parsed["data"]


SHAPES = ["array", "envelope-after", "envelope-around", "lines", "lines-newline", "lines-crlf"]


@pytest.mark.parametrize("size", CHUNK_SIZES, ids=lambda size: f"chunk-{size or 'whole'}")
@pytest.mark.parametrize("layout", ["compact", "pretty", "ascii"])
@pytest.mark.parametrize("shape", SHAPES)
def test_splitter_rows_match_json_loads(shape: str, layout: str, size: int | None):
    body = document(shape, layout)

    items, _ = split_body(body, size)

    assert items == expected_rows(shape, body)
    assert items == TRICKY_ROWS


@pytest.mark.parametrize("size", CHUNK_SIZES, ids=lambda size: f"chunk-{size or 'whole'}")
@pytest.mark.parametrize(
    ("shape", "envelope"),
    [
        ("envelope-after", ENVELOPE_AFTER),
        (
            "envelope-around",
            {"total": 7, "page": 1, "page_size": 50, "total_pages": 1, "total_is_capped": True},
        ),
        ("array", {}),
        ("lines-newline", {}),
    ],
)
@pytest.mark.parametrize("layout", ["compact", "pretty"])
def test_splitter_envelope_members_after_close(
    shape: str, envelope: dict[str, Any], layout: str, size: int | None
):
    _, splitter = split_body(document(shape, layout), size)

    assert splitter.envelope == envelope


@pytest.mark.parametrize(
    "shape", ["array", "envelope-after", "envelope-around", "lines", "lines-crlf"]
)
def test_splitter_shape_name(shape: str):
    _, splitter = split_body(document(shape, "compact"), 5)

    assert splitter.shape == shape.split("-")[0]


@pytest.mark.parametrize(
    ("prefix", "separator", "suffix"),
    [
        (b"[", b",", b"]"),
        (b'{"data": [', b", ", b'], "total": 2}'),
        (b"", b"\n", b"\n"),
    ],
    ids=["array", "envelope", "lines"],
)
def test_splitter_returns_row_before_body_ends(prefix: bytes, separator: bytes, suffix: bytes):
    first = orjson.dumps({"request_id": "req-1", "model": "gpt-4o"})
    second = orjson.dumps({"request_id": "req-2", "model": "gpt-4o", "prompt": "x" * 200})
    body = prefix + first + separator + second + suffix
    cut = len(prefix + first + separator) + len(second) // 2
    splitter = RowSplitter()

    returned = splitter.feed(body[:cut])

    assert returned == [{"request_id": "req-1", "model": "gpt-4o"}]
    assert splitter.feed(body[cut:]) + splitter.close() == [orjson.loads(second)]


@pytest.mark.parametrize("size", [1000, 65536, None], ids=lambda size: f"chunk-{size or 'whole'}")
def test_splitter_real_legacy_rows(size: int | None):
    fixtures = Path(__file__).parent / "fixtures"
    success = json.loads((fixtures / "spend_logs.success_row.json").read_bytes())
    failure = json.loads((fixtures / "spend_logs.failure_row.json").read_bytes())
    rows = [
        {**template, "request_id": f"req-{index}"}
        for index, template in enumerate([success, failure] * 5)
    ]

    items, _ = split_body(orjson.dumps(rows), size)

    assert items == rows


def test_splitter_returns_row_cut_between_rows():
    """A body cut right after a row's closing brace held that row back until close() raised."""
    body = b'[{"request_id":"a"},{"request_id":"b"}'
    splitter = RowSplitter()

    returned = splitter.feed(body)

    assert returned == [{"request_id": "a"}, {"request_id": "b"}]
    with pytest.raises(TruncatedBody):
        splitter.close()


def generate_array(total_bytes: int, chunk_size: int) -> Iterator[bytes]:
    """Yield a JSON array of at least ``total_bytes`` in ``chunk_size`` pieces, row by row.

    Every 50th row contains a nested list of objects led by ``request_id``, so some row end
    matches fail to decode and the splitter has to look further.
    """
    pending = bytearray(b"[")
    produced = 0
    index = 0
    while produced < total_bytes:
        row: dict[str, Any] = {
            "request_id": f"req-{index:07d}",
            "startTime": "2026-12-04T20:01:16.534000Z",
            "metadata": {"user_api_key_alias": "team-beta-key", "tags": ["a", "b"]},
            "prompt": f"prompt {index} " + "lorem ipsum " * 150,
        }
        if index % 50 == 0:
            row["children"] = [{"request_id": f"child-{index}"}, {"request_id": "child"}]
        if index:
            pending += b","
        pending += orjson.dumps(row)
        index += 1
        while len(pending) >= chunk_size:
            produced += chunk_size
            yield bytes(pending[:chunk_size])
            del pending[:chunk_size]
    pending += b"]"
    yield bytes(pending)


def test_splitter_buffer_small_on_50mb():
    chunk_size = 64 * 1024
    splitter = RowSplitter()
    largest_buffer = 0
    count = 0

    for chunk in generate_array(50 * 1024 * 1024, chunk_size):
        for item in splitter.feed(chunk):
            assert isinstance(item, dict)
            assert item["request_id"] == f"req-{count:07d}"
            count += 1
        largest_buffer = max(largest_buffer, len(splitter._buf))
    count += len(splitter.close())

    assert largest_buffer < 256 * 1024
    assert count == splitter.rows_seen
    assert count > 25_000


def bodies_with_row_ends(shape: str) -> tuple[bytes, list[int]]:
    """Return a compact body of the first four TRICKY_ROWS and the offset just past each."""
    encoded = [orjson.dumps(row) for row in TRICKY_ROWS[:4]]
    prefix, separator, suffix = {
        "array": (b"[", b",", b"]"),
        "envelope": (b'{"data":[', b",", b'],"total":4,"total_is_capped":false}'),
        "lines": (b"", b"\n", b"\n"),
    }[shape]
    ends = []
    offset = len(prefix)
    for row in encoded:
        offset += len(row)
        ends.append(offset)
        offset += len(separator)
    return prefix + separator.join(encoded) + suffix, ends


@pytest.mark.parametrize("size", [1, None], ids=["chunk-1", "chunk-whole"])
@pytest.mark.parametrize("shape", ["array", "envelope"])
def test_splitter_truncated_list_every_cut(shape: str, size: int | None):
    body, ends = bodies_with_row_ends(shape)

    for cut in range(1, len(body)):
        items, error = feed_until_error(body[:cut], size)

        complete = sum(1 for end in ends if end <= cut)
        assert type(error) is TruncatedBody, (cut, error)
        assert items == TRICKY_ROWS[:complete], cut


@pytest.mark.parametrize("size", [1, None], ids=["chunk-1", "chunk-whole"])
def test_splitter_truncated_lines_every_cut(size: int | None):
    body, ends = bodies_with_row_ends("lines")
    line_ends = set(ends) | {end + 1 for end in ends}

    for cut in range(1, len(body)):
        if cut in line_ends:
            continue
        items, error = feed_until_error(body[:cut], size)

        complete = sum(1 for end in ends if end < cut)
        assert type(error) is TruncatedBody, (cut, error)
        assert items == TRICKY_ROWS[:complete], cut


@pytest.mark.parametrize("cut", [1, 2, 10])
def test_splitter_truncated_envelope_tail(cut: int):
    body, _ = bodies_with_row_ends("envelope")
    tail_start = body.rindex(b"],")

    items, error = feed_until_error(body[: tail_start + cut], 16)

    assert type(error) is TruncatedBody
    assert str(error) == "body ended after the row list, before the envelope closed"
    assert items == TRICKY_ROWS[:4]


def test_splitter_lines_cut_at_line_end():
    body, ends = bodies_with_row_ends("lines")

    items, _ = split_body(body[: ends[1]], 3)

    assert items == TRICKY_ROWS[:2]


NGINX_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


@pytest.mark.parametrize("size", CHUNK_SIZES, ids=lambda size: f"chunk-{size or 'whole'}")
def test_splitter_html_body_not_json(size: int | None):
    items, error = feed_until_error(NGINX_502, size)

    assert isinstance(error, NotJSONBody)
    assert error.excerpt == "502 Bad Gateway 502 Bad Gateway nginx"
    assert items == []


def test_splitter_long_html_raises_before_close():
    splitter = RowSplitter()

    with pytest.raises(NotJSONBody) as caught:
        splitter.feed(NGINX_502 + b"\r\n" * 200)

    assert caught.value.excerpt == "502 Bad Gateway 502 Bad Gateway nginx"


def test_splitter_plain_text_not_json():
    items, error = feed_until_error(b"Internal Server Error", 4)

    assert isinstance(error, NotJSONBody)
    assert str(error) == "body is not JSON: 'Internal Server Error'"
    assert items == []


@pytest.mark.parametrize("body", [b"", b"  \r\n\t"], ids=["empty", "whitespace"])
def test_splitter_empty_body_error(body: bytes):
    items, error = feed_until_error(body, 1)

    assert type(error) is BodyError
    assert str(error) == "body is empty"
    assert items == []


MIXED_ELEMENTS = [
    b"NaN",
    b'{"request_id":"a"}',
    b"42",
    b"null",
    b'{"request_id":"b","spend":}',
    b'{"request_id":"c"}',
    b'{"request_id":"d","spend":NaN}',
]


def summarize(items: list[Item]) -> list[Any]:
    return [
        ("malformed", item.excerpt) if isinstance(item, MalformedRow) else item for item in items
    ]


@pytest.mark.parametrize("size", [1, None], ids=["chunk-1", "chunk-whole"])
@pytest.mark.parametrize(
    ("shape", "elements"),
    [
        ("array", MIXED_ELEMENTS),
        ("envelope", MIXED_ELEMENTS),
        ("lines", MIXED_ELEMENTS[1:]),
    ],
)
def test_splitter_malformed_elements_in_place(shape: str, elements: list[bytes], size: int | None):
    body = {
        "array": b"[" + b",".join(elements) + b"]",
        "envelope": b'{"data": [' + b", ".join(elements) + b'], "total": 7}',
        "lines": b"\n".join(elements) + b"\n",
    }[shape]

    items, _ = split_body(body, size)

    assert summarize(items) == [
        orjson.loads(element) if element.endswith(b'"}') else ("malformed", element.decode())
        for element in elements
    ]


def test_splitter_malformed_reasons():
    items, _ = split_body(b"[" + b",".join(MIXED_ELEMENTS) + b"]", 3)

    reasons = {item.excerpt: item.reason for item in items if isinstance(item, MalformedRow)}
    assert reasons["42"] == "row is a JSON number, not an object"
    assert reasons["null"] == "row is a JSON null, not an object"
    assert reasons["NaN"].startswith("invalid JSON: ")
    assert reasons['{"request_id":"b","spend":}'].startswith("invalid JSON: ")
    assert reasons['{"request_id":"d","spend":NaN}'].startswith("invalid JSON: ")


def test_splitter_malformed_first_json_line():
    """A JSON lines body whose first line was broken was read as one document and lost."""
    body = b'{"request_id":"a","spend":}\n{"request_id":"b"}\n{"request_id":"c"}\n'

    items, splitter = split_body(body, 5)

    assert splitter.shape == "lines"
    assert isinstance(items[0], MalformedRow)
    assert items[0].excerpt == '{"request_id":"a","spend":}'
    assert items[1:] == [{"request_id": "b"}, {"request_id": "c"}]


@pytest.mark.parametrize(
    ("last_line", "reason"),
    [
        (b'{"request_id":"z","spend":}', "invalid JSON: unexpected character"),
        (b"42", "row is a JSON number, not an object"),
    ],
    ids=["broken-object", "number"],
)
def test_splitter_malformed_last_line_kept(last_line: bytes, reason: str):
    items, _ = split_body(b'{"request_id":"a"}\n' + last_line, 3)

    assert items[0] == {"request_id": "a"}
    assert isinstance(items[1], MalformedRow)
    assert items[1].excerpt == last_line.decode()
    assert items[1].reason.startswith(reason)
    assert len(items) == 2


LONE_SURROGATE_ROW = b'{"request_id":"chatcmpl-9","prompt":"cut \\ud83d here","reply":"ok \\udc00"}'


@pytest.mark.parametrize("size", [1, 7, None], ids=["chunk-1", "chunk-7", "chunk-whole"])
@pytest.mark.parametrize(
    ("prefix", "separator", "suffix"),
    [
        (b"[", b",", b"]"),
        (b'{"data":[', b",", b'],"total":3}'),
        (b"", b"\n", b"\n"),
        (b"", b"\n", b""),
    ],
    ids=["array", "envelope", "lines", "lines-no-newline"],
)
def test_splitter_lone_surrogate_row_delivered(
    prefix: bytes, separator: bytes, suffix: bytes, size: int | None
):
    """orjson rejects an escaped lone surrogate, and such a row was reported as malformed."""
    rows = [LONE_SURROGATE_ROW, b'{"request_id":"chatcmpl-10"}', LONE_SURROGATE_ROW]
    body = prefix + separator.join(rows) + suffix

    items, _ = split_body(body, size)

    expected = {"request_id": "chatcmpl-9", "prompt": "cut \ud83d here", "reply": "ok \udc00"}
    assert items == [expected, {"request_id": "chatcmpl-10"}, expected]


def test_splitter_lone_surrogate_single_document():
    items, splitter = split_body(b'{"request_id": "x", "m": "\\ud800"}', 4)

    assert splitter.shape == "document"
    assert items == [{"request_id": "x", "m": "\ud800"}]


def test_splitter_fallback_still_rejects_nan():
    """The standard library accepts NaN, so the fallback decoder must reject it on its own."""
    body = b'[{"request_id":"a","m":"\\ud800","spend":NaN},{"request_id":"b"}]'

    items, _ = split_body(body, None)

    assert isinstance(items[0], MalformedRow)
    assert items[1:] == [{"request_id": "b"}]


def test_splitter_skips_utf8_bom():
    body = b"\xef\xbb\xbf" + document("lines-newline", "compact")

    items, _ = split_body(body, 1)

    assert items == TRICKY_ROWS


def test_splitter_empty_array_and_envelope():
    assert split_body(b"[]", 1)[0] == []
    items, splitter = split_body(b'{"data": [], "total": 0, "total_is_capped": false}', 1)
    assert items == []
    assert splitter.envelope == {"total": 0, "total_is_capped": False}


def test_splitter_data_after_array_rejected():
    items, error = feed_until_error(b'[{"request_id":"a"}] trailing', 4)

    assert type(error) is BodyError
    assert str(error) == "unexpected data after the row list: 'trailing'"
    assert items == [{"request_id": "a"}]
