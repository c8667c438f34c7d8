"""A small SSE parser for tests, written from the WHATWG rules, independent of aiohttp-sse."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientResponse

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass
class Event:
    """One dispatched event: name, data text and the id in force when it was dispatched."""

    event: str
    data: str
    id: str | None
    retry: int | None = None

    def json(self) -> Any:
        return json.loads(self.data)


def parse_events(text: str) -> list[Event]:
    """Parse a complete SSE body into events; an unterminated last event is dropped."""
    events: list[Event] = []
    name, data, last_id, retry = "", [], None, None
    lines = _LINE_END.split(text)
    # The last piece has no line end, so it is not a complete line.
    for line in lines[:-1]:
        if line == "":
            if data:
                events.append(Event(name or "message", "\n".join(data), last_id, retry))
            name, data, retry = "", [], None
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
        elif field == "id" and "\0" not in value:
            last_id = value
        elif field == "retry" and value.isdigit():
            retry = int(value)
    return events


async def read_events(
    response: ClientResponse,
    *,
    until: tuple[str, ...] = ("done", "upstream_error"),
    max_bytes: int = 200 * 1024 * 1024,
) -> list[Event]:
    """Read a live stream until an event named in ``until`` has been dispatched."""
    buffer = ""
    received = 0
    async for chunk in response.content.iter_any():
        received += len(chunk)
        buffer += chunk.decode("utf-8")
        events = parse_events(buffer)
        if any(event.event in until for event in events):
            return events
        if received > max_bytes:
            break
    return parse_events(buffer)


def rows_of(events: list[Event]) -> list[dict[str, Any]]:
    """Return every row of the ``entries`` events, in stream order."""
    rows: list[dict[str, Any]] = []
    for event in events:
        if event.event == "entries":
            rows.extend(event.json())
    return rows
