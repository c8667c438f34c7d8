"""``aria-stream tail``: the TailClient class in a thread and the command as a subprocess, both
reading an aria_stream server over loopback HTTP."""

from __future__ import annotations

import asyncio
import io
import json
import os
import pty
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from aria_stream.simulator import Fault, Simulator
from aria_stream.tailclient import TailClient, format_row
from tests.conftest import ServerFactory
from tests.tail_support import (
    FAST_TAIL,
    WAIT,
    add_rows,
    ago,
    all_live,
    eventually,
    oldest_first,
    polls_pass,
    request_ids,
    tail_of,
)

ARIA_STREAM = Path(sys.executable).parent / "aria-stream"
# Pings every 0.2 s let a stopped TailClient notice its flag soon.
TAIL_SETTINGS = {**FAST_TAIL, "ping_interval": 0.2}


class Threaded:
    """A TailClient running in a thread, with its output in memory."""

    def __init__(self, client: TestClient, params: dict[str, str], **options: Any) -> None:
        self.out = io.StringIO()
        self.err = io.StringIO()
        self.gate = threading.Event()
        self.gate.set()
        url = str(client.server.make_url("/"))
        self.client = TailClient(
            url,
            params,
            as_json=options.pop("as_json", True),
            out=self.out,
            err=self.err,
            colour=options.pop("colour", False),
            token=options.pop("token", None),
            sleep=lambda seconds: self.gate.wait(WAIT),
        )
        self.task = asyncio.create_task(
            asyncio.to_thread(self.client.run, options.pop("max_reconnects", None))
        )

    def lines(self) -> list[str]:
        return self.out.getvalue().splitlines()

    def ids(self) -> list[str]:
        return [json.loads(line)["request_id"] for line in self.lines()]

    def errors(self) -> list[str]:
        return self.err.getvalue().splitlines()

    async def wait_lines(self, count: int) -> list[str]:
        await eventually(lambda: len(self.lines()) >= count, f"{count} lines were printed")
        return self.lines()

    async def stop(self) -> int:
        self.client.stopped = True
        self.gate.set()
        async with asyncio.timeout(WAIT):
            return await self.task


def drop_streams(client: TestClient) -> None:
    """End every open stream from the server's side, as a broken connection would."""
    for subscriber in list(tail_of(client).subscribers):
        subscriber.close()


# Formatting.

SUCCESS_ROW = {
    "request_id": "chatcmpl-1",
    "start_time": "2026-12-04T20:00:01.000Z",
    "status": "success",
    "model": "openai/gpt-4o",
    "model_group": "gpt-4o",
    "total_tokens": 1234,
    "spend": 0.0125,
    "duration_ms": 812,
    "error_code": None,
    "error_class": None,
}
FAILURE_ROW = {
    **SUCCESS_ROW,
    "status": "failure",
    "model_group": "free-llama",
    "total_tokens": 0,
    "spend": 0.0,
    "error_code": "429",
    "error_class": "RateLimitError",
}


def test_format_row_columns_without_colour():
    line = format_row(FAILURE_ROW, colour=False)

    assert line.endswith(
        "  failure free-llama                         0   $0.000000     812 ms  429 RateLimitError"
    )
    assert "\x1b[" not in line


def test_format_row_colours_status():
    success = format_row(SUCCESS_ROW, colour=True)
    failure = format_row(FAILURE_ROW, colour=True)

    assert "  \x1b[32msuccess\x1b[0m gpt-4o " in success
    assert "  \x1b[31mfailure\x1b[0m free-llama " in failure
    assert success.endswith("  1,234   $0.012500     812 ms  ")


# TailClient in a thread.


async def test_tailclient_prints_backfill_oldest_first(
    simulator: Simulator, server_factory: ServerFactory
):
    client = await server_factory(simulator, **TAIL_SETTINGS)
    tail = Threaded(client, {"limit": "10"})
    await tail.wait_lines(10)

    assert await tail.stop() == 0
    assert tail.ids() == list(reversed(request_ids(simulator.visible_rows()[:10])))
    assert tail.errors() == []


async def test_tailclient_reconnects_without_duplicates(
    simulator: Simulator, server_factory: ServerFactory
):
    client = await server_factory(simulator, **TAIL_SETTINGS)
    tail = Threaded(client, {"limit": "10"}, max_reconnects=1)
    await tail.wait_lines(10)
    await all_live(client, 1)
    before = add_rows(simulator, [ago(1.0), ago(1.1)])
    await tail.wait_lines(12)

    tail.gate.clear()
    drop_streams(client)
    await eventually(lambda: not tail_of(client).subscribers, "the stream ended")
    during = add_rows(simulator, [ago(0.5), ago(0.6), ago(0.7)])
    await polls_pass(client, 1)
    tail.gate.set()
    await tail.wait_lines(15)
    await polls_pass(client, 2)

    assert await tail.stop() == 0
    expected = list(reversed(request_ids(simulator.visible_rows()[5:15])))
    assert tail.ids() == expected + oldest_first(before) + oldest_first(during)


async def test_tailclient_reset_prints_no_row_twice(
    simulator: Simulator, server_factory: ServerFactory
):
    """After a reset the client cleared the request ids it had printed, so the fresh backfill
    printed every row again, newest first."""
    client = await server_factory(simulator, **TAIL_SETTINGS)
    tail = Threaded(client, {"limit": "10"}, max_reconnects=1)
    await tail.wait_lines(10)
    await all_live(client, 1)

    tail.gate.clear()
    drop_streams(client)
    await eventually(lambda: not tail_of(client).subscribers, "the stream ended")
    tail.client.last_event_id = "not-an-event-id"
    newer = add_rows(simulator, [ago(0.5), ago(0.6)])
    tail.gate.set()
    await tail.wait_lines(12)
    await polls_pass(client, 2)

    assert await tail.stop() == 0
    first = list(reversed(request_ids(simulator.visible_rows()[2:12])))
    assert tail.ids() == first + oldest_first(newer)
    assert tail.errors() == [
        "aria-stream tail: the server could not resume from the last row; starting over"
    ]


async def test_tailclient_upstream_errors_on_stderr(
    simulator: Simulator, server_factory: ServerFactory
):
    client = await server_factory(simulator, **TAIL_SETTINGS)
    tail = Threaded(client, {"limit": "5"})
    await tail.wait_lines(5)
    await all_live(client, 1)

    simulator.fault = Fault("server_error")
    await eventually(lambda: len(tail.errors()) >= 1, "an error was printed")
    simulator.fault = None
    await eventually(lambda: len(tail.errors()) >= 2, "the recovery was printed")

    assert await tail.stop() == 0
    error, recovery = tail.errors()
    assert error.startswith(
        f"aria-stream tail: LiteLLM error (server_error): LiteLLM at {simulator.url} failed "
        "with 500 (/spend/logs Error(Database not connected."
    )
    assert "; retrying in 0." in error
    assert recovery == "aria-stream tail: LiteLLM answers again"
    assert len(tail.lines()) == 5


async def test_tailclient_gives_up_after_max_reconnects(
    simulator: Simulator, server_factory: ServerFactory
):
    client = await server_factory(simulator, **TAIL_SETTINGS)
    url = str(client.server.make_url("/"))
    await client.close()
    out, err = io.StringIO(), io.StringIO()
    tail = TailClient(
        url, {}, as_json=True, out=out, err=err, colour=False, sleep=lambda seconds: None
    )

    status = await asyncio.to_thread(tail.run, 2)

    assert status == 1
    assert out.getvalue() == ""
    assert (
        err.getvalue().splitlines()
        == [
            f"aria-stream tail: connection to {url}api/spend/stream lost (ConnectError); "
            "reconnecting"
        ]
        * 3
    )


async def test_tailclient_invalid_parameter_exits_2(
    simulator: Simulator, server_factory: ServerFactory
):
    """A 400 response crashed the client with httpx.StreamClosed, because it read the error body
    only after the response had been closed."""
    client = await server_factory(simulator, **TAIL_SETTINGS)
    tail = Threaded(client, {"status": "sometimes"})

    async with asyncio.timeout(WAIT):
        status = await tail.task

    assert status == 2
    assert tail.errors() == [
        "aria-stream tail: server answered 400: status must be one of: success, failure, got "
        "'sometimes'"
    ]


TOKEN = "viewer-token-for-tests-0123456789"


async def test_tailclient_sends_auth_token(simulator: Simulator, server_factory: ServerFactory):
    client = await server_factory(simulator, **TAIL_SETTINGS, auth_token=TOKEN)
    tail = Threaded(client, {"limit": "5"}, token=TOKEN)
    await tail.wait_lines(5)

    assert await tail.stop() == 0
    assert tail.ids() == list(reversed(request_ids(simulator.visible_rows()[:5])))


async def test_tailclient_without_token_exits_2(
    simulator: Simulator, server_factory: ServerFactory
):
    client = await server_factory(simulator, **TAIL_SETTINGS, auth_token=TOKEN)
    tail = Threaded(client, {"limit": "5"})

    async with asyncio.timeout(WAIT):
        status = await tail.task

    assert status == 2
    assert tail.errors() == [
        "aria-stream tail: server answered 401: sign in first: send the aria_session cookie or "
        "a bearer token"
    ]


# The command as a subprocess.


def tail_env() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("ARIA_")}
    env.pop("NO_COLOR", None)
    return env


async def read_lines(stream: asyncio.StreamReader, count: int) -> list[str]:
    async with asyncio.timeout(WAIT):
        return [(await stream.readline()).decode() for _ in range(count)]


async def test_tail_command_sigint_exits_0(simulator: Simulator, server_factory: ServerFactory):
    client = await server_factory(simulator, **TAIL_SETTINGS)
    url = str(client.server.make_url("/"))
    process = await asyncio.create_subprocess_exec(
        str(ARIA_STREAM),
        "tail",
        url,
        "--json",
        "--limit",
        "5",
        "--status",
        "failure",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=tail_env(),
    )
    try:
        assert process.stdout is not None
        lines = await read_lines(process.stdout, 5)
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(WAIT):
            status = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    failures = [row for row in simulator.visible_rows() if row.failed][:5]
    assert status == 0
    assert [json.loads(line)["request_id"] for line in lines] == list(
        reversed(request_ids(failures))
    )


async def test_tail_command_into_head_exits(simulator: Simulator, server_factory: ServerFactory):
    """``aria-stream tail --json | head -n 3`` hung once head had exited: on a quiet stream
    nothing more was written, so the closed pipe went unnoticed."""
    client = await server_factory(simulator, **FAST_TAIL)
    url = str(client.server.make_url("/"))
    command = f"'{ARIA_STREAM}' tail '{url}' --json | head -n 3"
    process = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", command, stdout=asyncio.subprocess.PIPE, env=tail_env()
    )
    try:
        async with asyncio.timeout(WAIT):
            output, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    lines = output.decode().splitlines()
    assert process.returncode == 0
    assert len(lines) == 3
    assert [json.loads(line)["request_id"] for line in lines] == list(
        reversed(request_ids(simulator.visible_rows()[:20])[-3:])
    )


async def test_tail_command_colours_on_terminal(
    simulator: Simulator, server_factory: ServerFactory
):
    client = await server_factory(simulator, **TAIL_SETTINGS)
    url = str(client.server.make_url("/"))
    controller, terminal = pty.openpty()
    process = await asyncio.create_subprocess_exec(
        str(ARIA_STREAM),
        "tail",
        url,
        "--limit",
        "40",
        stdout=terminal,
        stderr=asyncio.subprocess.DEVNULL,
        env=tail_env(),
    )
    os.close(terminal)
    output = b""
    try:
        async with asyncio.timeout(WAIT):
            while output.count(b"\n") < 40:
                output += await asyncio.to_thread(os.read, controller, 65536)
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(WAIT):
            status = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        os.close(controller)

    rows = simulator.visible_rows()[:40]
    text = output.decode()
    assert status == 0
    assert text.count("\x1b[32msuccess\x1b[0m") == sum(1 for row in rows if not row.failed)
    assert text.count("\x1b[31mfailure\x1b[0m") == sum(1 for row in rows if row.failed)
