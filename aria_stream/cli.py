"""Command line: ``aria-stream serve`` (the default) and ``aria-stream simulate``."""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import logging
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from aria_stream import __version__
from aria_stream.filesource import FileSource, FileSourceError
from aria_stream.redact import install_log_filter
from aria_stream.settings import Settings
from aria_stream.simulator import DEFAULT_KEY, FAULT_KINDS, Fault, Simulator, SimulatorConfig

logger = logging.getLogger(__name__)

# Errors of binding the server's socket: the port is taken, the address is not local, or the
# port needs privileges.
BIND_ERRORS = {errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES}

# The key and the viewer token are read from the environment only, so they never show in the
# process list.
SECRET_SETTINGS = {"litellm_key", "auth_token"}


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting, with the setting's description as its help text."""
    for name, field in Settings.model_fields.items():
        if name in SECRET_SETTINGS:
            continue
        flag = "--" + name.replace("_", "-")
        env = f"ARIA_{name.upper()}"
        help_text = f"{field.description} (env {env}; default {field.default!r})"
        annotation = field.annotation
        if annotation is bool:
            parser.add_argument(
                flag, dest=name, action="store_const", const=True, default=None, help=help_text
            )
            continue
        kind: Any = str
        if annotation in (int, int | None):
            kind = int
        elif annotation in (float, float | None):
            kind = float
        elif annotation in (Path, Path | None):
            kind = Path
        parser.add_argument(flag, dest=name, type=kind, default=None, help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aria-stream",
        description="Live viewer for LiteLLM spend logs, streamed as Server-Sent Events.",
    )
    parser.add_argument("--version", action="version", version=f"aria-stream {__version__}")
    commands = parser.add_subparsers(dest="command")

    serve = commands.add_parser(
        "serve",
        help="Serve the viewer and the API (the default command).",
        description="Serve the viewer and the API. Without ARIA_LITELLM_URL it starts the "
        "embedded LiteLLM simulator (demo mode). The LiteLLM key is read from "
        "ARIA_LITELLM_KEY only.",
    )
    add_settings_flags(serve)

    tail = commands.add_parser(
        "tail",
        help="Print the rows of a running aria_stream server in the terminal.",
        description="Connect to a running server's stream and print rows as they arrive; "
        "reconnects with the last event id after a drop. Ctrl+C exits with 0.",
    )
    tail.add_argument("url", nargs="?", default="http://127.0.0.1:8765", help="Server base URL.")
    tail.add_argument(
        "--json", action="store_true", help="Print one JSON object per row, without colour."
    )
    tail.add_argument("--model", help="Only rows of this model.")
    tail.add_argument("--model-group", help="Only rows of this model group.")
    tail.add_argument(
        "--status", choices=["success", "failure"], help="Only rows with this status."
    )
    tail.add_argument("--error-code", help="Only failures with this HTTP status, such as 429.")
    tail.add_argument("--since", help="Only rows that started at or after this ISO 8601 time.")
    tail.add_argument(
        "--limit", type=int, default=20, help="Recent rows printed before new ones (default 20)."
    )

    simulate = commands.add_parser(
        "simulate",
        help="Run the LiteLLM simulator alone.",
        description="Serve LiteLLM's spend-log endpoints over generated rows, for development "
        "and tests.",
    )
    defaults = SimulatorConfig()
    simulate.add_argument(
        "--host", default="127.0.0.1", help="Address to bind (default 127.0.0.1)."
    )
    simulate.add_argument("--port", type=int, default=4000, help="TCP port (default 4000).")
    simulate.add_argument("--rows", type=int, default=defaults.rows, help="Rows at start.")
    simulate.add_argument(
        "--seed", type=int, default=defaults.seed, help="Random seed of the data."
    )
    simulate.add_argument(
        "--master-key", default=DEFAULT_KEY, help=f"Key clients must send (default {DEFAULT_KEY})."
    )
    simulate.add_argument(
        "--variant",
        choices=["v2", "ui", "legacy", "v1.88"],
        default=defaults.variant,
        help="LiteLLM version to emulate: v2 (1.80+), ui (no v2 route), legacy (only "
        "/spend/logs), v1.88 (metadata as a JSON string).",
    )
    simulate.add_argument(
        "--max-page-size",
        type=int,
        default=defaults.max_page_size,
        help="Largest page_size accepted; 100 emulates proxies before mid 2026.",
    )
    simulate.add_argument(
        "--rows-per-second", type=float, default=0.0, help="New rows produced per second."
    )
    simulate.add_argument(
        "--flush-interval",
        type=float,
        default=defaults.flush_interval,
        help="Seconds between batch writes of new rows, as LiteLLM's spend-log writer does.",
    )
    simulate.add_argument(
        "--bandwidth",
        type=float,
        default=None,
        help="Bandwidth in bytes/s of the link that all responses share.",
    )
    simulate.add_argument(
        "--latency-base", type=float, default=0.0, help="Seconds before the first byte of a page."
    )
    simulate.add_argument(
        "--latency-per-row",
        type=float,
        default=0.0,
        help="Extra seconds before the first byte, per row in the page.",
    )
    simulate.add_argument(
        "--prompt-bytes",
        type=int,
        default=0,
        help="Bytes of stored prompt and response per legacy row (0 = prompt storage off).",
    )
    simulate.add_argument(
        "--fault",
        choices=FAULT_KINDS,
        default=None,
        help="Fault applied to every spend-log request.",
    )
    return parser


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    install_log_filter(logging.getLogger().handlers)
    # httpx logs every request at INFO, which would flood the log while polling.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def run_serve(args: argparse.Namespace) -> int:
    overrides = {
        name: getattr(args, name, None)
        for name in Settings.model_fields
        if name not in SECRET_SETTINGS
    }
    try:
        settings = Settings.load(overrides)
    except ValidationError as error:
        for problem in error.errors():
            print(f"aria-stream: {_describe_problem(problem)}", file=sys.stderr)
        return 2
    if settings.from_file is not None:
        try:
            FileSource(settings.from_file).check()
        except FileSourceError as error:
            print(
                f"aria-stream: invalid setting from_file (--from-file or ARIA_FROM_FILE): {error}",
                file=sys.stderr,
            )
            return 2
    from aria_stream.security import public_bind_problem

    bind_problem = public_bind_problem(settings)
    if bind_problem is not None:
        print(f"aria-stream: {bind_problem}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    from aria_stream.app import create_app

    app = create_app(settings)
    # The modules and the app live as long as the process, so full garbage collections can
    # leave them out and pause the server for less.
    gc.freeze()
    url = f"http://{settings.host}:{settings.port}/"

    def announce(*_: Any) -> None:
        # run_app calls this once the port is bound, so the URL is printed when it works.
        print(f"aria_stream viewer: {url}", flush=True)

    try:
        web.run_app(
            app,
            host=settings.host,
            port=settings.port,
            handler_cancellation=True,
            shutdown_timeout=1.0,
            print=announce,
            access_log=None,
        )
    except OSError as error:
        if error.errno not in BIND_ERRORS:
            raise
        print(
            f"aria-stream: cannot listen on {settings.host}:{settings.port}: {error.strerror}; "
            "choose another --port or --host.",
            file=sys.stderr,
        )
        return 1
    return 0


def _describe_problem(problem: Mapping[str, Any]) -> str:
    """Describe one invalid setting in one line: its flag, its variable, the rule and the value."""
    name = ".".join(str(part) for part in problem["loc"])
    where = f"--{name.replace('_', '-')} or ARIA_{name.upper()}"
    message = str(problem["msg"]).removeprefix("Value error, ")
    # The validators of Settings already name the value in their messages.
    if problem["type"] != "value_error":
        message = f"{message}, got {problem['input']!r}"
    return f"invalid setting {name} ({where}): {message}"


def run_simulate(args: argparse.Namespace) -> int:
    configure_logging("INFO")
    config = SimulatorConfig(
        rows=args.rows,
        seed=args.seed,
        master_key=args.master_key,
        variant=args.variant,
        max_page_size=args.max_page_size,
        rows_per_second=args.rows_per_second,
        flush_interval=args.flush_interval,
        bandwidth=args.bandwidth,
        latency_base=args.latency_base,
        latency_per_row=args.latency_per_row,
        prompt_bytes=args.prompt_bytes,
        fault=Fault(args.fault) if args.fault else None,
    )
    asyncio.run(_simulate(config, args.host, args.port))
    return 0


async def _simulate(config: SimulatorConfig, host: str, port: int) -> None:
    simulator = Simulator(config)
    url = await simulator.start(host, port)
    print(f"LiteLLM simulator: {url} (master key {config.master_key})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await simulator.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or (
        arguments[0].startswith("-") and arguments[0] not in ("-h", "--help", "--version")
    ):
        arguments.insert(0, "serve")
    args = build_parser().parse_args(arguments)
    if args.command == "simulate":
        return run_simulate(args)
    if args.command == "tail":
        return run_tail_command(args)
    return run_serve(args)


def run_tail_command(args: argparse.Namespace) -> int:
    from aria_stream.tailclient import run_tail

    params = {
        "limit": str(args.limit),
        "model": args.model,
        "model_group": args.model_group,
        "status": args.status,
        "error_code": args.error_code,
        "since": args.since,
    }
    query = {key: value for key, value in params.items() if value}
    return run_tail(args.url, query, as_json=args.json)
