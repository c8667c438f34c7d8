"""The results table printed at the end of a run, and the Markdown page written from it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

NOTES = Path(__file__).resolve().parent / "notes.md"
# Other processes using more than this share of all CPU time make a run "shared".
SHARED_CPU_SHARE = 0.05

Row = tuple[str, str, str, str, str]


def _num(value: float | None, unit: str = "", digits: int = 2) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}{unit}"


def _spread(summary: dict[str, Any], unit: str = "", digits: int = 2, scale: float = 1.0) -> str:
    """Format a summary as ``median (min-max)``."""
    if not summary or summary.get("median") is None:
        return "n/a"
    median = summary["median"] * scale
    low, high = summary["min"] * scale, summary["max"] * scale
    if summary["n"] == 1 or low == high:
        return _num(median, unit, digits)
    return f"{_num(median, unit, digits)} ({_num(low, '', digits)}–{_num(high, '', digits)})"


def table_rows(results: dict[str, Any]) -> list[Row]:
    """Return ``(scenario, measure, baseline, aria_stream, comparison)`` rows of every scenario."""
    rows: list[Row] = []
    scenarios = results["scenarios"]
    if "backfill" in scenarios and "summary" in scenarios["backfill"]:
        summary = scenarios["backfill"]["summary"]
        base, aria = summary["baseline"], summary["aria"]
        rows += [
            (
                "1 backfill",
                "time to first row",
                _spread(base["first_row_s"], " s"),
                _spread(aria["first_row_s"], " s", 3),
                "speedup " + _spread(summary["first_row_speedup"], "x", 1),
            ),
            (
                "1 backfill",
                "time to last row",
                _spread(base["last_row_s"], " s"),
                _spread(aria["last_row_s"], " s"),
                "speedup " + _spread(summary["last_row_speedup"], "x"),
            ),
            (
                "1 backfill",
                "bytes received / upstream bytes",
                _spread(base["bytes"], " B", 0),
                _spread(aria["bytes"], " B", 0),
                _spread(summary["bytes_share"], " %", 2, 100.0) + " of upstream",
            ),
            (
                "1 backfill",
                "server peak RSS",
                _spread(base["server_peak_rss_mb"], " MB", 1),
                _spread(aria["server_peak_rss_mb"], " MB", 1),
                "",
            ),
        ]
    if "legacy" in scenarios and "summary" in scenarios["legacy"]:
        summary = scenarios["legacy"]["summary"]
        base, aria, quiet = summary["baseline"], summary["aria"], summary["aria_stream_only"]
        rows += [
            (
                "2 legacy dump",
                "server RSS growth",
                _spread(base["server_rss_growth_mb"], " MB", 1),
                _spread(aria["server_rss_growth_mb"], " MB", 1),
                "stream alone: " + _spread(quiet["server_rss_growth_mb"], " MB", 1),
            ),
            (
                "2 legacy dump",
                "client RSS growth",
                _spread(base["client_rss_growth_mb"], " MB", 1),
                _spread(aria["client_rss_growth_mb"], " MB", 1),
                "",
            ),
            (
                "2 legacy dump",
                "time to first / last row",
                _spread(base["first_row_s"], " s"),
                f"{_spread(aria['first_row_s'], ' s', 3)} / {_spread(aria['last_row_s'], ' s')}",
                "first row speedup " + _spread(summary["first_row_speedup"], "x", 0),
            ),
        ]
    if "pipeline" in scenarios and "documents" in scenarios["pipeline"]:
        for name, document in scenarios["pipeline"]["documents"].items():
            summary = document["summary"]
            rows.append(
                (
                    "3 pipeline",
                    f"rows/s, {name}",
                    _spread(summary["ceiling_rows_per_s"], "", 0) + " (orjson.loads)",
                    _spread(summary["pipeline_rows_per_s"], "", 0),
                    _spread(summary["ratio"], "x") + " of ceiling",
                )
            )
    if "fanout" in scenarios and "result" in scenarios["fanout"]:
        result = scenarios["fanout"]["result"]
        rows += [
            (
                "4 fan-out",
                f"p50 / p99 delivery, {result['subscribers']} subscribers",
                "",
                f"{_num(_ms(result['latency_p50_s']), ' ms', 0)} / "
                f"{_num(_ms(result['latency_p99_s']), ' ms', 0)}",
                "p99 per window: "
                + ", ".join(_num(_ms(value), " ms", 0) for value in result["window_p99_s"]),
            ),
            (
                "4 fan-out",
                "p50 / p99 to first subscriber; fan-out spread",
                "",
                f"{_num(_ms(result['first_arrival_p50_s']), ' ms', 0)} / "
                f"{_num(_ms(result['first_arrival_p99_s']), ' ms', 0)}",
                f"spread p50 {_num(_ms(result['fanout_spread_p50_s']), ' ms', 0)}, "
                f"p99 {_num(_ms(result['fanout_spread_p99_s']), ' ms', 0)}",
            ),
            (
                "4 fan-out",
                "polls per interval (shortest gap between two)",
                "",
                f"{_num(result['polls_per_interval'], digits=3)} "
                f"({_num(_ms(result['shortest_poll_gap_s']), ' ms', 0)})",
                f"{result['polls']} polls, {result['upstream_requests']} upstream requests",
            ),
            (
                "4 fan-out",
                "RSS per subscriber",
                "",
                _num(result["rss_per_subscriber_kb"], " KB", 0),
                f"deliveries {result['deliveries']:,} of {result['deliveries_expected']:,}",
            ),
        ]
    if "browser" in scenarios and "backfill" in scenarios["browser"]:
        browser = scenarios["browser"]
        summary = browser["backfill"]["summary"]
        base, aria = summary["baseline"], summary["aria"]
        live = browser["live"]
        rows += [
            (
                "5 browser",
                "time to first row",
                _spread(base["first_row_ms"], " ms", 0),
                _spread(aria["first_row_ms"], " ms", 0),
                "speedup " + _spread(summary["first_row_speedup"], "x", 1),
            ),
            (
                "5 browser",
                "longest long task",
                _spread(base["longest_long_task_ms"], " ms", 0),
                _spread(aria["longest_long_task_ms"], " ms", 0),
                "",
            ),
            (
                "5 browser",
                f"live {live['rows_produced']:,} rows at {live['rows_per_second']:,.0f}/s",
                "not run (see notes)",
                f"first row {_num(live['first_row_after_production_ms'], ' ms', 0)}, "
                f"longest task {_num(live['longest_long_task_ms'], ' ms', 0)}",
                f"{live['rows_received']:,} rows received, {live['rows_skipped_by_server']:,} "
                f"reported skipped, {live['long_tasks']} long tasks",
            ),
        ]
    return rows


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


# Unit at the end of a target -> (factor from the measured value, suffix to show).
_TARGET_UNITS = {" ms": (1000.0, " ms"), " %": (100.0, " %"), " MB": (1.0, " MB"), "x": (1.0, "x")}


def _measured(value: float | None, target: str) -> str:
    """Format a measured value in the unit its target is written in (seconds as ms, shares as %)."""
    if value is None:
        return "n/a"
    for suffix, (factor, unit) in _TARGET_UNITS.items():
        if target.endswith(suffix):
            return f"{value * factor:.4g}{unit}"
    return f"{value:.4g}"


def target_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for name, scenario in results["scenarios"].items():
        if "error" in scenario:
            rows.append((name, "scenario failed", "", "", scenario["error"].splitlines()[-1]))
            continue
        if "skipped" in scenario:
            rows.append((name, "scenario skipped", "", "", scenario["skipped"]))
            continue
        for target in scenario.get("targets", []):
            measured = _measured(target["value"], target["target"])
            holds = "yes" if target["holds"] else "NO"
            rows.append((name, target["name"], target["target"], measured, holds))
    return rows


def format_table(headers: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    """Format rows as a plain-text table with aligned columns."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * width for width in widths))
    for row in rows:
        lines.append(
            "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
        )
    return "\n".join(lines)


def markdown_table(headers: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        lines.append("| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |")
    return "\n".join(lines)


RESULT_HEADERS = ("scenario", "measure", "baseline", "aria_stream", "comparison")
TARGET_HEADERS = ("scenario", "target", "required", "measured", "holds")


def text_report(results: dict[str, Any]) -> str:
    return (
        format_table(RESULT_HEADERS, table_rows(results))
        + "\n\n"
        + format_table(TARGET_HEADERS, target_rows(results))
    )


def markdown_report(results: dict[str, Any]) -> str:
    """Return the benchmark page: how it was measured, on what, the results and the notes."""
    machine = results["machine"]
    load = results["load"]
    packages = ", ".join(f"{name} {version}" for name, version in machine["packages"].items())
    parts = [
        "# Benchmarks",
        "",
        f"Written by `{results['command']}` on {results['finished_at']} "
        f"in {results['duration_s']:.0f} s. The raw numbers of every repetition are in "
        "`bench/results.json`. Medians are followed by the range (minimum–maximum) of the "
        "repetitions in brackets.",
        "",
        "## Machine",
        "",
        f"- CPU: {machine['cpu_model']}, {machine['cpus_usable']} usable cores; memory "
        f"{machine['memory_gib']} GiB; Linux {machine['kernel']}; Python {machine['python']}.",
        f"- Packages: {packages}; browser: {machine['chromium'] or 'none'}.",
        f"- Load average at the start {load['load_average_start']} and at the end "
        f"{load['load_average_end']}. The CPUs were busy {100 * (load['cpu_busy_share'] or 0):.0f}"
        f" % of the run; this run used {load['cpu_seconds_this_run']} CPU seconds and other "
        f"processes up to {load['cpu_seconds_other_processes']} CPU seconds. {_shared(results)}",
        "",
        "## Results",
        "",
        markdown_table(RESULT_HEADERS, table_rows(results)),
        "",
        "## Targets",
        "",
        markdown_table(TARGET_HEADERS, target_rows(results)),
        "",
    ]
    profile = (
        results["scenarios"]
        .get("pipeline", {})
        .get("documents", {})
        .get("v2 page", {})
        .get("profile")
    )
    if profile:
        parts += [
            "## Profile of the pipeline (v2 page)",
            "",
            "Self time of the functions that cost the most, sampled by pyinstrument over five "
            "backfills of the v2 document of scenario 3.",
            "",
            markdown_table(
                ("function", "where", "share of time"),
                [
                    (row["function"], row["where"], f"{100 * row['self_share']:.1f} %")
                    for row in profile
                ],
            ),
            "",
        ]
    parts += [_config_section(results), NOTES.read_text(encoding="utf-8")]
    return "\n".join(parts)


def _shared(results: dict[str, Any]) -> str:
    """Say whether other processes used a noticeable share of the CPUs during the run."""
    load = results["load"]
    capacity = results["duration_s"] * results["machine"]["cpus_usable"]
    if capacity and load["cpu_seconds_other_processes"] > SHARED_CPU_SHARE * capacity:
        return (
            "The run shared the machine with other work, so its timings are noisier than on "
            "an idle machine."
        )
    return "No other work used a noticeable share of the CPUs."


def _config_section(results: dict[str, Any]) -> str:
    lines = ["## Configuration of this run", ""]
    for name, scenario in results["scenarios"].items():
        config = scenario.get("config")
        if config:
            knobs = ", ".join(f"{key}={value}" for key, value in config.items())
            lines.append(f"- {name}: {knobs}")
    lines.append("")
    return "\n".join(lines)
