"""aria_stream: a live viewer for LiteLLM spend logs, streamed as Server-Sent Events."""

__version__ = "0.1.0"
