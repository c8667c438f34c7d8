"""Server-Sent Events framing of pre-encoded data, so one event is encoded once for all viewers.

The bytes match what aiohttp-sse's ``send()`` writes with ``sep="\\n"``; the data passed in is
JSON from ``encode_json``, which never holds a line break, so it always fits one ``data:`` line.
"""

from __future__ import annotations


def sse_frame(event: str, data: str, *, id: str | None = None, retry: int | None = None) -> bytes:
    """Return one SSE event as bytes: optional ``id:``, ``event:``, one ``data:``, ``retry:``."""
    if "\n" in data or "\r" in data:
        raise ValueError("event data must be a single line; encode it with encode_json")
    lines = []
    if id is not None:
        if "\n" in id or "\r" in id or "\0" in id:
            raise ValueError(f"event id must not contain CR, LF or NUL, got {id!r}")
        lines.append(f"id: {id}\n")
    lines.append(f"event: {event}\n")
    lines.append(f"data: {data}\n")
    if retry is not None:
        lines.append(f"retry: {retry}\n")
    lines.append("\n")
    return "".join(lines).encode("utf-8")
