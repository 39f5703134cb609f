"""Log records an operator can filter: JSON lines in production, readable lines in the embedded default.

``LOG_FORMAT=json`` (the default when DEBUG is off) writes one JSON object per line with
``timestamp`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, ``service`` and ``host`` (the
settings ``SERVICE_NAME`` and ``HOST_NAME``: which process of which pod wrote it) and, when the
record carries them, the fields below (and ``trace_id``/``span_id`` inside a recording span;
``run_id`` on every line of a dual-model stream);
``LOG_FORMAT=human`` writes ``<time> <LEVEL> <logger> <message> [prediction_id=... model=...]``.

A record carries a field when the call passes it (``logger.info("...", extra={"model": ...})``) or
when the code around it bound it with `log_context` (a context variable, so it follows the
request's thread or task and never leaks into another request)::

    with log_context(prediction_id=pid, event_id=event_id, model=label, role="canary"):
        ...  # every record logged in here carries the four fields
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

# The fields an operator filters prediction logs by, in the order readable lines show them.
CONTEXT_FIELDS = (
    "request_id",
    "run_id",
    "prediction_id",
    "event_id",
    "product",
    "model",
    "model_version",
    "role",
    "decision",
    "latency_ms",
    "trace_id",
)

_context: contextvars.ContextVar[dict | None] = contextvars.ContextVar("mlops_log_context", default=None)


@contextmanager
def log_context(**fields) -> Iterator[None]:
    """Bind fields (None values are ignored) to every record logged inside the block."""
    current = _context.get() or {}
    token = _context.set({**current, **{key: value for key, value in fields.items() if value is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def bind(**fields) -> None:
    """Bind fields for the rest of the current context (a request's thread or task)."""
    current = _context.get() or {}
    _context.set({**current, **{key: value for key, value in fields.items() if value is not None}})


def clear() -> None:
    _context.set(None)


class ContextFilter(logging.Filter):
    """Copies the bound fields onto each record (fields passed in ``extra`` win), and, while a
    span is recording (tracing on), its ``trace_id`` and ``span_id`` so a log line leads to its trace."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _context.get()
        if fields:
            for key, value in fields.items():
                if not hasattr(record, key):
                    setattr(record, key, value)
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        return True


class JsonFormatter(_JsonFormatter):
    """One JSON object per line: timestamp, level, logger, message, then any context fields."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", True)
        super().__init__(*args, **kwargs)

    def add_fields(self, log_data, record, message_dict):
        super().add_fields(log_data, record, message_dict)
        if "latency_ms" in log_data and isinstance(log_data["latency_ms"], float):
            log_data["latency_ms"] = round(log_data["latency_ms"], 3)


class HumanFormatter(logging.Formatter):
    """``<time> <LEVEL> <logger> <message> [field=value ...]`` for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{key}={getattr(record, key)}" for key in CONTEXT_FIELDS if getattr(record, key, None) is not None)
        if not fields:
            return line
        head, newline, rest = line.partition("\n")  # keep a traceback below the fields
        return f"{head} [{fields}]{newline}{rest}"
