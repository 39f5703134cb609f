"""Keeping the rollups equal to the rows they sum when something other than the writer changes them.

- `outcomes_relabelling`: outcomes arrived. The rows they judge move between outcome cells, in the
  transaction that records the outcomes, under the products' rollup locks (`audit.rollups.store`).
- `rollups_rebuild`: recompute the rollups of whole hours from the raw rows (after a restore, after
  rows were loaded without the writer, or for the hour retention cut through). One transaction per
  hour and product, under its lock, so the writer waits at most one hour's recount.
- `rollups_retention`: retention removed the rows made before a cutoff; their rollups go too.
"""

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction

from audit.models import PredictionLog, PredictionRollup, RollupPeriod
from audit.rollups.figures import ROW_FIELDS, judging_label
from audit.rollups.store import django_sink, outcomes_by_event, period_start, relabel, roll_up
from mlops.models import ModelVersion

HOUR = timedelta(seconds=RollupPeriod.HOUR)
REBUILD_CHUNK = 5_000


def _labels(sink, rows: list[dict], events: set[tuple[str, str]]) -> list[bool | None]:
    outcomes = outcomes_by_event(sink.outcomes(events))
    return [judging_label(row, outcomes.get((row["product"], row["event_id"]), ())) for row in rows]


@contextlib.contextmanager
def outcomes_relabelling(events: set[tuple[str, str]], *, using: str = "default") -> Iterator[None]:
    """Around the writing of outcomes for ``events`` ((product, event_id) pairs), inside its transaction:
    the rows of those events are moved to the outcome cells the new outcomes put them in."""
    products, event_ids = {product for product, _ in events}, {event for _, event in events}
    with django_sink(using) as sink:
        sink.lock(sorted(products))
        candidates = PredictionLog.objects.using(using).filter(product__in=products, event_id__in=event_ids).values(*ROW_FIELDS)
        rows = [row for row in candidates if (row["product"], row["event_id"]) in events]
        before = _labels(sink, rows, events)
        yield
        after = _labels(sink, rows, events)
        relabel(sink, zip(rows, before, after, strict=True))


@dataclass(frozen=True)
class RebuildResult:
    since: datetime
    until: datetime
    hours: int
    rows: int


def rollups_rebuild(*, since: datetime, until: datetime, using: str = "default") -> RebuildResult:
    """Recompute the rollups of every hour that ``[since, until)`` touches from the raw rows."""
    start = period_start(since, RollupPeriod.HOUR)
    end = period_start(until - timedelta(microseconds=1), RollupPeriod.HOUR) + HOUR
    # Every product a row can name has a model version; one product at a time keeps each read on
    # the (product, created_at) index.
    products = sorted(set(ModelVersion.objects.using(using).values_list("product", flat=True)))
    hour, hours, counted = start, 0, 0
    while hour < end:
        counted += sum(_rebuild_hour(hour, product, using=using) for product in products)
        hour, hours = hour + HOUR, hours + 1
    return RebuildResult(since=start, until=end, hours=hours, rows=counted)


def _rebuild_hour(hour: datetime, product: str, *, using: str) -> int:
    rows = PredictionLog.objects.using(using).filter(product=product, created_at__gte=hour, created_at__lt=hour + HOUR)
    stored = PredictionRollup.objects.using(using).filter(product=product, period_start__gte=hour, period_start__lt=hour + HOUR)
    with transaction.atomic(using=using), django_sink(using) as sink:
        sink.lock([product])  # the writer waits: nothing is added to the hour while it is recounted
        stored.delete()
        counted, chunk = 0, []
        for row in rows.order_by("created_at", "prediction_id").values(*ROW_FIELDS).iterator(chunk_size=REBUILD_CHUNK):
            chunk.append(row)
            if len(chunk) == REBUILD_CHUNK:
                roll_up(sink, chunk)
                counted, chunk = counted + len(chunk), []
        roll_up(sink, chunk)
    return counted + len(chunk)


def rollups_retention(*, cutoff: datetime, using: str = "default") -> None:
    """The rows made before ``cutoff`` are gone: drop the rollups of the hours before it and recount the hour it cuts."""
    hour = period_start(cutoff, RollupPeriod.HOUR)
    PredictionRollup.objects.using(using).filter(period_start__lt=hour).delete()
    if hour < cutoff:
        rollups_rebuild(since=hour, until=hour + HOUR, using=using)
