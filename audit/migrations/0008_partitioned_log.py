"""PostgreSQL: the prediction log becomes a table partitioned by range of ``created_at``.

Why: at a hundred million rows, retention by DELETE rewrites and vacuums the table row by row,
and every read without a time bound walks every page. With one partition a day, retention
detaches and drops whole days (`audit.services.prediction_log_retention_delete`) and a read
bounded in time touches only its days (partition pruning).

Why plain SQL rather than django-postgres-extra: psqlextra's partitioned models need its own
database backend (``ENGINE: psqlextra.backend``) wrapping Django's, which would sit under
psycopg's pool, the writer's own COPY connection and every other app's tables, and a new
dependency for what is a dozen statements here. The Django model stays as it is (primary key
``prediction_id``, so ``makemigrations`` sees no change); only the table underneath changes.

What changes in the table:

- the primary key becomes ``(prediction_id, created_at)``: PostgreSQL wants the partition key in
  every unique constraint. A prediction's ``created_at`` is fixed when it is made, so the
  writer's replay of a record still collides (`audit.logstore`: ``ON CONFLICT (prediction_id,
  created_at)``);
- a DEFAULT partition takes any row whose day has no partition yet, so no accepted prediction
  is refused; `audit.partitions` moves such rows when it creates their day's partition;
- the immutability triggers of 0003 are created on the partitioned table, and PostgreSQL
  clones them onto every partition, present and future: a direct UPDATE or DELETE on a
  partition is refused too.

The existing rows are copied: one partition per day (UTC) that holds rows, plus today and the
next 7 days (the guard process and ``manage.py audit_partitions`` keep creating them ahead),
then the rows, then the indexes (built once over the copied rows instead of row by row), the
foreign keys and the triggers. The indexes and foreign keys are read from the catalog before
the old table goes, so they keep their names and definitions. The copy takes the table's
lock for its duration: on a large log, run it in a maintenance window.

SQLite keeps its single table: nothing happens there. The SQL is frozen here, as in 0003.
"""

from datetime import UTC, datetime, timedelta
from importlib import import_module

from django.db import migrations, models

immutable = import_module("audit.migrations.0003_predictionlog_immutable")

TABLE = "audit_predictionlog"
AHEAD_DAYS = 7


def _fetch(cursor, sql: str, params=()) -> list[tuple]:
    cursor.execute(sql, params)
    return cursor.fetchall()


def _shape(cursor) -> tuple[str, list[str], list[tuple[str, str]]]:
    """The primary key's name, the other indexes' definitions and the foreign keys of ``TABLE``."""
    [(primary_key,)] = _fetch(cursor, "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'", [TABLE])
    indexes = _fetch(
        cursor,
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i WHERE i.indrelid = %s::regclass "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) ORDER BY i.indexrelid",
        [TABLE],
    )
    foreign_keys = _fetch(
        cursor,
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f' ORDER BY conname",
        [TABLE],
    )
    return primary_key, [definition for (definition,) in indexes], foreign_keys


def _rebuild(schema_editor, *, old: str, partitioned: bool) -> None:
    """Rename ``TABLE`` to ``old``, make a new ``TABLE`` like it, copy the rows, drop ``old`` and
    give the new table the old one's keys, indexes and triggers."""
    run = schema_editor.execute
    with schema_editor.connection.cursor() as cursor:
        primary_key, indexes, foreign_keys = _shape(cursor)
        run(f"ALTER TABLE {TABLE} RENAME TO {old}")
        clause = " PARTITION BY RANGE (created_at)" if partitioned else ""
        run(f"CREATE TABLE {TABLE} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS){clause}")
        if partitioned:
            run(f"CREATE TABLE {TABLE}_default PARTITION OF {TABLE} DEFAULT")
            days = {day for (day,) in _fetch(cursor, f"SELECT DISTINCT date_trunc('day', created_at AT TIME ZONE 'UTC') FROM {old}")}  # noqa: S608
            today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
            days |= {today + timedelta(days=n) for n in range(AHEAD_DAYS + 1)}
            for day in sorted(days):
                start, end = day.replace(tzinfo=UTC), (day + timedelta(days=1)).replace(tzinfo=UTC)
                run(
                    f"CREATE TABLE {TABLE}_p{day:%Y%m%d} PARTITION OF {TABLE} FOR VALUES FROM (%s) TO (%s)",
                    [start.isoformat(), end.isoformat()],
                )
        run(f"INSERT INTO {TABLE} SELECT * FROM {old}")  # noqa: S608
        run(f"DROP TABLE {old}")  # its keys, indexes and triggers with it
        key = "prediction_id, created_at" if partitioned else "prediction_id"
        run(f"ALTER TABLE {TABLE} ADD CONSTRAINT {primary_key} PRIMARY KEY ({key})")
        for definition in indexes:
            run(definition)
        for name, definition in foreign_keys:
            run(f"ALTER TABLE {TABLE} ADD CONSTRAINT {name} {definition}")
        immutable._run(schema_editor, [immutable.PG_FORWARD])


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        _rebuild(schema_editor, old=f"{TABLE}_unpartitioned", partitioned=True)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        _rebuild(schema_editor, old=f"{TABLE}_partitioned", partitioned=False)


class Migration(migrations.Migration):
    dependencies = [("audit", "0007_drift")]

    operations = [
        migrations.RunPython(forward, backward, elidable=False),
        # The admin's changelist, its keyset pages and the exports walk the log newest first
        # by (created_at, prediction_id): this index serves them (on PostgreSQL, one per partition).
        migrations.AddIndex(
            model_name="predictionlog",
            index=models.Index(fields=["created_at", "prediction_id"], name="audit_predictionlog_keyset"),
        ),
    ]
