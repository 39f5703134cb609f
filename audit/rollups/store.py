"""Adding figures to the stored rollups, inside the transaction that changed the rows they sum.

`roll_up` is called by the log stores (`audit.logstore`) with the records a batch really inserted
(all of a fresh COPY; the ``RETURNING`` rows of an idempotent insert, so a replayed spill file adds
nothing twice), by the outcome service with the rows an outcome relabels, and by the rebuild. In
one transaction it

1. locks each product's rollups (a transaction-level advisory lock on PostgreSQL; SQLite has one
   writer), always in product order so two writers cannot deadlock;
2. reads the outcomes of the records' events, *after* the lock, so an outcome recorded at the same
   moment is seen either here or by the outcome service's own look at the rows (which takes the
   same lock before it reads them): never by neither;
3. adds each record's figures to its minute and its hour, reading and rewriting the rows it changes.

Two sinks do the reading and writing: `PostgresSink` with plain SQL on a psycopg cursor (the
writer's own connection, in its COPY's transaction, or Django's: `django_sink`), `OrmSink` with the
ORM on SQLite.
"""

import contextlib
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

import orjson
from django.db import connections

from audit.models import Outcome, PredictionRollup, RollupPeriod
from audit.rollups.figures import Figures, Key, OutcomeSeen, columns_of, figures_by_group, judging_label, key_of

# (period_seconds, period_start, key)
Slot = tuple[int, datetime, Key]


def period_start(moment: datetime, seconds: int) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime.fromtimestamp(int(moment.timestamp()) // seconds * seconds, tz=UTC)


def with_hours(minutes: dict[Slot, Figures]) -> dict[Slot, Figures]:
    """Minute deltas and the hour deltas they add up to: every row counts in its minute and its hour."""
    deltas = dict(minutes)
    for (_, start, key), figures in minutes.items():
        hour = (RollupPeriod.HOUR, period_start(start, RollupPeriod.HOUR), key)
        deltas.setdefault(hour, Figures()).add(figures)
    return deltas


def lock_key(product: str) -> str:
    return f"audit_rollup:{product}"


def starts_by_period(slots: set[Slot]) -> dict[tuple[str, int], list[datetime]]:
    """The period starts to read, per (product, period length): one query each."""
    by_period = defaultdict(set)
    for seconds, start, key in slots:
        by_period[(key.product, seconds)].add(start)
    return {period: sorted(starts) for period, starts in by_period.items()}


@contextlib.contextmanager
def django_sink(using: str = "default") -> Iterator["PostgresSink | OrmSink"]:
    """The sink for Django's connection ``using``, in its current transaction."""
    connection = connections[using]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            yield PostgresSink(cursor)
    else:
        yield OrmSink(using)


def _json(value):
    return orjson.loads(value) if isinstance(value, str | bytes) else value


class PostgresSink:
    """The rollups through a psycopg cursor, in its transaction."""

    def __init__(self, cursor):
        self.cursor = cursor
        self.table = PredictionRollup._meta.db_table

    def lock(self, products: list[str]) -> None:
        for product in products:
            self.cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (lock_key(product),))

    def outcomes(self, events: set[tuple[str, str]]) -> list[OutcomeSeen]:
        if not events:
            return []
        products, event_ids = zip(*events, strict=True)
        self.cursor.execute(
            f"SELECT product, event_id, prediction_id, label, observed_at, id FROM {Outcome._meta.db_table} "  # noqa: S608
            "WHERE product = ANY(%s) AND event_id = ANY(%s)",
            (list(set(products)), list(set(event_ids))),
        )
        return [
            OutcomeSeen(product, event, None if pid is None else str(pid), label, observed, pk)
            for product, event, pid, label, observed, pk in self.cursor.fetchall()
        ]

    def load(self, slots: set[Slot]) -> dict[Slot, tuple[int, Figures]]:
        found = {}
        for (product, seconds), starts in starts_by_period(slots).items():
            self.cursor.execute(
                f"SELECT id, period_start, role, model_version_id, fallback_from_id, counts, latency_ms, score FROM {self.table} "  # noqa: S608
                "WHERE period_seconds = %s AND product = %s AND period_start = ANY(%s)",
                (seconds, product, starts),
            )
            for pk, start, role, version, fallback, *stored in self.cursor.fetchall():
                key = Key(product, role, str(version), None if fallback is None else str(fallback))
                # Django's adapters, which this connection shares, hand jsonb over as text.
                found[(seconds, start, key)] = (pk, Figures.from_stored(*(_json(part) for part in stored)))
        return found

    def save(self, changed: dict[Slot, tuple[int | None, Figures]]) -> None:
        updates, inserts = [], []
        for (seconds, start, key), (pk, figures) in changed.items():
            stored = tuple(orjson.dumps(part).decode() for part in figures.stored())
            if pk is None:
                fallback = None if key.fallback_from_id is None else uuid.UUID(key.fallback_from_id)
                inserts.append((seconds, start, key.product, key.role, uuid.UUID(key.model_version_id), fallback, *stored))
            else:
                updates.append((*stored, pk))
        if updates:
            self.cursor.executemany(
                f"UPDATE {self.table} SET counts = %s::jsonb, latency_ms = %s::jsonb, score = %s::jsonb WHERE id = %s",  # noqa: S608
                updates,
            )
        if inserts:
            self.cursor.executemany(
                f"INSERT INTO {self.table} (period_seconds, period_start, product, role, model_version_id, fallback_from_id, "  # noqa: S608
                "counts, latency_ms, score) VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s::jsonb)",
                inserts,
            )


class OrmSink:
    """The rollups through Django's ORM on ``using``, in its current transaction: for SQLite, whose
    first write in a transaction takes the database lock that serialises writers (no lock of ours)."""

    def __init__(self, using: str = "default"):
        self.using = using

    def lock(self, products: list[str]) -> None:
        pass

    def outcomes(self, events: set[tuple[str, str]]) -> list[OutcomeSeen]:
        if not events:
            return []
        products, event_ids = zip(*events, strict=True)
        rows = Outcome.objects.using(self.using).filter(product__in=set(products), event_id__in=set(event_ids))
        fields = ("product", "event_id", "prediction_id", "label", "observed_at", "pk")
        return [
            OutcomeSeen(product, event, None if pid is None else str(pid), label, observed, pk)
            for product, event, pid, label, observed, pk in rows.values_list(*fields)
        ]

    def load(self, slots: set[Slot]) -> dict[Slot, tuple[int, Figures]]:
        found = {}
        for (product, seconds), starts in starts_by_period(slots).items():
            rows = PredictionRollup.objects.using(self.using).filter(period_seconds=seconds, product=product, period_start__in=starts)
            for row in rows:
                key = Key(product, row.role, str(row.model_version_id), None if row.fallback_from_id is None else str(row.fallback_from_id))
                found[(seconds, row.period_start, key)] = (row.pk, Figures.from_stored(row.counts, row.latency_ms, row.score))
        return found

    def save(self, changed: dict[Slot, tuple[int | None, Figures]]) -> None:
        updates, inserts = [], []
        for (seconds, start, key), (pk, figures) in changed.items():
            counts, latency, score = figures.stored()
            row = PredictionRollup(
                pk=pk,
                period_seconds=seconds,
                period_start=start,
                product=key.product,
                role=key.role,
                model_version_id=key.model_version_id,
                fallback_from_id=key.fallback_from_id,
                counts=counts,
                latency_ms=latency,
                score=score,
            )
            (inserts if pk is None else updates).append(row)
        manager = PredictionRollup.objects.using(self.using)
        manager.bulk_update(updates, ["counts", "latency_ms", "score"])
        manager.bulk_create(inserts)


def outcomes_by_event(outcomes: Iterable[OutcomeSeen]) -> dict[tuple[str, str], list[OutcomeSeen]]:
    grouped = defaultdict(list)
    for outcome in outcomes:
        grouped[(outcome.product, outcome.event_id)].append(outcome)
    return grouped


def _merge(sink, deltas: dict[Slot, Figures]) -> None:
    if not deltas:
        return
    stored = sink.load(set(deltas))
    changed = {}
    for slot, delta in deltas.items():
        pk, figures = stored.get(slot, (None, None))
        changed[slot] = (pk, (figures or Figures()).add(delta))
    sink.save(changed)


def roll_up(sink, records: Iterable[dict]) -> None:
    """Add ``records`` (rows just inserted: log records or `figures.ROW_FIELDS` dicts) to their minutes and hours."""
    records = list(records)
    if not records:
        return
    sink.lock(sorted({record["product"] for record in records}))
    outcomes = outcomes_by_event(sink.outcomes({(record["product"], record["event_id"]) for record in records}))
    labels, groups = [], []
    # A batch has few distinct minutes and keys: each slot is made once, from the first record of its
    # raw values (a version as a UUID and as text, as a replayed spill file has it, are one slot).
    by_raw: dict[tuple, int] = {}
    slots: dict[Slot, int] = {}
    for record in records:
        judging = outcomes.get((record["product"], record["event_id"]))
        labels.append(judging_label(record, judging) if judging else None)
        minute = int(record["created_at"].timestamp()) // RollupPeriod.MINUTE
        raw = (minute, record["product"], record["role"], record["model_version_id"], record.get("fallback_from_id"))
        if raw not in by_raw:
            slot = (RollupPeriod.MINUTE, datetime.fromtimestamp(minute * RollupPeriod.MINUTE, tz=UTC), key_of(record))
            by_raw[raw] = slots.setdefault(slot, len(slots))
        groups.append(by_raw[raw])
    _merge(sink, with_hours(dict(zip(slots, figures_by_group(columns_of(records), labels, groups, len(slots)), strict=True))))


def relabel(sink, changes: Iterable[tuple[dict, bool | None, bool | None]]) -> None:
    """Move rows between outcome cells: ``(row, old label, new label)`` each, the products already locked."""
    minutes: dict[Slot, Figures] = defaultdict(Figures)
    for row, old, new in changes:
        if old != new:
            minutes[(RollupPeriod.MINUTE, period_start(row["created_at"], RollupPeriod.MINUTE), key_of(row))].relabel(row, old, new)
    _merge(sink, with_hours(minutes))
