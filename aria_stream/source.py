"""The interface every spend-log source offers: a LiteLLM proxy, the simulator, or a file."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, Protocol

from aria_stream.errors import UpstreamError
from aria_stream.query import SpendQuery
from aria_stream.upstream import PageEvent


class SpendSource(Protocol):
    """Source of spend logs."""

    @property
    def kind(self) -> str:
        """``litellm``, ``simulator`` or ``file``."""

    @property
    def origin(self) -> str:
        """Host name of the proxy, or the file name."""

    @property
    def endpoint(self) -> str | None:
        """Endpoint variant in use: ``v2``, ``ui``, ``legacy``, ``file``, or None at first."""

    @property
    def last_success(self) -> float | None:
        """Monotonic time of the last complete response."""

    @property
    def last_error(self) -> UpstreamError | None:
        """The error of the last failed call, cleared by a success."""

    @property
    def filters_upstream(self) -> bool:
        """Whether the source applies filters and offsets itself."""

    def window(self, query: SpendQuery) -> tuple[Any, Any]: ...

    def iter_pages(
        self,
        query: SpendQuery,
        *,
        offset: int = 0,
        page_size: int | None = None,
        first_page_size: int | None = None,
        expected_rows: int | None = None,
        sort_by: str | None = None,
    ) -> AsyncGenerator[PageEvent, None]: ...

    async def fetch_entry(self, request_id: str) -> dict[str, Any] | None: ...
