"""Sizes and knobs of every scenario: the full run of ``make bench`` and the tiny smoke run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackfillConfig:
    """Backfill over a slow link: LiteLLM's latency model and a bandwidth limit."""

    rows: int = 500
    bandwidth: float = 4_000_000.0
    # LiteLLM 1.108.7 on 2 cores, measured: first byte of a page after ~70 ms + 6 ms per row.
    latency_base: float = 0.070
    latency_per_row: float = 0.006
    reps: int = 5


@dataclass(frozen=True)
class LegacyConfig:
    """The unpaged legacy ``/spend/logs`` dump with stored prompts."""

    rows: int = 10_000
    prompt_bytes: int = 256
    reps: int = 3


@dataclass(frozen=True)
class PipelineConfig:
    """Parse, project and encode in memory, next to ``orjson.loads`` of the whole document."""

    rows: int = 2_000
    reps: int = 15
    chunk_bytes: int = 64 * 1024
    profile: bool = True


@dataclass(frozen=True)
class FanoutConfig:
    """Many SSE subscribers on the live tail while the simulator produces rows."""

    subscribers: int = 1_000
    rows_per_second: int = 50
    seconds: float = 60.0
    # The simulator makes rows visible in batches, as LiteLLM's spend-log writer does.
    flush_interval: float = 1.0
    poll_interval: float = 0.1
    windows: int = 3
    # Wait after the subscribers went live, and after the last batch for it to arrive.
    settle_seconds: float = 1.0
    drain_seconds: float = 2.0


@dataclass(frozen=True)
class BrowserConfig:
    """Headless Chromium: the viewer next to the baseline page, then a long live stream."""

    reps: int = 3
    live_rows: int = 100_000
    live_rows_per_second: int = 2_000
    # Rows are produced in batches every this many seconds.
    live_batch_seconds: float = 0.1
    poll_interval: float = 0.25
    # LiteLLM counts at most 10,000 rows, and the poller reads its whole window at every poll
    # when the count is capped, so the window must hold fewer rows: 4 s at 2,000 rows/s.
    poll_overlap: float = 4.0


@dataclass(frozen=True)
class BenchConfig:
    backfill: BackfillConfig
    legacy: LegacyConfig
    pipeline: PipelineConfig
    fanout: FanoutConfig
    browser: BrowserConfig


FULL = BenchConfig(
    BackfillConfig(), LegacyConfig(), PipelineConfig(), FanoutConfig(), BrowserConfig()
)

# Tiny sizes for the smoke test in ``make test``: every code path, in a few seconds each.
SMOKE = BenchConfig(
    BackfillConfig(rows=20, latency_base=0.01, latency_per_row=0.001, reps=1),
    LegacyConfig(rows=30, reps=1),
    PipelineConfig(rows=20, reps=2, profile=False),
    FanoutConfig(
        subscribers=3,
        rows_per_second=10,
        seconds=2.0,
        flush_interval=0.5,
        windows=1,
        settle_seconds=0.2,
        drain_seconds=0.5,
    ),
    BrowserConfig(reps=1, live_rows=100, live_rows_per_second=100, poll_interval=0.1),
)
