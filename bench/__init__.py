"""Benchmarks of aria_stream against the design it replaces, run with ``make bench``.

The baseline is the earlier dashboard's design: a proxy endpoint that waits for LiteLLM's whole
response and passes it on, and a client that downloads and parses the whole body before showing
anything. Each scenario runs both systems against one simulator process, with every server in a
process of its own so that memory readings do not mix.
"""
