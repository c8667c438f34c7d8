"""Spend-log entries: the projection of a LiteLLM row into the lite and full forms we stream.

LiteLLM rows differ between versions, so the projection is lenient about what it reads:

1. ``metadata`` is an object, or a JSON string (LiteLLM 1.88.x).
2. Datetimes end in ``Z``, ``+00:00`` or carry no offset (read as UTC), with 0-6 fractional digits.
3. ``status`` NULL means success (rows written before the column existed).
4. ``cache_hit`` is the string "True", "False" or "None".
5. Newer columns (``request_duration_ms``, ``litellm_call_id``...) may be missing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, field_serializer, field_validator

from aria_stream.jsonrows import decode_json

ERROR_MESSAGE_MAX_CHARS = 300
FULL_STRING_MAX_CHARS = 64 * 1024

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


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    return str(value)


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
    request_id = _text(row.get("request_id"))
    if request_id is None:
        raise ValueError("row has no request_id")
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
        "error_message": _cut(_text(error.get("error_message")), ERROR_MESSAGE_MAX_CHARS),
    }


def project_full(row: dict[str, Any]) -> dict[str, Any]:
    """Build the full form: every upstream field, metadata decoded, long strings cut.

    Each string longer than 64 KB is cut to that length, and its dotted path and original length
    are listed under the ``truncated`` key, so a viewer can say how much is missing. A metadata
    string that is not a JSON object is kept as it came.
    """
    lite = project_lite(row)
    full: dict[str, Any] = {key: value for key, value in row.items()}
    metadata = row.get("metadata")
    if isinstance(metadata, str):
        decoded = _decode_object(metadata)
        full["metadata"] = metadata if decoded is None else decoded
    else:
        full["metadata"] = metadata_of(row)
    truncated: dict[str, int] = {}
    cut = _cut_long_strings(full, "", truncated)
    cut["lite"] = SpendLogEntry.model_validate(lite).model_dump(mode="json")
    if truncated:
        cut["truncated"] = truncated
    return dict(cut)


def _cut_long_strings(value: Any, path: str, truncated: dict[str, int]) -> Any:
    if isinstance(value, str):
        if len(value) > FULL_STRING_MAX_CHARS:
            truncated[path] = len(value)
            return value[:FULL_STRING_MAX_CHARS]
        return value
    if isinstance(value, dict):
        return {
            key: _cut_long_strings(item, f"{path}.{key}" if path else str(key), truncated)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [
            _cut_long_strings(item, f"{path}[{index}]", truncated)
            for index, item in enumerate(value)
        ]
    return value
