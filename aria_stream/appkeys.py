"""Typed keys of the aiohttp application's state."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp_sse import EventSourceResponse

from aria_stream.settings import Settings

if TYPE_CHECKING:
    from aria_stream.stream import SpendSource

settings_key = web.AppKey("settings", Settings)
source_key: web.AppKey[SpendSource] = web.AppKey("source")
streams_key: web.AppKey[weakref.WeakSet[EventSourceResponse]] = web.AppKey("streams")
simulator_key: web.AppKey[Any] = web.AppKey("simulator")
request_id_key = web.RequestKey("request_id", str)
