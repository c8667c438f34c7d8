"""Scenario: rows per second through aria_stream's own pipeline on bytes held in memory.

The pipeline is the product's code path of a backfill: ``RowSplitter`` splits the body as it
arrives in chunks (as ``LiteLLMClient`` feeds it), ``Backfill`` projects each row into the lite
form, checks the filter, builds cursors and encodes ``entries`` events. The ceiling is
``orjson.loads`` of the same whole document, which yields Python objects and nothing more.
Ceiling and pipeline runs alternate, and each pipeline run is compared with the ceiling run
next to it, so that load from other processes affects both sides of a ratio alike.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import defaultdict
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import Any

import orjson

from aria_stream.backfill import Backfill
from aria_stream.errors import UpstreamError
from aria_stream.jsonrows import MalformedRow, RowSplitter
from aria_stream.metrics import Metrics
from aria_stream.position import StreamPosition
from aria_stream.query import SpendQuery
from aria_stream.simulator.dataset import RowFactory, Variant
from aria_stream.subscriber import Outgoing
from aria_stream.upstream import PageEnd, PageEvent, PageStart, RowBatch
from bench.config import PipelineConfig
from bench.stats import ratio, summarize

# The documents: a v2 page like scenario 1's rows, and legacy rows with stored prompts.
DOCUMENTS: dict[str, tuple[Variant, int]] = {"v2 page": ("v2", 0), "legacy dump": ("legacy", 256)}
PROFILE_TOP = 12
PROFILE_RUNS = 5


def build_document(variant: Variant, rows: int, prompt_bytes: int) -> bytes:
    """Render ``rows`` simulator rows as one response body of the given endpoint variant."""
    factory = RowFactory(seed=7, prompt_bytes=prompt_bytes)
    parts = [row.render(variant) for row in factory.history(rows, datetime.now(UTC))]
    if variant == "legacy":
        return b"[" + b",".join(parts) + b"]"
    return b'{"data":[' + b",".join(parts) + b'],"total":%d,"total_is_capped":false}' % rows


class MemorySource:
    """A spend-log source over bytes in memory, split in chunks like a response body.

    It mirrors what ``LiteLLMClient`` does with each chunk: feed the splitter, drop rows whose
    request id was seen, and yield the rest as one ``RowBatch``.
    """

    kind = "memory"
    origin = "memory"
    endpoint: str | None = "v2"
    filters_upstream = True
    last_success: float | None = None
    last_error: UpstreamError | None = None

    def __init__(self, body: bytes, chunk_bytes: int) -> None:
        self.body = body
        self.chunk_bytes = chunk_bytes

    def window(self, query: SpendQuery) -> tuple[Any, Any]:
        return query.since, query.until

    async def fetch_entry(self, request_id: str) -> dict[str, Any] | None:
        return None

    async def iter_pages(
        self,
        query: SpendQuery,
        *,
        offset: int = 0,
        page_size: int | None = None,
        expected_rows: int | None = None,
        sort_by: str | None = None,
    ) -> AsyncGenerator[PageEvent, None]:
        yield PageStart("v2", 1, None)
        splitter = RowSplitter()
        seen: set[str] = set()
        count = 0
        for start in range(0, len(self.body) + self.chunk_bytes, self.chunk_bytes):
            chunk = self.body[start : start + self.chunk_bytes]
            items = splitter.feed(chunk) if chunk else splitter.close()
            rows: list[dict[str, Any]] = []
            malformed: list[MalformedRow] = []
            for item in items:
                count += 1
                if isinstance(item, MalformedRow):
                    malformed.append(item)
                    continue
                request_id = item.get("request_id")
                if isinstance(request_id, str):
                    if request_id in seen:
                        continue
                    seen.add(request_id)
                rows.append(item)
            if rows or malformed:
                yield RowBatch(rows, malformed)
            if not chunk:
                break
        yield PageEnd(count, None, False)


async def run_pipeline(body: bytes, rows: int, chunk_bytes: int) -> tuple[float, int, int]:
    """Run one backfill over ``body``; return seconds, rows sent and event bytes produced."""
    produced = 0

    async def sink(item: Outgoing) -> None:
        nonlocal produced
        produced += len(item.data)

    async def on_endpoint(endpoint: str | None) -> None:
        return None

    backfill = Backfill(
        MemorySource(body, chunk_bytes),
        SpendQuery(),
        full=False,
        limit=rows,
        sink=sink,
        on_endpoint=on_endpoint,
        position=StreamPosition(),
        metrics=Metrics(),
        request_id="bench",
    )
    started = time.perf_counter()
    await backfill.run()
    return time.perf_counter() - started, backfill.sent, produced


def run_ceiling(body: bytes) -> tuple[float, int]:
    """Decode the whole document with orjson; return seconds and rows."""
    started = time.perf_counter()
    document = orjson.loads(body)
    elapsed = time.perf_counter() - started
    rows = document["data"] if isinstance(document, dict) else document
    return elapsed, len(rows)


def measure_document(body: bytes, config: PipelineConfig) -> dict[str, Any]:
    reps = []
    # One unmeasured round first, so imports and caches do not count.
    asyncio.run(run_pipeline(body, config.rows, config.chunk_bytes))
    run_ceiling(body)
    for rep in range(config.reps):
        # Each timed run starts with no garbage left by the one before it.
        gc.collect()
        if rep % 2 == 0:
            ceiling_s, ceiling_rows = run_ceiling(body)
            gc.collect()
            pipeline_s, sent, produced = asyncio.run(
                run_pipeline(body, config.rows, config.chunk_bytes)
            )
        else:
            pipeline_s, sent, produced = asyncio.run(
                run_pipeline(body, config.rows, config.chunk_bytes)
            )
            gc.collect()
            ceiling_s, ceiling_rows = run_ceiling(body)
        reps.append(
            {
                "ceiling_rows_per_s": ceiling_rows / ceiling_s,
                "pipeline_rows_per_s": sent / pipeline_s,
                "ratio": ratio(sent / pipeline_s, ceiling_rows / ceiling_s),
                "rows": sent,
                "event_bytes": produced,
            }
        )
    summary = {
        key: summarize(rep[key] for rep in reps)
        for key in ("ceiling_rows_per_s", "pipeline_rows_per_s", "ratio")
    }
    return {
        "body_bytes": len(body),
        "bytes_per_row": len(body) / config.rows,
        "reps": reps,
        "summary": summary,
    }


def profile_pipeline(body: bytes, config: PipelineConfig) -> list[dict[str, Any]]:
    """Profile the pipeline with pyinstrument; return the functions with the most self time."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0002, async_mode="disabled")
    profiler.start()
    for _ in range(PROFILE_RUNS):
        asyncio.run(run_pipeline(body, config.rows, config.chunk_bytes))
    session = profiler.stop()
    root = session.root_frame()
    if root is None:
        return []
    # pyinstrument puts the time a function spent in its own code in a "[self]" child.
    self_time: dict[tuple[str, str], float] = defaultdict(float)
    stack = [root]
    while stack:
        frame = stack.pop()
        for child in frame.children:
            if child.is_synthetic:
                where = f"{frame.file_path_short}:{frame.line_no}"
                self_time[(frame.function, where)] += child.time
            else:
                stack.append(child)
    total = root.time
    top = sorted(self_time.items(), key=lambda item: item[1], reverse=True)[:PROFILE_TOP]
    return [
        {"function": function, "where": where, "self_share": own / total}
        for (function, where), own in top
    ]


def run(config: PipelineConfig) -> dict[str, Any]:
    """Run the scenario for every document; return results, summary and targets."""
    documents: dict[str, Any] = {}
    for name, (variant, prompt_bytes) in DOCUMENTS.items():
        body = build_document(variant, config.rows, prompt_bytes)
        documents[name] = measure_document(body, config)
        if config.profile and name == "v2 page":
            documents[name]["profile"] = profile_pipeline(body, config)
    targets = [
        {
            "name": f"pipeline rows/s / orjson.loads rows/s ({name})",
            "target": ">= 0.6",
            "value": result["summary"]["ratio"]["median"],
            "holds": (result["summary"]["ratio"]["median"] or 0) >= 0.6,
        }
        for name, result in documents.items()
    ]
    complete = all(
        rep["rows"] == config.rows for result in documents.values() for rep in result["reps"]
    )
    return {
        "config": vars(config),
        "documents": documents,
        "targets": targets,
        "complete": complete,
    }
