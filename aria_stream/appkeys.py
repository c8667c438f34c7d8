"""Typed keys of the aiohttp application's state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from aria_stream.settings import Settings

if TYPE_CHECKING:
    from aria_stream.metrics import Metrics
    from aria_stream.source import SpendSource
    from aria_stream.tail import TailService

settings_key = web.AppKey("settings", Settings)
source_key: web.AppKey[SpendSource] = web.AppKey("source")
simulator_key: web.AppKey[Any] = web.AppKey("simulator")
request_id_key = web.RequestKey("request_id", str)
metrics_key: web.AppKey[Metrics] = web.AppKey("metrics")
tail_key: web.AppKey[TailService] = web.AppKey("tail")
