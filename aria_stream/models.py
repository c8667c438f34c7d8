"""Spend-log entries: the projection of a LiteLLM row into the lite and full forms we stream.

LiteLLM rows differ between versions, so the projection is lenient about what it reads:

1. ``metadata`` is an object, or a JSON string (LiteLLM 1.88.x).
2. Datetimes end in ``Z``, ``+00:00`` or carry no offset (read as UTC), with 0-6 fractional digits.
3. ``status`` NULL means success (rows written before the column existed).
4. ``cache_hit`` is the string "True", "False" or "None".
5. Newer columns (``request_duration_ms``, ``litellm_call_id``...) may be missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, field_serializer, field_validator

from aria_stream.events import encode_json
from aria_stream.jsonrows import decode_json
from aria_stream.redact import REDACTED, contains_secret_json, redact

ERROR_MESSAGE_MAX_CHARS = 300
# Other text fields of the lite form; a longer value is cut, which keeps a lite row small.
LITE_TEXT_MAX_CHARS = 256
# A row with a longer request id is skipped: the id is part of every event id and cursor.
REQUEST_ID_MAX_CHARS = 256
FULL_STRING_MAX_CHARS = 64 * 1024
FULL_ROW_MAX_BYTES = 256 * 1024
# Deeper lists and objects are emptied, so walking and encoding a row stays far below the
# recursion limits of Python and orjson.
FULL_MAX_DEPTH = 100
# At most this many cut paths are listed in ``truncated``; ``original_bytes`` covers the rest.
TRUNCATED_MAX_PATHS = 100
PATH_KEY_MAX_CHARS = 64
# Fields where LiteLLM rows carry the SHA-256 hash of the key that made the request.
KEY_HASH_FIELDS = frozenset({"api_key", "user_api_key", "token", "user_api_key_hash"})
_KEY_HASH = re.compile(r"[0-9a-f]{32,128}")
# Request headers whose values are credentials, in lower case; LiteLLM can store the headers
# of a request under ``proxy_server_request`` or ``metadata``.
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "x-litellm-api-key",
        "x-goog-api-key",
    }
)

Status = Literal["success", "failure"]


class SpendLogEntry(BaseModel):
    """Lite form of one spend-log row: what a list view needs, about 500 bytes of JSON."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    request_id: str
    start_time: datetime
    duration_ms: int | None = None
    model: str | None = None
    model_group: str | None = None
    provider: str | None = None
    status: Status = "success"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    spend: float = 0.0
    cache_hit: bool | None = None
    key_alias: str | None = None
    team_id: str | None = None
    user: str | None = None
    end_user: str | None = None
    session_id: str | None = None
    error_code: str | None = None
    error_class: str | None = None
    error_message: str | None = None

    @field_validator("start_time", mode="after")
    @classmethod
    def _as_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    @field_serializer("start_time")
    def _format_start_time(self, value: datetime) -> str:
        return format_utc(value)

    @classmethod
    def from_upstream(cls, row: dict[str, Any]) -> SpendLogEntry:
        """Project a raw LiteLLM row; raise ``ValueError`` when it lacks an id or a start time."""
        return cls.model_validate(project_lite(row))


def format_utc(value: datetime) -> str:
    """Format an aware datetime as ISO 8601 UTC with microseconds and a ``Z`` suffix."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_utc(value: object) -> datetime | None:
    """Parse a LiteLLM datetime string; a value without an offset is read as UTC."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def metadata_of(row: dict[str, Any]) -> dict[str, Any]:
    """Return the row's metadata as a dict, decoding the JSON-string form of LiteLLM 1.88.x.

    Metadata that is missing, null or not a JSON object gives an empty dict.
    """
    metadata = row.get("metadata")
    if isinstance(metadata, dict):
        return metadata
    if isinstance(metadata, (str, bytes)):
        decoded = _decode_object(metadata)
        if decoded is not None:
            return decoded
    return {}


def _decode_object(text: str | bytes) -> dict[str, Any] | None:
    try:
        decoded = decode_json(text)
    except orjson.JSONDecodeError:
        return None
    return decoded if isinstance(decoded, dict) else None


def _text(value: object, limit: int = LITE_TEXT_MAX_CHARS) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    if not text:
        return None
    # Redacted before the cut, so that a cut cannot leave the start of a secret behind.
    return _cut(redact(text), limit)


def _int(value: object) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        try:
            return int(float(value))
        except ValueError:
            return 0
    return 0


def _float(value: object) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return 0.0
    return 0.0


def _cache_hit(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered == "true":
            return True
        if lowered == "false":
            return False
    return None


def _status(value: object) -> Status:
    if isinstance(value, str) and value.strip().lower() == "failure":
        return "failure"
    return "success"


def _duration_ms(row: dict[str, Any], start: datetime | None) -> int | None:
    duration = row.get("request_duration_ms")
    if isinstance(duration, (int, float)) and not isinstance(duration, bool):
        return int(duration)
    end = parse_utc(row.get("endTime"))
    if start is None or end is None:
        return None
    return max(0, round((end - start).total_seconds() * 1000))


def _cut(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def project_lite(row: dict[str, Any]) -> dict[str, Any]:
    """Build the lite form of a raw row as a plain dict ready for ``SpendLogEntry``.

    Raise ``ValueError`` when the row has no ``request_id`` or no parseable ``startTime``,
    because such a row can be neither ordered nor fetched again.
    """
    raw_id = row.get("request_id")
    request_id = None if raw_id is None or raw_id == "" else str(raw_id)
    if request_id is None:
        raise ValueError("row has no request_id")
    if len(request_id) > REQUEST_ID_MAX_CHARS:
        raise ValueError(
            f"row has a request_id of {len(request_id)} characters, more than "
            f"{REQUEST_ID_MAX_CHARS}: {request_id[:40]!r}..."
        )
    start = parse_utc(row.get("startTime"))
    if start is None:
        raise ValueError(f"row {request_id!r} has no valid startTime: {row.get('startTime')!r}")

    metadata = metadata_of(row)
    error = metadata.get("error_information")
    if not isinstance(error, dict):
        error = {}
    status = _status(row.get("status") or metadata.get("status"))

    return {
        "request_id": request_id,
        "start_time": start,
        "duration_ms": _duration_ms(row, start),
        "model": _text(row.get("model")),
        "model_group": _text(row.get("model_group")),
        "provider": _text(row.get("custom_llm_provider")),
        "status": status,
        "prompt_tokens": _int(row.get("prompt_tokens")),
        "completion_tokens": _int(row.get("completion_tokens")),
        "total_tokens": _int(row.get("total_tokens")),
        "spend": _float(row.get("spend")),
        "cache_hit": _cache_hit(row.get("cache_hit")),
        "key_alias": _text(metadata.get("user_api_key_alias")),
        "team_id": _text(row.get("team_id") or metadata.get("user_api_key_team_id")),
        "user": _text(row.get("user")),
        "end_user": _text(row.get("end_user")),
        "session_id": _text(row.get("session_id")),
        "error_code": _text(error.get("error_code")),
        "error_class": _text(error.get("error_class")),
        "error_message": _text(error.get("error_message"), ERROR_MESSAGE_MAX_CHARS),
    }


def project_full(row: dict[str, Any], *, max_bytes: int = FULL_ROW_MAX_BYTES) -> dict[str, Any]:
    """Build the full form: every upstream field, metadata decoded, long values cut.

    Each string longer than 64 KB is cut to that length, and its dotted path and original length
    are listed under the ``truncated`` key, so a viewer can say how much is missing. A metadata
    string that is not a JSON object is kept as it came. Key hashes are shortened, credentials
    in stored request headers and registered secrets are replaced by ``[redacted]``.

    A row whose JSON would still exceed ``max_bytes`` is cut harder (shorter strings, fewer list
    items and object keys below the top level) until it fits. A list or object cut this way is
    listed in ``truncated`` with its original number of items. Whenever something was cut,
    ``original_bytes`` is the size of the upstream row as stream JSON.
    """
    lite = SpendLogEntry.model_validate(project_lite(row)).model_dump(mode="json")
    source: dict[str, Any] = {key: value for key, value in row.items()}
    metadata = row.get("metadata")
    if isinstance(metadata, str):
        decoded = _decode_object(metadata)
        source["metadata"] = metadata if decoded is None else decoded
    else:
        source["metadata"] = metadata_of(row)

    # Most rows contain no secret, so the walk redacts only when the first result shows one.
    redacting = False
    full = _build_full(source, lite, _Limits(FULL_STRING_MAX_CHARS, None), redacting)
    if _contains_secret(full):
        redacting = True
        full = _build_full(source, lite, _Limits(FULL_STRING_MAX_CHARS, None), redacting)
    if "truncated" not in full:
        if _encoded_size(full, max_bytes) <= max_bytes:
            return full
    original = _encoded_size(row, 0)
    full["original_bytes"] = original
    if _encoded_size(full, max_bytes) <= max_bytes:
        return full
    for limits in _TIGHTER_LIMITS:
        smaller = _build_full(source, lite, limits, redacting)
        smaller["original_bytes"] = original
        if _encoded_size(smaller, max_bytes) <= max_bytes:
            return smaller
    # Even the tightest cut is too large, for example because of thousands of top-level keys.
    return {"request_id": lite["request_id"], "lite": lite, "original_bytes": original}


@dataclass(frozen=True, slots=True)
class _Limits:
    """Limits of ``_Cutter``: characters per string, items per nested list or object."""

    string_chars: int
    items: int | None


# Tried in order for a row above the event size limit; the first that fits is used.
_TIGHTER_LIMITS = (
    _Limits(16 * 1024, 1000),
    _Limits(4 * 1024, 200),
    _Limits(1024, 50),
    _Limits(256, 10),
    _Limits(64, 3),
)


def _build_full(
    source: dict[str, Any], lite: dict[str, Any], limits: _Limits, redacting: bool
) -> dict[str, Any]:
    cutter = _Cutter(limits, redacting)
    full: dict[str, Any] = cutter.walk(source, None, 0, in_headers=False)
    full["lite"] = lite
    if cutter.truncated:
        full["truncated"] = cutter.truncated
    return full


def _contains_secret(value: Any) -> bool:
    try:
        data = orjson.dumps(value)
    except TypeError:
        data = encode_json(value).encode("ascii")
    return contains_secret_json(data)


def _encoded_size(value: Any, limit: int) -> int:
    """Return the size of ``value`` as stream JSON, where non-ASCII characters are escaped."""
    try:
        compact = orjson.dumps(value)
    except TypeError:
        compact = None
    # An escape is at most 3 times as long as the UTF-8 bytes it replaces, so a row that fits
    # even when fully escaped is not encoded a second time.
    if compact is not None and (compact.isascii() or 3 * len(compact) <= limit):
        return len(compact) if compact.isascii() else 3 * len(compact)
    return len(encode_json(value))


# A path in a row as a chain of (parent, step) pairs, joined into text only for ``truncated``.
_Path = tuple[Any, str] | None


def _path_text(path: _Path) -> str:
    steps: list[str] = []
    while path is not None:
        path, step = path
        steps.append(step)
    return "".join(reversed(steps)).removeprefix(".")


class _Cutter:
    """One walk over a row that cuts, shortens and redacts, recording what it cut."""

    def __init__(self, limits: _Limits, redacting: bool) -> None:
        self.limits = limits
        self.redact = redact if redacting else _unchanged
        self.truncated: dict[str, int] = {}

    def note(self, path: _Path, length: int) -> None:
        if len(self.truncated) < TRUNCATED_MAX_PATHS:
            self.truncated[_path_text(path)] = length

    def walk(self, value: Any, path: _Path, depth: int, *, in_headers: bool) -> Any:
        if isinstance(value, str):
            return self.string(value, path)
        if isinstance(value, dict):
            if depth >= FULL_MAX_DEPTH:
                self.note(path, len(value))
                return {}
            return self.mapping(value, path, depth, in_headers=in_headers)
        if isinstance(value, list):
            if depth >= FULL_MAX_DEPTH:
                self.note(path, len(value))
                return []
            items = value
            if self.limits.items is not None and depth > 0 and len(value) > self.limits.items:
                self.note(path, len(value))
                items = value[: self.limits.items]
            return [
                self.walk(item, (path, f"[{index}]"), depth + 1, in_headers=False)
                for index, item in enumerate(items)
            ]
        return value

    def string(self, value: str, path: _Path) -> str:
        original = len(value)
        value = self.redact(value)
        if len(value) > self.limits.string_chars:
            self.note(path, original)
            value = value[: self.limits.string_chars]
        return value

    def mapping(
        self, value: dict[str, Any], path: _Path, depth: int, *, in_headers: bool
    ) -> dict[str, Any]:
        pairs = list(value.items())
        if self.limits.items is not None and depth > 0 and len(pairs) > self.limits.items:
            self.note(path, len(pairs))
            pairs = pairs[: self.limits.items]
        result: dict[str, Any] = {}
        for key, item in pairs:
            name = str(key)
            if item is None or isinstance(item, (bool, int, float)):
                # The most common values need no walk: null, booleans and numbers.
                result[self.redact(name)] = item
                continue
            lowered = name.lower()
            if in_headers and lowered in SECRET_HEADERS and item is not None:
                result[self.redact(name)] = REDACTED
            elif lowered in KEY_HASH_FIELDS and isinstance(item, str) and _KEY_HASH.fullmatch(item):
                result[name] = shorten_hash(item)
            elif isinstance(item, str) and len(item) <= self.limits.string_chars:
                # The common case, a short string, skips the call of ``walk``.
                result[self.redact(name)] = self.redact(item)
            else:
                child = (path, "." + name[:PATH_KEY_MAX_CHARS])
                headers = lowered == "headers"
                result[self.redact(name)] = self.walk(item, child, depth + 1, in_headers=headers)
        return result


def _unchanged(text: str) -> str:
    return text


def shorten_hash(value: str) -> str:
    """Shorten a key hash to its first 8 and last 4 characters, enough to tell keys apart."""
    return f"{value[:8]}…{value[-4:]}"
