"""Spend-log queries: the filters a viewer asks for, as sent to LiteLLM and checked locally."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aria_stream.models import Status


def litellm_date(value: datetime) -> str:
    """Format a datetime as LiteLLM's ``YYYY-MM-DD HH:MM:SS`` in UTC."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True, slots=True)
class SpendQuery:
    """Filters on spend-log rows; ``None`` means no filter on that field."""

    since: datetime | None = None
    until: datetime | None = None
    model: str | None = None
    model_group: str | None = None
    status: Status | None = None
    error_code: str | None = None

    def upstream_params(self) -> dict[str, str]:
        """Return the filters LiteLLM's ``/spend/logs/v2`` understands, as query parameters."""
        params: dict[str, str] = {}
        if self.model is not None:
            params["model"] = self.model
        if self.model_group is not None:
            params["model_group"] = self.model_group
        if self.status is not None:
            params["status_filter"] = self.status
        if self.error_code is not None:
            params["error_code"] = self.error_code
        return params

    def matches(self, entry: dict[str, Any]) -> bool:
        """Check a lite entry (as produced by ``project_lite``) against every filter.

        LiteLLM applies the same filters on ``/spend/logs/v2``, but older proxies ignore the
        parameters they do not know and legacy ``/spend/logs`` has none, so we check again.
        """
        start: datetime = entry["start_time"]
        if self.since is not None and start < self.since:
            return False
        if self.until is not None and start > self.until:
            return False
        if self.model is not None and entry["model"] != self.model:
            return False
        if self.model_group is not None and entry["model_group"] != self.model_group:
            return False
        if self.status is not None and entry["status"] != self.status:
            return False
        if self.error_code is not None and entry["error_code"] != self.error_code:
            return False
        return True
