"""Audit write operations: retention (the only delete path of the prediction log) and outcomes.

Prediction log rows themselves are written by `audit.writer`, never here.
"""

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.core.exceptions import PermissionDenied
from django.db import connection, transaction
from django.utils import timezone

from audit import partitions
from audit.models import Outcome, PredictionLog
from audit.rollups.services import outcomes_relabelling, rollups_retention
from mlops.observability.tracing import span

RETENTION_PERMISSION = "audit.purge_predictionlog"


@dataclass(frozen=True)
class RetentionResult:
    cutoff: datetime
    matched: int
    deleted: int
    dry_run: bool
    partitions: tuple[str, ...] = ()  # PostgreSQL: the partitions dropped whole (or, dry run, that would be)


@contextlib.contextmanager
def _retention_guard_lifted() -> Iterator[None]:
    """Let this transaction delete prediction log rows (see migration 0003 for the triggers).

    Must run inside ``transaction.atomic``: on PostgreSQL ``SET LOCAL`` ends with the
    transaction; on SQLite the guard row is removed before commit and by any rollback.
    """
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL audit.retention_delete = 'on'")
            yield
            # Put the guard back at once: inside an outer transaction (or a test) the atomic
            # block is only a savepoint and SET LOCAL would outlive it. (On an error the
            # savepoint's rollback restores the setting.)
            cursor.execute("SET LOCAL audit.retention_delete = 'off'")
        else:
            cursor.execute("INSERT INTO audit_retention_guard (id) VALUES (1)")
            yield
            cursor.execute("DELETE FROM audit_retention_guard")


def prediction_log_retention_delete(
    *, older_than: timedelta, dry_run: bool = False, user=None, batch_size: int = 5_000, now: datetime | None = None
) -> RetentionResult:
    """Remove prediction log rows made before ``now - older_than``.

    On PostgreSQL every partition that ends by the cutoff is detached and dropped whole (no
    row-by-row DELETE, nothing to vacuum); what is left before the cutoff (the partition that
    straddles it, the DEFAULT partition) and, on SQLite, every old row goes through the guarded
    DELETE in batches of ``batch_size``, each batch its own transaction so that a long purge never
    holds one huge lock. ``user`` (optional: the shell operator is trusted) must hold
    ``audit.purge_predictionlog``.
    """
    if older_than <= timedelta(0):
        raise ValueError("older_than must be positive")
    if user is not None and not user.has_perm(RETENTION_PERMISSION):
        raise PermissionDenied(f"{user} lacks the {RETENTION_PERMISSION} permission")
    cutoff = (now or timezone.now()) - older_than
    old = PredictionLog.objects.filter(created_at__lt=cutoff)
    matched = old.count()
    whole = [p.name for p in partitions.listing() if p.end is not None and p.end <= cutoff] if partitions.partitioned() else []
    if dry_run:
        return RetentionResult(cutoff=cutoff, matched=matched, deleted=0, dry_run=True, partitions=tuple(whole))
    deleted = 0
    for name in whole:
        with transaction.atomic():
            partitions.lock()
            deleted += partitions.drop(name)
    while True:
        with transaction.atomic():
            ids = list(old.order_by().values_list("pk", flat=True)[:batch_size])
            if not ids:
                break
            with _retention_guard_lifted():
                count, _ = old.filter(pk__in=ids).delete()  # the time bound prunes to the old partitions
            deleted += count
    rollups_retention(cutoff=cutoff)
    return RetentionResult(cutoff=cutoff, matched=matched, deleted=deleted, dry_run=False, partitions=tuple(whole))


def prediction_log_partitions_ensure(*, ahead_days: int, days: int, now: datetime | None = None) -> list[str]:
    """Create the log's partitions from today through ``ahead_days`` days ahead, each ``days``
    wide; returns the names created (none on SQLite, which keeps one table).

    Rows that arrived early for a day without a partition wait in the DEFAULT partition and are
    moved into their new partition in the same transaction (`audit.partitions.create`).
    """
    if ahead_days < 0 or days < 1:
        raise ValueError("ahead_days must be 0 or more and days at least 1")
    if not partitions.partitioned():
        return []
    today = (now or timezone.now()).astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    with transaction.atomic():
        partitions.lock()
        ranges = partitions.missing(partitions.listing(), since=today, until=today + timedelta(days=ahead_days + 1), days=days)
        with _retention_guard_lifted():
            return [partitions.create(start, end) for start, end in ranges]


def outcomes_record(*, items: Iterable[dict], source_default: str = "api", batch_size: int = 1_000) -> int:
    """Record ground truth; a second outcome for the same (product, event, source) replaces the first.

    ``items`` are validated dicts with ``product``, ``event_id``, ``label``, ``observed_at`` and
    optionally ``prediction_id`` and ``source``. Returns how many were recorded.
    """
    now = timezone.now()
    total = 0
    # Keyed by the unique fields: PostgreSQL refuses to upsert one row twice in one statement,
    # so within a batch the last outcome for a key wins (as it would across batches).
    batch: dict[tuple, Outcome] = {}

    def write() -> int:
        # The rows these outcomes judge move to their new outcome cells in the rollups, in this transaction.
        with outcomes_relabelling({(product, event_id) for product, event_id, _ in batch}):
            Outcome.objects.bulk_create(
                list(batch.values()),
                update_conflicts=True,
                unique_fields=["product", "event_id", "source"],
                update_fields=["label", "observed_at", "prediction_id"],
            )
        return len(batch)

    with span("outcome_ingestion", source=source_default) as s, transaction.atomic():
        for item in items:
            source = item.get("source") or source_default
            batch[(item["product"], item["event_id"], source)] = Outcome(
                product=item["product"],
                event_id=item["event_id"],
                prediction_id=item.get("prediction_id"),
                label=item["label"],
                observed_at=item.get("observed_at") or now,
                source=source,
            )
            if len(batch) >= batch_size:
                total += write()
                batch = {}
        if batch:
            total += write()
        s.set(count=total)
    return total
