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
rows, text COPY, by the script ``bench/writer_throughput.py`` replaced; the machine was shared
with other test runs, load average ~5, so the ranges are wide):

==================  ===============  ========================
method              rows/s           writer-thread CPU per row
==================  ===============  ========================
COPY                5,500 - 9,500    18 - 30 µs
COPY + ON CONFLICT  5,100 - 7,900    17 - 28 µs
bulk_create         1,700 - 2,400    200 - 315 µs
==================  ===============  ========================

COPY wins about 4x in rows/s and 10x in Python CPU: bulk_create builds 500 model instances and
adapts every field in Python. The CPU figure matters most: the writer thread shares the GIL
with the request threads of its worker, so every µs it spends is a µs a request may wait.

COPY goes in binary format (``bench/writer_throughput.py``, 2026-12-01, before/after in one
run): row encoding 13.5 -> 2.2 µs per record in Python, the PostgreSQL backend 48 -> 38 µs
per row (no text parsing of uuids, floats and timestamps). What is left is the server's:
per row about 14 µs for the primary key and five indexes, 9 µs heap and WAL, 8 µs parsing the
jsonb columns (binary jsonb is still JSON text), 5 µs the foreign key check; so one backend
tops out near 25,000 rows/s on a core of its own, and on this 2-core machine, where it shares
the cores with the writer's process, the server is the limit.
"""

import contextlib
import logging
import operator
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import orjson
from django.db import connections, transaction

from audit.models import PredictionLog
from audit.records import DEFAULTS, REQUIRED, STORED
from audit.rollups.store import PostgresSink, django_sink, roll_up

logger = logging.getLogger(__name__)

# Column order of COPY and of the idempotent INSERT, with what a record that leaves one out stores.
COLUMNS: tuple[tuple[str, object], ...] = tuple((column, DEFAULTS.get(column)) for column in STORED)
# The PostgreSQL type of each column in binary COPY (varchar travels as text; the server still
# checks its length). Derived from the model, so a new column cannot be sent in the wrong format.
_PG_TYPES = {
    "UUIDField": "uuid",
    "CharField": "text",
    "SlugField": "text",
    "JSONField": "jsonb",
    "FloatField": "float8",
    "BooleanField": "bool",
    "DateTimeField": "timestamptz",
}


def _pg_type(column: str) -> str:
    field = PredictionLog._meta.get_field(column)
    return _PG_TYPES[(field.target_field if field.is_relation else field).get_internal_type()]


COPY_TYPES: tuple[str, ...] = tuple(_pg_type(column) for column in STORED)
_UUID_COLUMNS = {column for column, pg_type in zip(STORED, COPY_TYPES, strict=True) if pg_type == "uuid"}
_TEXT_COLUMNS = {column for column, pg_type in zip(STORED, COPY_TYPES, strict=True) if pg_type == "text"}
_FLOAT_COLUMNS = {column for column, pg_type in zip(STORED, COPY_TYPES, strict=True) if pg_type == "float8"}
_in_column_order = operator.itemgetter(*STORED)
# What a binary dumper raises for a value of the wrong Python type (a uuid or a datetime as text,
# e.g. from a spill file): the batch is encoded again through `_coerced`.
_WRONG_TYPE = (TypeError, AttributeError, ValueError)

# How the writer's connection shows in pg_stat_activity (and how the tests find it).
APPLICATION_NAME = "audit-log-writer"


class RecordError(ValueError):
    """A record that can never be inserted (missing field, wrong type)."""


def _json_bytes(value) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


def check(record: dict) -> None:
    """Raise `RecordError` unless every required field is there and not None."""
    missing = [key for key in REQUIRED if record.get(key) is None]
    if missing:
        raise RecordError(f"record {record.get('prediction_id')} lacks {', '.join(sorted(missing))}")


def encode_rows(records: Sequence[dict]) -> list[tuple]:
    """A batch as binary COPY rows, in `COLUMNS` order; raises `RecordError` for a record that
    lacks a required field.

    The values go as they are: psycopg's C dumpers encode them (jsonb through orjson, see
    `PostgresCopyStore`), so a row costs two dict operations in Python instead of a loop over its
    columns. A None in a required field is refused by the database (NOT NULL), which the writer
    treats like any refused record.
    """
    defaults, row = DEFAULTS, _in_column_order
    try:
        return [row(defaults | record) for record in records]
    except KeyError as exc:
        raise RecordError(f"a record lacks {exc.args[0]}") from None


def _uuid(value) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _each_once(records: Sequence[dict], inserted: set[uuid.UUID]) -> list[dict]:
    """The records whose rows were inserted, a prediction given twice in one batch taken once."""
    left, taken = set(inserted), []
    for record in records:
        prediction_id = _uuid(record["prediction_id"])
        if prediction_id in left:
            left.discard(prediction_id)
            taken.append(record)
    return taken


def _coerced(record: dict) -> dict:
    """``record`` with every value of the Python type its column's binary dumper takes: uuids and
    datetimes given as text (spill files, hand-made records), numbers and text of other types."""
    check(record)
    fixed = dict(record)
    for column, value in record.items():
        if value is None:
            continue
        if column in _UUID_COLUMNS:
            fixed[column] = _uuid(value)
        elif column == "created_at" and not isinstance(value, datetime):
            fixed[column] = datetime.fromisoformat(str(value))
        elif column in _TEXT_COLUMNS and not isinstance(value, str):
            fixed[column] = str(value)
        elif column in _FLOAT_COLUMNS:
            fixed[column] = float(value)
    created = fixed["created_at"]
    if created.tzinfo is None:  # what the text format did: the session's time zone, UTC
        fixed["created_at"] = created.replace(tzinfo=UTC)
    return fixed


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
        from psycopg.types.json import set_json_dumps

        if self._conn is None or self._conn.closed or self._conn.broken:
            self.close()
            params = connections[self.using].get_connection_params()
            params.pop("cursor_factory", None)
            params.setdefault("connect_timeout", self.connect_timeout)
            params.setdefault("application_name", APPLICATION_NAME)
            self._conn = psycopg.connect(**params, autocommit=False)
            set_json_dumps(_json_bytes, context=self._conn)  # jsonb by orjson, numpy values included
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # already broken: nothing to release
                self._conn.close()
            self._conn = None

    def insert(self, records: Sequence[dict], *, idempotent: bool = False) -> int:
        """Insert ``records``; returns how many rows are new. Raises psycopg errors unchanged."""
        try:
            return self._insert_rows(records, encode_rows(records), idempotent=idempotent)
        except _WRONG_TYPE:
            # Values of another Python type than the binary format takes (text from a spill file):
            # once more with every value converted. Nothing of the first attempt was committed.
            records = [_coerced(record) for record in records]
            return self._insert_rows(records, encode_rows(records), idempotent=idempotent)

    def _insert_rows(self, records: Sequence[dict], rows: list[tuple], *, idempotent: bool) -> int:
        """COPY ``rows`` and add ``records`` (the same, as dicts) to the rollups, in one transaction."""
        import psycopg

        conn = self._connection()
        if not idempotent:
            try:
                with conn.cursor() as cursor:
                    self._copy(cursor, self._table, rows)
                    roll_up(PostgresSink(cursor), records)
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
                self._copy(cursor, "audit_log_incoming", rows)
                cursor.execute(
                    f"INSERT INTO {self._table} ({self._column_list}) SELECT {self._column_list} FROM audit_log_incoming "  # noqa: S608
                    # The partitioned table's key (migration 0008); created_at is fixed when a
                    # prediction is made, so a replayed record still collides.
                    "ON CONFLICT (prediction_id, created_at) DO NOTHING RETURNING prediction_id"
                )
                new = {row[0] for row in cursor.fetchall()}
                # Only the rows this insert added count: a replayed record is in its rollup already.
                roll_up(PostgresSink(cursor), _each_once(records, new))
            conn.commit()
            return len(new)
        except BaseException:
            self._rollback_quietly()
            raise

    def _copy(self, cursor, table: str, rows: list[tuple]) -> None:
        # Binary: the server takes uuids, floats and timestamps as they are instead of parsing
        # their text, and psycopg's C code writes the rows.
        with cursor.copy(f"COPY {table} ({self._column_list}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(COPY_TYPES)
            for row in rows:
                copy.write_row(row)

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
        records = [_coerced(record) for record in records]  # what COPY would refuse, refused before the database is asked
        objects = [PredictionLog(**{column: record.get(column, default) for column, default in COLUMNS}) for record in records]
        with transaction.atomic(using=self.using):
            manager = PredictionLog.objects.using(self.using)
            # Asked every time, not only for replays: a row already there must not be rolled up again.
            there = set(manager.filter(pk__in=[o.pk for o in objects]).values_list("pk", flat=True))
            manager.bulk_create(objects, ignore_conflicts=True)
            new = _each_once(records, {record["prediction_id"] for record in records} - there)
            with django_sink(self.using) as sink:
                roll_up(sink, new)
        return len(new)

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
