"""Facts about the machine and the load on it, read at the start and the end of a run."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from typing import Any

PACKAGES = ("aiohttp", "aiohttp-sse", "httpx", "orjson", "pydantic", "playwright")


def cpu_busy_jiffies() -> tuple[int, int]:
    """Return ``(busy, total)`` CPU time of the whole machine from ``/proc/stat``, in jiffies."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    total = sum(fields[:8])
    return total - idle, total


def own_cpu_seconds() -> float:
    """Return the CPU time of this process and of its children that have exited."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def facts() -> dict[str, Any]:
    """Return the machine's CPU, memory, OS and the versions that the numbers depend on."""
    cpu_model = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    memory_kb = 0
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                memory_kb = int(line.split()[1])
                break
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu_model": cpu_model,
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory_gib": round(memory_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "packages": versions,
        "chromium": chromium_version(),
    }


def chromium_version() -> str | None:
    try:
        output = subprocess.run(
            ["/usr/bin/chromium", "--version"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return output.stdout.strip() or None


class LoadMeter:
    """Measures how busy the machine was during a run, and how much of that was this run."""

    def __init__(self) -> None:
        self.busy_start, self.total_start = cpu_busy_jiffies()
        self.own_start = own_cpu_seconds()
        self.load_start = os.getloadavg()

    def finish(self) -> dict[str, Any]:
        busy_end, total_end = cpu_busy_jiffies()
        ticks = os.sysconf("SC_CLK_TCK")
        busy = (busy_end - self.busy_start) / ticks
        wall_cpu = (total_end - self.total_start) / ticks
        own = own_cpu_seconds() - self.own_start
        return {
            "load_average_start": [round(value, 2) for value in self.load_start],
            "load_average_end": [round(value, 2) for value in os.getloadavg()],
            "cpu_busy_share": round(busy / wall_cpu, 3) if wall_cpu else None,
            # Processes that are still running (Chromium's helpers, a server that was killed)
            # are not in this process's children time, so this is an upper bound.
            "cpu_seconds_other_processes": round(max(0.0, busy - own), 1),
            "cpu_seconds_this_run": round(own, 1),
        }
