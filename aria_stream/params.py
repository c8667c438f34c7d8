"""Validation of our API's query parameters, with one 400 error naming the parameter."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from aria_stream.errors import ApiError, invalid_parameter
from aria_stream.query import SpendQuery

FILTER_MAX_CHARS = 200
STREAM_LIMIT_MAX = 10_000
PAGE_LIMIT_MAX = 100
OFFSET_MAX = 1_000_000
# Maximum days a query may reach into the past (about 5 years), because a wider window makes
# LiteLLM count rows across the whole table. The part of a window after now is not counted.
RANGE_MAX_DAYS = 1830
# Dates outside these years are typing mistakes, and date arithmetic on them can overflow.
YEAR_MIN = 2000
YEAR_MAX = 2099
# Event ids are far shorter; a longer ``after`` cannot be one.
AFTER_MAX_CHARS = 2048

# Accepted values of each parameter, as its error message states them.
EXPECTED = {
    "limit": "an integer from 1 to {max}",
    "offset": f"an integer from 0 to {OFFSET_MAX}",
    "full": "true or false",
    "status": "one of: success, failure",
    "since": "an ISO 8601 date or datetime, such as 2026-12-04 or 2026-12-04T20:00:00Z",
    "until": "an ISO 8601 date or datetime, such as 2026-12-04 or 2026-12-04T20:00:00Z",
    "model": f"a string of 1 to {FILTER_MAX_CHARS} characters",
    "model_group": f"a string of 1 to {FILTER_MAX_CHARS} characters",
    "error_code": "an HTTP status code of 3 digits, such as 429",
    "after": f"an event id of at most {AFTER_MAX_CHARS} characters",
}


class FilterParams(BaseModel):
    """Filters shared by the stream, the JSON list and the export."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model: str | None = Field(default=None, max_length=FILTER_MAX_CHARS)
    model_group: str | None = Field(default=None, max_length=FILTER_MAX_CHARS)
    status: Literal["success", "failure"] | None = None
    error_code: str | None = Field(default=None, pattern=r"^[0-9]{3}$")
    since: datetime | None = None
    until: datetime | None = None
    full: bool = False

    @field_validator("since", "until", mode="after")
    @classmethod
    def _as_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def to_query(self) -> SpendQuery:
        """Return the filters as a ``SpendQuery``."""
        return SpendQuery(
            since=self.since,
            until=self.until,
            model=self.model,
            model_group=self.model_group,
            status=self.status,
            error_code=self.error_code,
        )


class StreamParams(FilterParams):
    """Query of ``GET /api/spend/stream``."""

    limit: int = Field(default=200, ge=1, le=STREAM_LIMIT_MAX)
    after: str | None = Field(default=None, max_length=AFTER_MAX_CHARS)


class LogsParams(FilterParams):
    """Query of ``GET /api/spend/logs``."""

    limit: int = Field(default=20, ge=1, le=PAGE_LIMIT_MAX)
    offset: int = Field(default=0, ge=0, le=OFFSET_MAX)


Params = TypeVar("Params", bound=FilterParams)


def parse_params(model: type[Params], query: Mapping[str, str]) -> Params:
    """Validate a query string into ``model``, or raise a 400 ``ApiError`` for the first fault.

    Empty values count as absent, because HTML forms send empty fields.
    """
    values = {key: value for key, value in query.items() if value != ""}
    try:
        params = model.model_validate(values)
    except ValidationError as error:
        first = error.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "query"
        raw = values.get(name, "")
        expected = EXPECTED.get(name, "valid").format(max=_limit_max(model))
        raise invalid_parameter(name, raw, expected) from error
    if params.since is not None and params.until is not None and params.since > params.until:
        raise ApiError(
            400,
            "invalid_parameter",
            f"since must not be later than until, got since={values['since']!r} and "
            f"until={values['until']!r}",
            param="since",
            value=values["since"],
        )
    _check_window(params, values)
    return params


def _check_window(params: FilterParams, values: Mapping[str, str]) -> None:
    """Raise a 400 ``ApiError`` for a date outside the accepted years or too wide a window."""
    for name in ("since", "until"):
        value = getattr(params, name)
        if value is not None and not YEAR_MIN <= value.year <= YEAR_MAX:
            raise ApiError(
                400,
                "invalid_parameter",
                f"{name} must be a date from {YEAR_MIN} to {YEAR_MAX}, got {values[name]!r}",
                param=name,
                value=values[name],
            )
    if params.since is None:
        return
    now = datetime.now(UTC)
    end = now if params.until is None else min(params.until, now)
    if end - params.since > timedelta(days=RANGE_MAX_DAYS):
        raise ApiError(
            400,
            "invalid_parameter",
            f"since must be at most {RANGE_MAX_DAYS} days before until or now, whichever is "
            f"earlier, got since={values['since']!r}",
            param="since",
            value=values["since"],
        )


def _limit_max(model: type[FilterParams]) -> int:
    return PAGE_LIMIT_MAX if issubclass(model, LogsParams) else STREAM_LIMIT_MAX
