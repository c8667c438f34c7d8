"""Settings read from ``ARIA_*`` environment variables and overridden by command-line flags.

Each field's description is also its ``--help`` text, and ``tests/test_docs.py`` checks that the
README lists every field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# A browser origin: scheme, host and an optional port, nothing after.
_ORIGIN = re.compile(
    r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?"
)


def _is_header_safe(text: str) -> bool:
    """Check that ``text`` is printable ASCII without spaces, so it fits an HTTP header."""
    return all("!" <= char <= "~" for char in text)


class Settings(BaseSettings):
    """Configuration of one aria_stream process."""

    # Validation errors would otherwise quote a rejected key or token in their text.
    model_config = SettingsConfigDict(
        env_prefix="ARIA_", extra="forbid", frozen=True, hide_input_in_errors=True
    )

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
        default=5,
        ge=1,
        le=1000,
        description="Rows in the first upstream page of a backfill; later pages grow by "
        "doubling (5, 5, 10, 20, ...) up to page_size, so the first rows arrive before LiteLLM "
        "builds a large page.",
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
        description="Seconds each poll reaches back from its start, because LiteLLM writes rows "
        "in batches and a long request shows up after shorter later ones.",
    )
    poller_linger: float = Field(
        default=30.0,
        ge=0,
        description="Seconds the poller keeps running after the last viewer left.",
    )
    max_backoff: float = Field(
        default=60.0,
        gt=0,
        description="Maximum wait, in seconds, between two polls while LiteLLM keeps failing.",
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
        description="Seconds a successful LiteLLM call keeps /readyz at 200; after that "
        "/readyz requests one row from LiteLLM and answers 503 if that fails.",
    )
    log_level: str = Field(default="INFO", description="Log level: DEBUG, INFO, WARNING or ERROR.")
    auth_token: SecretStr | None = Field(
        default=None,
        description="Viewer token of at least 16 characters. When set, the viewer asks for it "
        "once and keeps a session cookie, and API clients send 'Authorization: Bearer'.",
    )
    insecure_public: bool = Field(
        default=False,
        description="Allow binding to an address other than loopback without auth_token, "
        "so anyone who reaches the port reads the spend logs.",
    )
    session_ttl: float = Field(
        default=12 * 3600.0,
        gt=0,
        description="Seconds a sign-in session lasts; its open streams close when it expires.",
    )
    session_max: int = Field(
        default=1000,
        ge=1,
        description="Sign-in sessions kept in memory; the oldest is signed out past this.",
    )
    login_max_failures: int = Field(
        default=5,
        ge=1,
        description="Wrong tokens accepted from one client address within login_window "
        "before it gets 429 responses.",
    )
    login_window: float = Field(
        default=60.0, gt=0, description="Seconds over which wrong tokens are counted."
    )
    behind_proxy: bool = Field(
        default=False,
        description="Take the client address from the last X-Forwarded-For entry and the "
        "scheme from X-Forwarded-Proto, as set by a reverse proxy such as nginx; enable it "
        "only when clients cannot reach aria_stream directly.",
    )
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Origins allowed to call the API from a browser (CORS), separated by "
        "commas, such as https://dash.example.com; empty turns CORS off.",
    )
    max_streams: int = Field(
        default=100,
        ge=1,
        description="Open streams the server accepts; more get 503 with Retry-After.",
    )
    max_streams_per_client: int = Field(
        default=10,
        ge=1,
        description="Open streams one client address may have; more get 429 with Retry-After.",
    )
    max_event_bytes: int = Field(
        default=256 * 1024,
        ge=16 * 1024,
        description="Largest encoded full row in bytes; a larger row is cut and the cut "
        "parts are listed with their original sizes.",
    )

    @field_validator("litellm_key")
    @classmethod
    def _check_key(cls, value: SecretStr | None) -> SecretStr | None:
        # httpx would reject such a key later, in an error that quotes the header.
        if value is not None and not _is_header_safe(value.get_secret_value()):
            raise ValueError("must be printable ASCII without spaces")
        return value

    @field_validator("auth_token")
    @classmethod
    def _check_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value() == "":
            return None
        token = value.get_secret_value()
        if not _is_header_safe(token) or not 16 <= len(token) <= 1024:
            raise ValueError(
                "must be 16 to 1024 printable ASCII characters without spaces; generate one "
                "with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("cors_origins", mode="after")
    @classmethod
    def _check_origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            if not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"each origin must be scheme://host[:port] without a path, got {origin!r}"
                )
        return value

    @field_validator("litellm_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        if "@" in value.split("/")[2]:
            # The URL shows up in error messages and logs, so it must not carry a password.
            raise ValueError("must not contain a user or password; set ARIA_LITELLM_KEY instead")
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
