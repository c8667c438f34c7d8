"""Run the benchmarks: ``python -m bench`` (full run) or ``python -m bench --smoke``.

The full run writes ``bench/results.json`` and ``docs/benchmarks.md`` and prints the results
table. The smoke run uses tiny sizes and writes files only where ``--json``/``--markdown`` say.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench import backfill, browser, fanout, legacy, machine, pipeline
from bench.config import FULL, SMOKE, BenchConfig
from bench.procs import REPO_ROOT
from bench.report import markdown_report, text_report

SCENARIOS = ("backfill", "legacy", "pipeline", "fanout", "browser")
DEFAULT_JSON = REPO_ROOT / "bench" / "results.json"
DEFAULT_MARKDOWN = REPO_ROOT / "docs" / "benchmarks.md"


def scenario_runners(config: BenchConfig) -> dict[str, Callable[[], Awaitable[dict[str, Any]]]]:
    async def run_pipeline() -> dict[str, Any]:
        # The pipeline runs its own event loops, so it runs in a thread of its own.
        return await asyncio.to_thread(pipeline.run, config.pipeline)

    return {
        "backfill": lambda: backfill.run(config.backfill),
        "legacy": lambda: legacy.run(config.legacy),
        "pipeline": run_pipeline,
        "fanout": lambda: fanout.run(config.fanout),
        "browser": lambda: browser.run(config.browser, config.backfill),
    }


async def run_all(config: BenchConfig, names: list[str], command: str) -> dict[str, Any]:
    """Run the named scenarios in order; a failing scenario is recorded and the next one runs."""
    meter = machine.LoadMeter()
    started = time.monotonic()
    runners = scenario_runners(config)
    scenarios: dict[str, Any] = {}
    for name in names:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        scenario_started = time.monotonic()
        try:
            scenarios[name] = await runners[name]()
        except Exception:
            scenarios[name] = {"error": traceback.format_exc()}
        scenarios[name]["duration_s"] = time.monotonic() - scenario_started
        print(
            f"[bench] {name} took {scenarios[name]['duration_s']:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    return {
        "command": command,
        "finished_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": time.monotonic() - started,
        "machine": machine.facts(),
        "load": meter.finish(),
        "scenarios": scenarios,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="Tiny sizes; write no file.")
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"Comma-separated scenarios to run (default all: {','.join(SCENARIOS)}).",
    )
    parser.add_argument("--json", type=Path, help="Where to write the results as JSON.")
    parser.add_argument("--markdown", type=Path, help="Where to write the Markdown page.")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="RESULTS_JSON",
        help="Run nothing: print the table of saved results and write the Markdown page.",
    )
    args = parser.parse_args(argv)
    if args.render is not None:
        saved = orjson.loads(args.render.read_bytes())
        print(text_report(saved))
        (args.markdown or DEFAULT_MARKDOWN).write_text(markdown_report(saved), encoding="utf-8")
        return 0
    names = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenarios {unknown}; choose from {', '.join(SCENARIOS)}")
    json_path = args.json or (None if args.smoke else DEFAULT_JSON)
    markdown_path = args.markdown or (None if args.smoke else DEFAULT_MARKDOWN)
    command = "python -m bench --smoke" if args.smoke else "make bench"
    results = asyncio.run(run_all(SMOKE if args.smoke else FULL, names, command))
    print(text_report(results))
    if json_path is not None:
        json_path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    if markdown_path is not None:
        markdown_path.write_text(markdown_report(results), encoding="utf-8")
    failed = [name for name, scenario in results["scenarios"].items() if "error" in scenario]
    if failed:
        print(f"[bench] failed scenarios: {', '.join(failed)}", file=sys.stderr)
        for name in failed:
            print(results["scenarios"][name]["error"], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
