"""Server processes of a benchmark run and readings of their memory from ``/proc``.

The simulator, aria_stream and the baseline proxy each run in a process of their own on loopback
ports, so the resident set size of one is never polluted by another.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from aria_stream.simulator import DEFAULT_KEY

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
# A cold start on a busy 2-core machine can take several seconds (imports, first bind).
START_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0
RSS_SAMPLE_SECONDS = 0.01
_URL_LINE = re.compile(r"(http://127\.0\.0\.1:\d+)")


def free_port() -> int:
    """Return a loopback TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def read_status_kb(pid: int, field_name: str) -> int:
    """Return a ``/proc/<pid>/status`` field in KiB, such as ``VmRSS`` or ``VmHWM``."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise KeyError(f"{field_name} missing from /proc/{pid}/status")


def reset_peak_rss(pid: int) -> bool:
    """Reset a process's ``VmHWM`` to its current RSS; return False when the kernel refuses."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


@dataclass
class ServerProcess:
    """A server started by the benchmark: its process, base URL and log file."""

    name: str
    process: asyncio.subprocess.Process
    url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_kb(self) -> int:
        return read_status_kb(self.pid, "VmRSS")

    def peak_rss_kb(self) -> int:
        return read_status_kb(self.pid, "VmHWM")

    async def stop(self) -> None:
        """Stop the process with SIGINT, then SIGKILL if it does not exit in time."""
        if self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


@dataclass
class RssSampler:
    """Samples VmRSS of one process in the background and keeps the maximum.

    ``VmHWM`` is reset at the start when the kernel allows it, so ``peak_kb`` also catches
    peaks shorter than the sampling period.
    """

    pid: int
    start_kb: int = 0
    max_kb: int = 0
    hwm_reset: bool = False
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    def start(self) -> None:
        self.hwm_reset = reset_peak_rss(self.pid)
        self.start_kb = read_status_kb(self.pid, "VmRSS")
        self.max_kb = self.start_kb
        self._task = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            with contextlib.suppress(OSError, KeyError):
                self.max_kb = max(self.max_kb, read_status_kb(self.pid, "VmRSS"))
            await asyncio.sleep(RSS_SAMPLE_SECONDS)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(OSError, KeyError):
            self.max_kb = max(self.max_kb, read_status_kb(self.pid, "VmRSS"))
            if self.hwm_reset:
                self.max_kb = max(self.max_kb, read_status_kb(self.pid, "VmHWM"))

    @property
    def peak_mb(self) -> float:
        return self.max_kb / 1024

    @property
    def growth_mb(self) -> float:
        return (self.max_kb - self.start_kb) / 1024


class ProcessGroup:
    """Starts server processes and stops all of them, in reverse order, on exit."""

    def __init__(self) -> None:
        self.processes: list[ServerProcess] = []
        self.log_dir = Path(tempfile.mkdtemp(prefix="aria-bench-"))

    async def __aenter__(self) -> ProcessGroup:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for process in reversed(self.processes):
            await process.stop()

    async def simulator(self, **knobs: Any) -> ServerProcess:
        """Start ``aria-stream simulate`` with knobs named like ``SimulatorConfig`` fields."""
        args = ["-m", "aria_stream", "simulate", "--host", HOST, "--port", "0"]
        for name, value in knobs.items():
            if value is not None:
                args += ["--" + name.replace("_", "-"), str(value)]
        return await self._start("simulator", args, env={}, ready=_url_from_log)

    async def aria(self, upstream: ServerProcess, **settings: Any) -> ServerProcess:
        """Start ``aria-stream serve`` reading ``upstream``, with settings given as flags."""
        port = free_port()
        args = ["-m", "aria_stream", "serve", "--host", HOST, "--port", str(port)]
        settings.setdefault("log_level", "WARNING")
        for name, value in settings.items():
            args += ["--" + name.replace("_", "-"), str(value)]
        env = {"ARIA_LITELLM_URL": upstream.url, "ARIA_LITELLM_KEY": DEFAULT_KEY}
        url = f"http://{HOST}:{port}"
        return await self._start("aria_stream", args, env=env, ready=_health(url, "/healthz"))

    async def baseline(self, upstream: ServerProcess) -> ServerProcess:
        """Start the baseline proxy of ``bench.baseline`` in front of ``upstream``."""
        port = free_port()
        args = ["-m", "bench.baseline", "--upstream", upstream.url, "--port", str(port)]
        url = f"http://{HOST}:{port}"
        return await self._start("baseline", args, env={}, ready=_health(url, "/healthz"))

    async def _start(
        self, name: str, args: list[str], *, env: dict[str, str], ready: Any
    ) -> ServerProcess:
        log_path = self.log_dir / f"{name}-{len(self.processes)}.log"
        environ = {key: value for key, value in os.environ.items() if not key.startswith("ARIA_")}
        environ.update(env)
        with _open_log(log_path) as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable, *args, stdout=log, stderr=log, env=environ, cwd=REPO_ROOT
            )
        server = ServerProcess(name, process, "", log_path)
        self.processes.append(server)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.returncode is not None:
                break
            url = await ready(log_path)
            if url:
                server.url = url
                return server
            await asyncio.sleep(0.05)
        log_text = _read_log(log_path)[-2000:]
        raise RuntimeError(
            f"{name} did not start within {START_TIMEOUT:g} s; its log ends:\n{log_text}"
        )


def _open_log(path: Path) -> BinaryIO:
    return open(path, "wb")


def _read_log(path: Path) -> str:
    return path.read_text(errors="replace")


async def _url_from_log(log_path: Path) -> str | None:
    match = _URL_LINE.search(_read_log(log_path))
    return match.group(1) if match else None


def _health(url: str, path: str) -> Any:
    async def check(_: Path) -> str | None:
        try:
            async with httpx.AsyncClient(timeout=2.0) as client:
                response = await client.get(url + path)
        except httpx.HTTPError:
            return None
        return url if response.status_code == 200 else None

    return check
