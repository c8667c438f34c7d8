"""Generated spend-log rows that look like those of a real LiteLLM 1.108 proxy with PostgreSQL.

Rows are kept as small records and rendered to LiteLLM's JSON on demand, from templates captured
on a real proxy (``templates.json``), so a data set of 100,000 rows stays small in memory.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any, Literal

import orjson

Variant = Literal["v2", "ui", "legacy", "v1.88"]


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """One model group of the simulated proxy and how its requests fail."""

    group: str
    model: str
    provider: str
    weight: int
    input_cost: float
    output_cost: float
    failure_rate: float
    failure: Literal["rate_limit", "connection", "server"]


PROFILES = (
    ModelProfile("gpt-4o-mini", "openai/gpt-4o-mini", "openai", 30, 1.5e-7, 6e-7, 0.03, "server"),
    ModelProfile("gpt-4o", "openai/gpt-4o", "openai", 15, 2.5e-6, 1e-5, 0.03, "server"),
    ModelProfile(
        "claude-3-5-sonnet",
        "anthropic/claude-3-5-sonnet-20241022",
        "anthropic",
        15,
        3e-6,
        1.5e-5,
        0.03,
        "server",
    ),
    ModelProfile(
        "gemini-1.5-flash", "gemini/gemini-1.5-flash", "gemini", 20, 7.5e-8, 3e-7, 0.02, "server"
    ),
    # A free tier that answers 429 to almost half of its requests.
    ModelProfile(
        "free-llama", "groq/llama-3.1-8b-instant", "groq", 12, 0.0, 0.0, 0.45, "rate_limit"
    ),
    # A local model whose server is down most of the time.
    ModelProfile("local-qwen", "ollama/qwen2.5:7b", "ollama", 8, 0.0, 0.0, 0.6, "connection"),
)

KEYS = (
    ("prod-backend", "team-search", "Search"),
    ("data-pipeline", "team-ml", "ML Platform"),
    ("notebook-alice", "", None),
    (None, "", None),
)
USERS = ("alice", "bob", "default_user_id", "carol")

FAILURES = {
    "rate_limit": (
        "429",
        "RateLimitError",
        "litellm.RateLimitError: RateLimitError: GroqException - Rate limit reached for model "
        "`llama-3.1-8b-instant` on tokens per minute (TPM): Limit 6000, Used 5871, Requested "
        "412. Please try again in 2.83s.",
    ),
    "connection": (
        "500",
        "APIConnectionError",
        "litellm.APIConnectionError: OllamaException - [Errno 111] Connection refused. "
        "Received Model Group=local-qwen",
    ),
    "server": (
        "500",
        "InternalServerError",
        "litellm.InternalServerError: InternalServerError: upstream returned 500 "
        "{'error': {'message': 'The server had an error while processing your request.'}}",
    ),
}


@cache
def templates() -> dict[str, Any]:
    """Load the row templates captured from a real proxy."""
    text = resources.files(__package__).joinpath("templates.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def key_hash(alias: str | None) -> str:
    """Return the sha256 hex that LiteLLM stores in place of a virtual key."""
    return hashlib.sha256(f"sk-simulated-{alias}".encode()).hexdigest()


@dataclass(slots=True)
class SimRow:
    """One spend-log row in compact form; ``raw`` replaces the generated content when set."""

    request_id: str
    start: datetime
    duration_ms: int
    profile: ModelProfile
    failed: bool
    prompt_tokens: int
    completion_tokens: int
    spend: float
    key: int
    user: str
    end_user: str
    session_id: str
    call_id: str
    prompt_bytes: int = 0
    raw: dict[str, Any] | None = None
    raw_bytes: bytes | None = None
    visible_at: float = 0.0
    cache: dict[str, bytes] = field(default_factory=dict)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(milliseconds=self.duration_ms)

    @property
    def api_key(self) -> str:
        """The hashed virtual key that LiteLLM stores in the row's ``api_key`` column."""
        if self.raw is not None and isinstance(self.raw.get("api_key"), str):
            return str(self.raw["api_key"])
        return key_hash(KEYS[self.key][0])

    def render(self, variant: Variant) -> bytes:
        """Return the row as LiteLLM's JSON for this endpoint variant."""
        cached = self.cache.get(variant)
        if cached is None:
            cached = (
                self.raw_bytes
                if self.raw_bytes is not None
                else orjson.dumps(self.to_dict(variant))
            )
            if len(self.cache) < 2:
                self.cache[variant] = cached
        return cached

    def to_dict(self, variant: Variant) -> dict[str, Any]:
        """Return the row as LiteLLM's JSON object for this endpoint variant."""
        if self.raw is not None:
            return self.raw
        tpl = templates()
        row: dict[str, Any] = dict(tpl["failure" if self.failed else "success"])
        legacy = variant == "legacy"
        alias, team, team_alias = KEYS[self.key]
        api_key = self.api_key
        row.update(
            request_id=self.request_id,
            api_key=api_key,
            spend=self.spend,
            total_tokens=self.prompt_tokens + self.completion_tokens,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            startTime=_format_time(self.start, legacy),
            endTime=_format_time(self.end, legacy),
            completionStartTime=_format_time(self.end, legacy),
            model=self.profile.model,
            model_group=self.profile.group,
            custom_llm_provider=self.profile.provider,
            user=self.user,
            team_id=team,
            end_user=self.end_user,
            session_id=self.session_id,
            status="failure" if self.failed else "success",
            litellm_call_id=self.call_id,
            request_duration_ms=self.duration_ms,
            cache_hit="False",
        )
        metadata = dict(row["metadata"])
        metadata.update(
            user_api_key=api_key,
            user_api_key_alias=alias,
            user_api_key_team_id=team or None,
            user_api_key_team_alias=team_alias,
            user_api_key_user_id=self.user,
            litellm_call_id=self.call_id,
            original_model_group=self.profile.group,
            model_map_information={
                "model_map_key": self.profile.model,
                "model_map_value": _model_map(self.profile),
            },
        )
        if self.failed:
            code, error_class, message = FAILURES[self.profile.failure]
            error = dict(metadata["error_information"])
            error.update(
                error_code=code,
                error_class=error_class,
                error_message=message,
                llm_provider=self.profile.provider,
                traceback=error["traceback"] + f"\n{error_class}: {message}\n",
            )
            metadata["error_information"] = error
        else:
            usage = {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens,
            }
            metadata["usage_object"] = {**metadata.get("usage_object", {}), **usage}
        row["metadata"] = metadata
        if variant == "v1.88":
            row["metadata"] = orjson.dumps(metadata).decode()
        elif variant == "ui":
            row.update(_session_fields(self))
        if legacy:
            row.update(tpl["legacy_extra"])
            row["created_at"] = row["updated_at"] = _format_time(self.end, True)
            if self.prompt_bytes:
                row.update(_stored_prompts(self))
        return row

    def detail(self) -> dict[str, Any]:
        """Return the ``/spend/logs/ui/{request_id}`` body: prompt, response and request."""
        if self.raw is not None:
            return {
                key: self.raw.get(key, "{}")
                for key in ("messages", "response", "proxy_server_request")
            }
        if self.prompt_bytes:
            return _stored_prompts(self)
        detail: dict[str, Any] = templates()["detail"]
        return detail


def _format_time(value: datetime, legacy: bool) -> str:
    # The ORM path (legacy /spend/logs) writes microseconds and Z; raw SQL writes ms and +00:00.
    if legacy:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+00:00"


@cache
def _model_map(profile: ModelProfile) -> dict[str, Any]:
    base = templates()["model_map"]
    value = dict(base.get("openai/gpt-4o") or next(iter(base.values())))
    value.update(
        key=profile.model.split("/", 1)[1],
        litellm_provider=profile.provider,
        input_cost_per_token=profile.input_cost,
        output_cost_per_token=profile.output_cost,
    )
    return value


def _session_fields(row: SimRow) -> dict[str, Any]:
    return {
        "session_total_count": 1,
        "session_total_spend": row.spend,
        "session_total_duration_ms": row.duration_ms,
        "session_cache_hit_count": 0,
        "session_llm_count": 1,
        "session_agent_count": 0,
        "session_total_prompt_tokens": row.prompt_tokens,
        "session_total_completion_tokens": row.completion_tokens,
        "session_total_tokens": row.prompt_tokens + row.completion_tokens,
        "session_models": [row.profile.model],
        "session_models_truncated": False,
    }


def _stored_prompts(row: SimRow) -> dict[str, Any]:
    rng = random.Random(row.request_id)
    prompt = _filler_text(rng, row.prompt_bytes // 2)
    answer = _filler_text(rng, row.prompt_bytes // 2)
    request = {
        "model": row.profile.group,
        "user": row.end_user,
        "messages": [{"role": "user", "content": prompt}],
    }
    response = {
        "id": row.request_id,
        "model": row.profile.group,
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}],
    }
    return {"messages": "{}", "proxy_server_request": request, "response": response}


def _filler_text(rng: random.Random, length: int) -> str:
    """Return ``length`` characters of words: 64 random ones repeated, fast even for megabytes."""
    words = ("spend", "budget", "latency", "token", "proxy", "model", "route", "cache", "key")
    block = " ".join(rng.choice(words) for _ in range(64)) + " "
    return (block * (length // len(block) + 1))[:length]


class RowFactory:
    """Deterministic generator of rows: the same seed gives the same rows."""

    def __init__(self, seed: int, prompt_bytes: int = 0) -> None:
        self.rng = random.Random(seed)
        self.prompt_bytes = prompt_bytes
        self._weights = [profile.weight for profile in PROFILES]

    def make(self, start: datetime, *, failed: bool | None = None) -> SimRow:
        """Create one row that started at ``start``."""
        rng = self.rng
        profile = rng.choices(PROFILES, weights=self._weights)[0]
        if failed is None:
            failed = rng.random() < profile.failure_rate
        prompt_tokens = rng.randint(8, 2400)
        completion_tokens = 0 if failed else rng.randint(1, 900)
        spend = (
            0.0
            if failed
            else round(
                prompt_tokens * profile.input_cost + completion_tokens * profile.output_cost, 10
            )
        )
        duration = rng.randint(2, 60) if failed else int(rng.lognormvariate(6.6, 0.8))
        call_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        request_id = (
            call_id if failed else f"chatcmpl-{uuid.UUID(int=rng.getrandbits(128), version=4)}"
        )
        return SimRow(
            request_id=request_id,
            start=start,
            duration_ms=duration,
            profile=profile,
            failed=failed,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            spend=spend,
            key=rng.randrange(len(KEYS)),
            user=rng.choice(USERS),
            end_user=f"end-user-{rng.randrange(12)}",
            session_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            call_id=call_id,
            prompt_bytes=self.prompt_bytes,
        )

    def history(self, count: int, newest: datetime) -> list[SimRow]:
        """Create ``count`` rows that started before ``newest``, newest first."""
        rows = []
        moment = newest
        for _ in range(count):
            moment -= timedelta(milliseconds=self.rng.randint(200, 20000))
            rows.append(self.make(moment.replace(tzinfo=UTC)))
        return rows
