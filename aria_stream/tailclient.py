"""``aria-stream tail``: print the rows of a running aria_stream server in a terminal.

It reads ``/api/spend/stream`` with httpx-sse, reconnects after a drop with the last event id
(so no row is printed twice or skipped), prints upstream errors to stderr and exits 0 on Ctrl+C.
A server with sign-in on gets ``ARIA_AUTH_TOKEN`` as a bearer token.
"""

from __future__ import annotations

import json
import os
import select
import signal
import stat
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any, TextIO

import httpx
from httpx_sse import ServerSentEvent, connect_sse

# Request ids remembered to drop a duplicate row; far more than one reconnect can repeat.
RECENT_IDS = 20_000
RECONNECT_MAX_DELAY = 15.0
# Maximum silence before the connection counts as dead and is opened again. It is four times
# the server's default ping_interval, so only a server set to ping less often is left too soon.
READ_TIMEOUT = 60.0
STATUS_COLOURS = {"success": "\x1b[32m", "failure": "\x1b[31m"}
RESET_COLOUR = "\x1b[0m"


def format_row(row: dict[str, Any], *, colour: bool) -> str:
    """Return one aligned line for a lite row."""
    started = row.get("start_time") or ""
    try:
        local = datetime.fromisoformat(started.replace("Z", "+00:00")).astimezone()
        when = local.strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        when = started[:19]
    status = str(row.get("status") or "")
    status_text = f"{status:<7}"
    if colour and status in STATUS_COLOURS:
        status_text = f"{STATUS_COLOURS[status]}{status_text}{RESET_COLOUR}"
    model = str(row.get("model_group") or row.get("model") or "-")[:28]
    tokens = f"{row.get('total_tokens') or 0:>7,}"
    spend = f"${row.get('spend') or 0:.6f}"
    duration = row.get("duration_ms")
    duration_text = "-" if duration is None else f"{duration:,} ms"
    error = " ".join(str(part) for part in (row.get("error_code"), row.get("error_class")) if part)
    return f"{when}  {status_text} {model:<28} {tokens} {spend:>11} {duration_text:>10}  {error}"


class TailClient:
    """A reconnecting reader of one aria_stream server's stream."""

    def __init__(
        self,
        base_url: str,
        params: dict[str, str],
        *,
        as_json: bool,
        out: TextIO,
        err: TextIO,
        colour: bool,
        token: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = base_url.rstrip("/") + "/api/spend/stream"
        self.params = params
        self.as_json = as_json
        self.out = out
        self.err = err
        self.colour = colour
        self.token = token
        self.sleep = sleep
        self.last_event_id: str | None = None
        self.recent: OrderedDict[str, None] = OrderedDict()
        self.stopped = False
        # The backfill arrives newest first; it is printed oldest first once complete, so the
        # terminal reads top to bottom in time order like ``tail -f``.
        self.backfill: list[dict[str, Any]] | None = []

    def run(self, max_reconnects: int | None = None) -> int:
        """Read until interrupted; return the exit status."""
        delay = 0.5
        attempts = 0
        while not self.stopped:
            try:
                self._read_once()
                delay = 0.5
                if self.stopped:
                    break
            except httpx.HTTPStatusError as error:
                status = error.response.status_code
                self._warn(f"server answered {status}: {_body(error.response)}")
                # A rejected parameter or token stays rejected, so trying again cannot help.
                if status in (400, 401, 403):
                    return 2
            except (httpx.TransportError, httpx.StreamError) as error:
                self._warn(f"connection to {self.url} lost ({type(error).__name__}); reconnecting")
            attempts += 1
            if max_reconnects is not None and attempts > max_reconnects:
                return 1
            self.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_DELAY)
        return 0

    def _read_once(self) -> None:
        headers = {"Accept": "text/event-stream"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        timeout = httpx.Timeout(10.0, read=READ_TIMEOUT)
        with httpx.Client(timeout=timeout) as client:
            with connect_sse(
                client, "GET", self.url, params=self.params, headers=headers
            ) as source:
                if source.response.is_error:
                    # The body holds the reason; it can no longer be read once this block ends.
                    source.response.read()
                    source.response.raise_for_status()
                for event in source.iter_sse():
                    if event.id:
                        self.last_event_id = event.id
                    self._handle(event)
                    if self.stopped:
                        return

    def _handle(self, event: ServerSentEvent) -> None:
        if event.event == "entries":
            rows = json.loads(event.data)
            if self.backfill is not None:
                self.backfill.extend(rows)
                return
            for row in rows:
                self._print_row(row)
            self.out.flush()
        elif event.event == "done":
            for row in reversed(self.backfill or []):
                self._print_row(row)
            self.backfill = None
            self.out.flush()
        elif event.event == "upstream_error":
            data = json.loads(event.data)
            retry = f"; retrying in {data['retry_in']} s" if data.get("retry_in") else ""
            self._warn(f"LiteLLM error ({data.get('kind')}): {data.get('message')}{retry}")
        elif event.event == "upstream_ok":
            self._warn("LiteLLM answers again")
        elif event.event == "lagged":
            data = json.loads(event.data)
            self._warn(f"too slow: {data.get('skipped')} rows were dropped by the server")
        elif event.event == "reset":
            # A fresh backfill follows: collect it to print it oldest first, and keep the
            # request ids already printed so its rows are not printed twice.
            self._warn("the server could not resume from the last row; starting over")
            self.backfill = []
        elif event.event == "shutdown":
            self._warn("the server is shutting down; reconnecting")

    def _print_row(self, row: dict[str, Any]) -> None:
        request_id = str(row.get("request_id"))
        if request_id in self.recent:
            return
        self.recent[request_id] = None
        if len(self.recent) > RECENT_IDS:
            self.recent.popitem(last=False)
        if self.as_json:
            self.out.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            self.out.write(format_row(row, colour=self.colour) + "\n")

    def _warn(self, message: str) -> None:
        self.err.write(f"aria-stream tail: {message}\n")
        self.err.flush()


def _body(response: httpx.Response) -> str:
    try:
        response.read()
        return str(response.json().get("message", response.text))
    except (ValueError, httpx.HTTPError):
        return response.reason_phrase


def run_tail(
    url: str,
    params: dict[str, str],
    *,
    as_json: bool,
) -> int:
    """Run the tail client on stdout and stderr.

    Ctrl+C ends it with 0. When the reader of stdout goes away (``| head``), it ends by
    SIGPIPE like other command-line tools.
    """
    colour = not as_json and sys.stdout.isatty() and "NO_COLOR" not in os.environ
    client = TailClient(
        url,
        params,
        as_json=as_json,
        out=sys.stdout,
        err=sys.stderr,
        colour=colour,
        token=os.environ.get("ARIA_AUTH_TOKEN") or None,
    )
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    _watch_stdout_pipe()
    try:
        return client.run()
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        return 0


def _watch_stdout_pipe() -> None:
    """End the process once the reader of a stdout pipe has closed it, even while idle.

    A write would raise SIGPIPE, but a quiet stream writes nothing for minutes, so a thread
    waits for the pipe's error condition instead.
    """
    try:
        fd = sys.stdout.fileno()
        is_pipe = stat.S_ISFIFO(os.fstat(fd).st_mode)
    except (OSError, ValueError):
        return
    if not is_pipe or not hasattr(select, "poll"):
        return

    def watch() -> None:
        poller = select.poll()
        # An empty event mask still reports POLLERR, which Linux sets on a pipe whose read
        # end is closed.
        poller.register(fd, 0)
        poller.poll()
        os.kill(os.getpid(), signal.SIGPIPE)

    threading.Thread(target=watch, name="stdout-pipe-watch", daemon=True).start()
