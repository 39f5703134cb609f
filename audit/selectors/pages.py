"""Bounded reads of the prediction log: keyset pages, planner counts and lookups by id.

At a hundred million rows, ``OFFSET`` makes page n read and throw away n pages, ``COUNT(*)``
reads the whole table, and a lookup by id alone probes every partition. Instead:

- pages walk newest first by ``(created_at, prediction_id)`` (index ``audit_predictionlog_keyset``),
  each one starting after the last row of the page before (`page`, `chunks`);
- counts are PostgreSQL's planner estimate (`estimated_count`: the partitions' ``reltuples`` for
  the whole log, the plan's row estimate under filters); SQLite, the small embedded default,
  counts;
- a time-ordered id bounds ``created_at`` to its own time ± `ID_TIME_MARGIN`, which prunes the
  lookup to one or two partitions (`by_prediction_id`).
"""

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.db.models import Q, QuerySet

from audit.records import issued_at_ms

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# A row's created_at is stamped moments after its id is made, in the same process
# (`inference.services`); an hour leaves room for a slow run and a clock step between the two.
ID_TIME_MARGIN = timedelta(hours=1)


@dataclass(frozen=True)
class Cursor:
    """A position in the log, newest first: the row at ``(created_at, prediction_id)``."""

    created_at: datetime
    prediction_id: uuid.UUID

    @classmethod
    def of(cls, row) -> "Cursor":
        if isinstance(row, dict):
            return cls(row["created_at"], row["prediction_id"])
        return cls(row.created_at, row.prediction_id)

    def token(self) -> str:
        """For a URL: microseconds since 1970 and the id's hex."""
        return f"{(self.created_at - EPOCH) // _MICROSECOND}_{self.prediction_id.hex}"

    @classmethod
    def parse(cls, token: str) -> "Cursor":
        """The cursor of `token`; ValueError when it is not one."""
        micros, _, hex_id = token.partition("_")
        return cls(EPOCH + int(micros) * _MICROSECOND, uuid.UUID(hex=hex_id))


def older_than(rows: QuerySet, cursor: Cursor | None) -> QuerySet:
    """``rows`` after ``cursor`` newest first (all of them without one)."""
    rows = rows.order_by("-created_at", "-prediction_id")
    if cursor is None:
        return rows
    # The plain bound on created_at lets the index range scan (and partition pruning) stop at the
    # cursor; the OR settles the rows that share its instant.
    return rows.filter(
        Q(created_at__lt=cursor.created_at) | Q(created_at=cursor.created_at, prediction_id__lt=cursor.prediction_id),
        created_at__lte=cursor.created_at,
    )


def newer_than(rows: QuerySet, cursor: Cursor) -> QuerySet:
    """``rows`` before ``cursor`` in the newest-first order, oldest of them first."""
    return rows.order_by("created_at", "prediction_id").filter(
        Q(created_at__gt=cursor.created_at) | Q(created_at=cursor.created_at, prediction_id__gt=cursor.prediction_id),
        created_at__gte=cursor.created_at,
    )


@dataclass(frozen=True)
class Page:
    rows: list
    newer: Cursor | None  # where the page of newer rows starts; None on the newest page
    older: Cursor | None  # where the page of older rows starts; None on the oldest page


def page(rows: QuerySet, *, size: int, older: Cursor | None = None, newer: Cursor | None = None) -> Page:
    """One page of ``size`` rows, newest first: after ``older``, or just before ``newer``, or the newest."""
    if newer is not None:
        found = list(newer_than(rows, newer)[: size + 1])
        shown = found[:size][::-1]
        # Coming back from an older page: the rows at and after `newer` are still there.
        return Page(shown, Cursor.of(shown[0]) if len(found) > size else None, Cursor.of(shown[-1]) if shown else newer)
    found = list(older_than(rows, older)[: size + 1])
    shown = found[:size]
    return Page(shown, Cursor.of(shown[0]) if older is not None and shown else None, Cursor.of(shown[-1]) if len(found) > size else None)


def chunks(rows: QuerySet, *, size: int) -> Iterator[list]:
    """Every row of ``rows`` newest first, ``size`` at a time: one short query a chunk, so an export
    holds no cursor (and no snapshot) open on the server for its whole length."""
    cursor = None
    while True:
        chunk = list(older_than(rows, cursor)[:size])
        if chunk:
            yield chunk
        if len(chunk) < size:
            return
        cursor = Cursor.of(chunk[-1])


def estimated_count(rows: QuerySet) -> int:
    """How many rows ``rows`` holds, as PostgreSQL's planner estimates it (no scan); exact on SQLite."""
    if connection.vendor != "postgresql":
        return rows.count()
    sql, params = rows.order_by().values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        [(plan,)] = cursor.fetchall()
    return int((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]["Plan Rows"])


def by_prediction_id(rows: QuerySet, prediction_id: uuid.UUID) -> QuerySet:
    """``rows`` narrowed to one prediction; for a time-ordered id, within its time ± `ID_TIME_MARGIN`."""
    rows = rows.filter(pk=prediction_id)
    issued = issued_at_ms(prediction_id)
    if issued is None:
        return rows  # a version 4 id of an older log tells no time: every partition's key is probed
    made = EPOCH + timedelta(milliseconds=issued)
    return rows.filter(created_at__gte=made - ID_TIME_MARGIN, created_at__lte=made + ID_TIME_MARGIN)
