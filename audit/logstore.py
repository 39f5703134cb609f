"""Inserting prediction log records into the database, in batches, idempotently.

Two strategies behind one ``insert(records)`` call:

- `PostgresCopyStore` (PostgreSQL): one dedicated psycopg connection per process, owned by the
  writer thread (so the writer never competes with request threads for the Django pool and has
  its own short connect timeout). A batch goes in with ``COPY ... FROM STDIN``; if it collides
  with rows already there (a replay, or a batch whose commit succeeded but whose acknowledgement
  was lost), it is copied into a temporary table and moved with ``INSERT ... ON CONFLICT DO
  NOTHING``.
- `OrmStore` (any database, the SQLite default): ``bulk_create(ignore_conflicts=True)``.

Measured on the 2-core dev machine (PostgreSQL on 127.0.0.1, 500-row batches of 30-feature
rows, ``python bench/writer_throughput.py``; the machine was shared with other test runs, load
average ~5, so the ranges are wide):

==================  ===============  ========================
method              rows/s           writer-thread CPU per row
==================  ===============  ========================
COPY                5,500 - 9,500    18 - 30 µs
COPY + ON CONFLICT  5,100 - 7,900    17 - 28 µs
bulk_create         1,700 - 2,400    200 - 315 µs
whole writer        ~6,400           (submit -> row, COPY)
==================  ===============  ========================

COPY wins about 4x in rows/s and 10x in Python CPU: bulk_create builds 500 model instances and
adapts every field in Python. The CPU figure matters most: the writer thread shares the GIL
with the request threads of its worker, so every µs it spends is a µs a request may wait.
"""

import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime

import orjson
from django.db import connections, transaction

from audit.models import PredictionLog
from audit.records import DEFAULTS, REQUIRED, STORED

logger = logging.getLogger(__name__)

# Column order of COPY and of the idempotent INSERT, with what a record that leaves one out stores.
COLUMNS: tuple[tuple[str, object], ...] = tuple((column, DEFAULTS.get(column)) for column in STORED)
_JSON_COLUMNS = {"features", "explain_summary"}
_FLOAT_COLUMNS = {"score", "threshold", "latency_ms", "score_diff"}


# How the writer's connection shows in pg_stat_activity (and how the tests find it).
APPLICATION_NAME = "audit-log-writer"


class RecordError(ValueError):
    """A record that can never be inserted (missing field, wrong type)."""


def _json_text(value) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def copy_row(record: dict) -> tuple:
    """One record as a COPY row (text format; the server parses uuids and timestamps)."""
    missing = REQUIRED.difference(k for k in REQUIRED if record.get(k) is not None)
    if missing:
        raise RecordError(f"record {record.get('prediction_id')} lacks {', '.join(sorted(missing))}")
    row = []
    for column, default in COLUMNS:
        value = record.get(column, default)
        if value is None:
            row.append(None)
        elif column in _JSON_COLUMNS:
            row.append(_json_text(value))
        elif column in _FLOAT_COLUMNS:
            row.append(float(value))
        elif isinstance(value, datetime):
            row.append(value.isoformat())
        else:
            row.append(str(value) if not isinstance(value, bool) else value)
    return tuple(row)


def encode_rows(records: Sequence[dict]) -> list[tuple]:
    """A batch as COPY rows, in `COLUMNS` order; raises `RecordError` for a record that can never go in."""
    return [copy_row(record) for record in records]


class PostgresCopyStore:
    """COPY into ``audit_predictionlog`` over a connection of its own (see the module docstring)."""

    method = "copy"

    def __init__(self, *, using: str = "default", connect_timeout: int = 3):
        self.using = using
        self.connect_timeout = connect_timeout
        self._conn = None
        self._table = PredictionLog._meta.db_table
        self._column_list = ", ".join(column for column, _ in COLUMNS)

    def _connection(self):
        import psycopg

        if self._conn is None or self._conn.closed or self._conn.broken:
            self.close()
            params = connections[self.using].get_connection_params()
            params.pop("cursor_factory", None)
            params.setdefault("connect_timeout", self.connect_timeout)
            params.setdefault("application_name", APPLICATION_NAME)
            self._conn = psycopg.connect(**params, autocommit=False)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # already broken: nothing to release
                self._conn.close()
            self._conn = None

    def insert(self, records: Sequence[dict], *, idempotent: bool = False) -> int:
        """Insert ``records``; returns how many rows are new. Raises psycopg errors unchanged."""
        import psycopg

        rows = encode_rows(records)
        conn = self._connection()
        if not idempotent:
            try:
                with conn.cursor() as cursor, cursor.copy(f"COPY {self._table} ({self._column_list}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                conn.commit()
                return len(rows)
            except psycopg.errors.UniqueViolation:
                conn.rollback()
            except BaseException:
                self._rollback_quietly()
                raise
        try:
            with conn.cursor() as cursor:
                cursor.execute(
                    f"CREATE TEMP TABLE IF NOT EXISTS audit_log_incoming (LIKE {self._table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
                )
                with cursor.copy(f"COPY audit_log_incoming ({self._column_list}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                cursor.execute(
                    f"INSERT INTO {self._table} ({self._column_list}) SELECT {self._column_list} FROM audit_log_incoming "  # noqa: S608
                    "ON CONFLICT (prediction_id) DO NOTHING"
                )
                inserted = cursor.rowcount
            conn.commit()
            return inserted
        except BaseException:
            self._rollback_quietly()
            raise

    def ping(self) -> None:
        conn = self._connection()
        conn.execute("SELECT 1")
        conn.rollback()

    def _rollback_quietly(self) -> None:
        try:
            if self._conn is not None and not self._conn.closed:
                self._conn.rollback()
        except Exception:
            self.close()


class OrmStore:
    """``bulk_create(ignore_conflicts=True)`` through Django's connection of the calling thread."""

    method = "bulk_create"

    def __init__(self, *, using: str = "default"):
        self.using = using

    def insert(self, records: Sequence[dict], *, idempotent: bool = False) -> int:
        objects = []
        for record in records:
            copy_row(record)  # the same validation as the COPY path
            objects.append(PredictionLog(**{column: record.get(column, default) for column, default in COLUMNS}))
        with transaction.atomic(using=self.using):
            before = PredictionLog.objects.using(self.using).filter(pk__in=[o.pk for o in objects]).count() if idempotent else 0
            PredictionLog.objects.using(self.using).bulk_create(objects, ignore_conflicts=True)
        return len(objects) - before

    def ping(self) -> None:
        connections[self.using].ensure_connection()
        with connections[self.using].cursor() as cursor:
            cursor.execute("SELECT 1")

    def close(self) -> None:
        connections[self.using].close()


def store_for(*, using: str = "default", method: str | None = None):
    """The configured store: COPY on PostgreSQL unless ``method`` says ``bulk_create``."""
    vendor = connections[using].vendor
    if method == "copy" and vendor != "postgresql":
        raise ValueError("AUDIT_WRITE_METHOD=copy needs PostgreSQL")
    if vendor == "postgresql" and method in (None, "copy"):
        return PostgresCopyStore(using=using)
    return OrmStore(using=using)
