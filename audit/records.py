"""The prediction-log record: the one description of what a `PredictionLog` row holds.

A record is a plain dict (the serving path builds one per answer and a dict literal is the
cheapest thing it can build), typed by `PredictionRecord`. Every place that handles records
takes its fields from here: the log store's columns and defaults, the fields redaction never
drops, the live pages' compact form, the exports, the audit API and the inference API's read
back. ``tests/audit/test_records.py`` holds this module to the model, so a column added to
`PredictionLog` and not here fails a test instead of being silently left out somewhere.
"""

import uuid
from datetime import datetime
from typing import NotRequired, TypedDict


def issued_at_ms(prediction_id: uuid.UUID) -> int | None:
    """When a time-ordered id (`inference.ids`: UUID version 7) was made, in unix milliseconds;
    None for other ids (older logs hold version 4)."""
    if prediction_id.version != 7 or prediction_id.variant != uuid.RFC_4122:
        return None
    return prediction_id.int >> 80


class PredictionRecord(TypedDict):
    """One model run that answered (or shadowed) a request, as `inference` hands it to the writer.

    Keys are the model's column names (``model_version_id``, not ``model_version``), in column
    order. A key that is `NotRequired` may be left out; the log stores its `DEFAULTS` value.
    """

    prediction_id: uuid.UUID
    request_id: NotRequired[str]
    client: NotRequired[str]
    event_id: str
    product: str
    model_version_id: uuid.UUID
    role: str
    features: dict
    score: float
    decision: str
    threshold: float
    explain_summary: NotRequired[list]
    latency_ms: float
    cached: NotRequired[bool]
    fallback_from_id: NotRequired[uuid.UUID | None]
    fallback_reason: NotRequired[str]
    primary_prediction_id: NotRequired[uuid.UUID | None]  # shadow records: the answer they shadowed
    score_diff: NotRequired[float | None]
    diff_class: NotRequired[str]
    decision_agrees: NotRequired[bool | None]
    created_at: datetime  # when the prediction was made, not when the row was written


# What the log stores for an optional field a record leaves out (the model's column defaults).
DEFAULTS: dict[str, object] = {
    "request_id": "",
    "client": "",
    "explain_summary": [],
    "cached": False,
    "fallback_from_id": None,
    "fallback_reason": "",
    "primary_prediction_id": None,
    "score_diff": None,
    "diff_class": "",
    "decision_agrees": None,
}

# Every stored column, in column order.
STORED: tuple[str, ...] = tuple(PredictionRecord.__annotations__)
# The fields every record has: a record without one can never be inserted, and redaction never
# drops one even when a payload key of the same name is configured to be dropped.
REQUIRED: frozenset[str] = PredictionRecord.__required_keys__


def _stored_but(*left_out: str) -> tuple[str, ...]:
    return tuple(key for key in STORED if key not in left_out)


# Sent to the live pages, which show scores, decisions and shadow diffs: never the features or
# explanations (they may carry PII even after redaction), nor who asked.
LIVE: tuple[str, ...] = _stored_but("request_id", "client", "features", "threshold", "explain_summary", "fallback_from_id")

# Admin downloads and ``manage.py audit_export``, in the order of the CSV header: when and what
# first, the bulky JSON fields last.
EXPORT: tuple[str, ...] = (
    "prediction_id",
    "created_at",
    "request_id",
    "event_id",
    "product",
    "model_version_id",
    "role",
    "score",
    "decision",
    "threshold",
    "latency_ms",
    "cached",
    "fallback_from_id",
    "fallback_reason",
    "primary_prediction_id",
    "score_diff",
    "diff_class",
    "decision_agrees",
    "features",
    "explain_summary",
)

# The audit API's rows (``GET /v1/audit/predictions``).
API: tuple[str, ...] = _stored_but("client")

# What ``GET /v1/infer/<prediction_id>`` gives back of a record: the answer, not its input, its
# caller or its shadow comparison (the inference API names some fields its own way: see
# `inference.selectors.prediction_get`).
READ_BACK: tuple[str, ...] = _stored_but("request_id", "client", "features", "score_diff", "diff_class", "decision_agrees")


def plain(value):
    """A field's value as JSON and msgpack carry it: uuids as text, datetimes in ISO 8601,
    numpy scalars as Python numbers; None, numbers, text, lists and dicts unchanged."""
    if value is None or isinstance(value, bool | int | float | str | list | dict):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else str(value)
