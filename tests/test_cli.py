"""The ``aria-stream`` command, run as a subprocess on loopback ports."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from aria_stream import __version__
from aria_stream.cli import SECRET_SETTINGS, main
from aria_stream.settings import Settings
from aria_stream.simulator import DEFAULT_KEY
from tests.conftest import FIXTURES
from tests.sse import Event, parse_events, rows_of

ARIA_STREAM = Path(sys.executable).parent / "aria-stream"
# Bounds on waits for a child process, so a child that hangs fails its test.
START_TIMEOUT = 20.0
EXIT_TIMEOUT = 5.0


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ARIA_STREAM), *args],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        env={**os.environ, **(env or {})},
        check=False,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def one_line(text: str) -> str:
    return " ".join(text.split())


class Child:
    """A running ``aria-stream`` process with its stdout and stderr piped to the test."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def read_line(self) -> str:
        assert self.process.stdout is not None
        async with asyncio.timeout(START_TIMEOUT):
            line = await self.process.stdout.readline()
        return line.decode()

    async def interrupt(self) -> int:
        """Send SIGINT and return the exit status."""
        self.process.send_signal(signal.SIGINT)
        async with asyncio.timeout(EXIT_TIMEOUT):
            return await self.process.wait()

    async def stderr_text(self) -> str:
        assert self.process.stderr is not None
        async with asyncio.timeout(EXIT_TIMEOUT):
            return (await self.process.stderr.read()).decode()


@pytest.fixture
async def start_child() -> AsyncIterator:
    """Start ``aria-stream`` subprocesses; any still running after the test is killed."""
    children: list[Child] = []

    async def start(*args: str) -> Child:
        process = await asyncio.create_subprocess_exec(
            str(ARIA_STREAM),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(os.environ),
        )
        child = Child(process)
        children.append(child)
        return child

    yield start
    for child in children:
        if child.process.returncode is None:
            child.process.kill()
            await child.process.wait()


def through_done(events: list[Event]) -> list[Event]:
    """Return the events up to and including the first ``done``; live events may follow it."""
    names = [event.event for event in events]
    assert "done" in names
    return events[: names.index("done") + 1]


async def read_stream(response: aiohttp.ClientResponse, until: str) -> list[Event]:
    """Read a stream until an event called ``until`` is complete; return every event so far."""
    text = ""
    async with asyncio.timeout(START_TIMEOUT):
        while True:
            events = parse_events(text)
            if any(event.event == until for event in events):
                return events
            chunk = await response.content.readany()
            assert chunk, f"the stream ended before an {until!r} event"
            text += chunk.decode()


# Help, version and invalid settings.


def test_cli_help_lists_commands():
    result = run_cli("--help")

    assert result.returncode == 0
    assert "serve" in result.stdout
    assert "simulate" in result.stdout
    assert "Run the LiteLLM simulator alone." in result.stdout


@pytest.fixture(scope="module")
def serve_help() -> str:
    """The output of ``aria-stream serve --help``, with line wrapping undone."""
    result = run_cli("serve", "--help")
    assert result.returncode == 0
    return one_line(result.stdout)


@pytest.mark.parametrize(
    "name", [name for name in Settings.model_fields if name not in SECRET_SETTINGS]
)
def test_cli_serve_help_describes_setting(serve_help: str, name: str):
    description = Settings.model_fields[name].description
    assert description is not None

    assert f"--{name.replace('_', '-')} " in serve_help
    assert one_line(description) in serve_help
    assert f"env ARIA_{name.upper()}" in serve_help


def test_cli_serve_help_has_no_key_flag(serve_help: str):
    assert "--litellm-key" not in serve_help
    assert "ARIA_LITELLM_KEY" in serve_help


def test_cli_key_flag_is_rejected():
    result = run_cli("serve", "--litellm-key", "sk-on-the-command-line")

    assert result.returncode == 2
    assert "unrecognized arguments: --litellm-key sk-on-the-command-line" in result.stderr


def test_cli_module_prints_version():
    result = subprocess.run(
        [sys.executable, "-m", "aria_stream", "--version"],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        check=False,
    )

    assert result.returncode == 0
    assert result.stdout == f"aria-stream {__version__}\n"


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        pytest.param(
            ["serve", "--port", "70000"],
            {},
            "aria-stream: invalid setting port (--port or ARIA_PORT): Input should be less "
            "than or equal to 65535, got 70000",
            id="port-flag",
        ),
        pytest.param(
            [],
            {"ARIA_PORT": "70000"},
            "aria-stream: invalid setting port (--port or ARIA_PORT): Input should be less "
            "than or equal to 65535, got '70000'",
            id="port-env",
        ),
        pytest.param(
            ["serve"],
            {"ARIA_LITELLM_URL": "ftp://x"},
            "aria-stream: invalid setting litellm_url (--litellm-url or ARIA_LITELLM_URL): must "
            "start with http:// or https://, got 'ftp://x'",
            id="url-scheme",
        ),
        pytest.param(
            ["--log-level", "loud"],
            {},
            "aria-stream: invalid setting log_level (--log-level or ARIA_LOG_LEVEL): must be "
            "DEBUG, INFO, WARNING or ERROR, got 'loud'",
            id="log-level",
        ),
        pytest.param(
            ["serve", "--from-file", "/nonexistent/spend.json"],
            {},
            "aria-stream: invalid setting from_file (--from-file or ARIA_FROM_FILE): spend-log "
            "file '/nonexistent/spend.json' does not exist",
            id="from-file-missing",
        ),
    ],
)
def test_cli_invalid_setting_returns_2(
    args: list[str],
    env: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    status = main(args)

    captured = capsys.readouterr()
    assert status == 2
    assert captured.err == message + "\n"
    assert captured.out == ""


def test_cli_invalid_setting_exits_2():
    result = run_cli("serve", "--port", "70000")

    assert result.returncode == 2
    assert result.stderr == (
        "aria-stream: invalid setting port (--port or ARIA_PORT): Input should be less than or "
        "equal to 65535, got 70000\n"
    )


def test_cli_port_in_use_exits_1():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--port", str(port), "--log-level", "ERROR")

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"aria-stream: cannot listen on 127.0.0.1:{port}: ")
    assert "address already in use" in result.stderr


# Running servers.


async def test_cli_serve_demo_streams_backfill(start_child):
    port = free_port()
    child = await start_child("serve", "--port", str(port))

    assert await child.read_line() == f"aria_stream viewer: http://127.0.0.1:{port}/\n"
    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{port}/api/spend/stream"
        async with session.get(url, params={"limit": "500"}) as response:
            events = through_done(await read_stream(response, "done"))

    # The demo simulator adds rows every second, so live entries can follow done.
    names = [event.event for event in events]
    assert names[0] == "meta"
    assert events[0].json()["source"] == "simulator"
    assert events[0].json()["live"] is True
    assert "entries" in names
    assert "progress" in names
    assert names.count("done") == 1
    assert events[-1].json()["sent"] == 500
    ids = [row["request_id"] for row in rows_of(events)]
    assert len(ids) == 500
    assert len(set(ids)) == 500
    assert await child.interrupt() == 0
    assert "Demo mode: ARIA_LITELLM_URL is not set" in await child.stderr_text()


async def test_cli_serve_sigint_ends_open_stream(start_child):
    port = free_port()
    child = await start_child("serve", "--port", str(port))
    await child.read_line()

    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{port}/api/spend/stream"
        async with session.get(url, params={"limit": "5"}) as response:
            await read_stream(response, "done")
            status = await child.interrupt()
            events = await read_stream(response, "shutdown")

    assert status == 0
    assert events[-1].json() == {"reason": "server shutting down"}


async def test_cli_serve_from_file_streams_rows(start_child, tmp_path: Path):
    row = json.loads((FIXTURES / "spend_logs.success_row.json").read_text())
    rows = [{**row, "request_id": f"cli-row-{index}"} for index in range(12)]
    path = tmp_path / "dump.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in rows))
    port = free_port()
    child = await start_child("serve", "--port", str(port), "--from-file", str(path))

    assert await child.read_line() == f"aria_stream viewer: http://127.0.0.1:{port}/\n"
    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{port}/api/spend/stream"
        async with session.get(url) as response:
            events = through_done(await read_stream(response, "done"))

    assert events[0].json()["source"] == "file"
    assert [item["request_id"] for item in rows_of(events)] == [
        f"cli-row-{index}" for index in range(12)
    ]
    assert await child.interrupt() == 0


async def test_cli_simulate_serves_spend_logs(start_child):
    port = free_port()
    child = await start_child("simulate", "--port", str(port), "--rows", "40")

    line = await child.read_line()
    assert line == f"LiteLLM simulator: http://127.0.0.1:{port} (master key {DEFAULT_KEY})\n"
    params = {
        "start_date": "2000-01-01 00:00:00",
        "end_date": "2100-01-01 00:00:00",
        "page": "1",
        "page_size": "10",
    }
    url = f"http://127.0.0.1:{port}/spend/logs/v2"
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bearer {DEFAULT_KEY}"}
        async with session.get(url, params=params, headers=headers) as response:
            assert response.status == 200
            body = await response.json()
        async with session.get(url, params=params) as response:
            unauthorized = response.status

    assert len(body["data"]) == 10
    assert body["total"] == 40
    assert unauthorized == 401
    assert await child.interrupt() == 0
