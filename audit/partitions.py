"""The prediction log's partitions on PostgreSQL (migration 0008): what there is, creating the
days ahead, and detaching and dropping old ones. SQLite keeps one table; none of this runs there.

Partitions are named ``audit_predictionlog_pYYYYMMDD`` after their first day (UTC) and are
``AUDIT_PARTITION_DAYS`` wide, aligned on multiples of that width since 1970-01-01 so that every
process computes the same bounds. What exists is read from the catalog, never assumed, so a
change of width fills the gaps between the partitions already there instead of overlapping them.

The callers (`audit.services`) hold the transaction, the advisory lock and the retention guard.
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection

TABLE = "audit_predictionlog"
DEFAULT = f"{TABLE}_default"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Taken by every change of the partition set, so the guard process and a command never race.
LOCK_KEY = 18_0002
_BOUND = re.compile(r"FOR VALUES FROM \('([^']+)'\) TO \('([^']+)'\)")


@dataclass(frozen=True)
class Partition:
    name: str
    start: datetime | None  # None for the DEFAULT partition
    end: datetime | None
    rows_estimate: int  # the planner's (pg_class.reltuples; -1 before the first ANALYZE)


def partitioned() -> bool:
    """Whether this database partitions the log (PostgreSQL after migration 0008)."""
    return connection.vendor == "postgresql"


def listing() -> list[Partition]:
    """Every partition of the log, the DEFAULT one last."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), c.reltuples::bigint FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
            [TABLE],
        )
        rows = cursor.fetchall()
    found = []
    for name, bound, estimate in rows:
        match = _BOUND.search(bound)
        start, end = (datetime.fromisoformat(match[1]), datetime.fromisoformat(match[2])) if match else (None, None)
        found.append(Partition(name=name, start=start, end=end, rows_estimate=estimate))
    return sorted(found, key=lambda p: (p.start is None, p.start))


def lock() -> None:
    """Serialise changes of the partition set until the end of the transaction."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])


def missing(existing: list[Partition], *, since: datetime, until: datetime, days: int) -> list[tuple[datetime, datetime]]:
    """The ``(start, end)`` ranges to create so that partitions cover ``[since, until)``."""
    width = timedelta(days=days)
    taken = sorted((p.start, p.end) for p in existing if p.start is not None)
    cursor = EPOCH + width * ((since - EPOCH) // width)
    ranges = []
    while cursor < until:
        covering = next((end for start, end in taken if start <= cursor < end), None)
        if covering is not None:
            cursor = covering
            continue
        end = min([cursor + width, *(start for start, _ in taken if start > cursor)])
        ranges.append((cursor, end))
        cursor = end
    return ranges


def create(start: datetime, end: datetime) -> str:
    """Create the partition for ``[start, end)``, moving in the rows the DEFAULT partition holds
    for it (PostgreSQL refuses a partition whose rows sit in the default). The move deletes from
    the DEFAULT partition: the caller lifts the retention guard; the rows never leave the log."""
    name = f"{TABLE}_p{start:%Y%m%d}"
    bounds = [start.isoformat(), end.isoformat()]
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {name} (LIKE {TABLE} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        cursor.execute(
            f"WITH moved AS (DELETE FROM {DEFAULT} WHERE created_at >= %s AND created_at < %s RETURNING *) "  # noqa: S608
            f"INSERT INTO {name} SELECT * FROM moved",
            bounds,
        )
        # ATTACH builds the partition's indexes and clones the keys and the immutability triggers.
        cursor.execute(f"ALTER TABLE {TABLE} ATTACH PARTITION {name} FOR VALUES FROM (%s) TO (%s)", bounds)
    return name


def drop(name: str) -> int:
    """Detach and drop one partition; returns how many rows it held."""
    with connection.cursor() as cursor:
        # Rows written earlier in an enclosing transaction still owe their deferred foreign key
        # checks, and PostgreSQL drops no table with pending trigger events: check them now.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"ALTER TABLE {TABLE} DETACH PARTITION {name}")
        cursor.execute(f"SELECT count(*) FROM {name}")  # noqa: S608 - detached: nobody writes to it now
        [(rows,)] = cursor.fetchall()
        cursor.execute(f"DROP TABLE {name}")
    return rows
