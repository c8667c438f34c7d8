"""Removal of secrets (the LiteLLM key, the viewer token) from text that leaves the process.

``create_app`` registers the secrets of its settings here. The registry belongs to the process,
not to one app, because log records and rows carry no reference to the app that made them. A
process that runs several apps (the test suite) therefore redacts the secrets of all of them.
"""

from __future__ import annotations

import json
import logging
import threading

REDACTED = "[redacted]"
# Shorter values would also match ordinary words and numbers, so they are not registered.
SECRET_MIN_CHARS = 8

_secrets: frozenset[str] = frozenset()
_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Redact ``value`` from every text passed to ``redact`` from now on."""
    global _secrets
    if len(value) < SECRET_MIN_CHARS:
        return
    with _lock:
        _secrets = _secrets | {value}


def redact(text: str) -> str:
    """Return ``text`` with every registered secret replaced by ``[redacted]``."""
    if len(text) < SECRET_MIN_CHARS:
        return text
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def contains_secret(text: str) -> bool:
    """Check whether ``text`` contains a registered secret."""
    return any(secret in text for secret in _secrets)


class RedactingFilter(logging.Filter):
    """A log filter that removes registered secrets from the message and the traceback.

    It is attached to handlers, because a filter on a logger does not see the records of its
    child loggers.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not _secrets:
            return True
        message = record.getMessage()
        if contains_secret(message):
            record.msg = redact(message)
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and contains_secret(record.exc_text):
            record.exc_text = redact(record.exc_text)
        if record.stack_info and contains_secret(record.stack_info):
            record.stack_info = redact(record.stack_info)
        return True


def install_log_filter(handlers: list[logging.Handler]) -> None:
    """Attach one ``RedactingFilter`` to each handler that has none yet."""
    for handler in handlers:
        if not any(isinstance(item, RedactingFilter) for item in handler.filters):
            handler.addFilter(RedactingFilter())


def redact_bytes(data: bytes) -> bytes:
    """Return ``data`` with the UTF-8 form of every registered secret replaced."""
    for secret in _secrets:
        encoded = secret.encode("utf-8", "surrogatepass")
        if encoded in data:
            data = data.replace(encoded, REDACTED.encode())
    return data


def contains_secret_json(data: bytes) -> bool:
    """Check whether JSON text contains a registered secret, as it is or with JSON escapes."""
    for secret in _secrets:
        encoded = secret.encode("utf-8", "surrogatepass")
        if encoded in data or json.dumps(secret)[1:-1].encode() in data:
            return True
    return False
