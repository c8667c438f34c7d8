"""Settings read from ``ARIA_*`` environment variables and overridden by command-line flags.

Each field's description is also its ``--help`` text, and ``tests/test_docs.py`` checks that the
README lists every field.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Configuration of one aria_stream process."""

    model_config = SettingsConfigDict(env_prefix="ARIA_", extra="forbid", frozen=True)

    litellm_url: str | None = Field(
        default=None,
        description="Base URL of the LiteLLM proxy to read, e.g. http://127.0.0.1:4000. "
        "When unset, aria-stream serve starts the embedded simulator (demo mode).",
    )
    litellm_key: SecretStr | None = Field(
        default=None,
        description="LiteLLM master key (or a key allowed to read spend logs), "
        "sent as 'Authorization: Bearer'.",
    )
    from_file: Path | None = Field(
        default=None,
        description="Stream a saved spend-log dump (a /spend/logs array, a v2/ui envelope or "
        "JSON lines) instead of a LiteLLM proxy.",
    )
    host: str = Field(default="127.0.0.1", description="Address the server binds to.")
    port: int = Field(default=8765, ge=0, le=65535, description="TCP port the server listens on.")
    page_size: int = Field(
        default=1000,
        ge=1,
        le=1000,
        description="Largest page size asked of LiteLLM; drops to 100 when the proxy rejects it.",
    )
    first_page_size: int = Field(
        default=50,
        ge=1,
        le=1000,
        description="Rows in the first upstream page of a backfill; later pages double up to "
        "page_size, so the first rows arrive before LiteLLM builds a large page.",
    )
    backfill_cap: int = Field(
        default=10000,
        ge=1,
        le=100000,
        description="Most rows one stream or export reads from LiteLLM before the live tail.",
    )
    lookback_hours: float = Field(
        default=24 * 30,
        gt=0,
        description="How far back, in hours, a backfill without 'since' looks for rows.",
    )
    connect_timeout: float = Field(
        default=5.0, gt=0, description="Seconds to wait for a TCP connection to LiteLLM."
    )
    first_byte_timeout: float = Field(
        default=60.0,
        gt=0,
        description="Seconds to wait for LiteLLM's response headers; LiteLLM builds a whole "
        "page before it sends the first byte.",
    )
    idle_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds LiteLLM may stay silent between two chunks of a response body.",
    )
    ping_interval: float = Field(
        default=15.0, gt=0, description="Seconds between heartbeat events on every stream."
    )
    retry_ms: int = Field(
        default=3000,
        ge=0,
        description="Reconnect delay in milliseconds suggested to EventSource clients.",
    )
    poll_interval: float = Field(
        default=2.0, gt=0, description="Seconds between two polls of LiteLLM for new rows."
    )
    poll_overlap: float = Field(
        default=120.0,
        ge=0,
        description="Seconds each poll reaches back before the newest row, because LiteLLM "
        "writes rows in batches and a long request shows up after shorter later ones.",
    )
    poller_linger: float = Field(
        default=30.0,
        ge=0,
        description="Seconds the poller keeps running after the last viewer left.",
    )
    max_backoff: float = Field(
        default=60.0,
        gt=0,
        description="Longest wait, in seconds, between two polls while LiteLLM keeps failing.",
    )
    queue_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=64 * 1024,
        description="Bytes of events queued for one viewer before rows are dropped for it "
        "and it gets a 'lagged' event.",
    )
    write_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a write to a viewer may block before that viewer is disconnected.",
    )
    replay_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=0,
        description="Bytes of recent live rows kept so a viewer that reconnects gets exactly "
        "what it missed.",
    )
    resume_max_age: float = Field(
        default=6 * 3600.0,
        gt=0,
        description="Oldest event id, in seconds, a reconnecting viewer may resume from; an "
        "older one gets a 'reset' event and a fresh backfill.",
    )
    ready_max_age: float = Field(
        default=60.0,
        gt=0,
        description="Seconds since the last successful LiteLLM call after which /readyz "
        "answers 503.",
    )
    log_level: str = Field(default="INFO", description="Log level: DEBUG, INFO, WARNING or ERROR.")

    @field_validator("litellm_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        return value.rstrip("/")

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError(f"must be DEBUG, INFO, WARNING or ERROR, got {value!r}")
        return level

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None) -> Settings:
        """Read the environment, then apply ``overrides`` (command-line values) on top."""
        values = {key: value for key, value in (overrides or {}).items() if value is not None}
        return cls(**values)
