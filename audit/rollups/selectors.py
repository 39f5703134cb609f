"""Reading the rollups of a window: its figures per key, and per minute for a chart.

Whole hours inside a window are read from the hour rollups, the whole minutes around them from the
minute rollups, so a day costs at most 24 + 2 x 59 rows per key, however many predictions it holds.
A minute the window cuts is summed from its raw rows (`raw_figures`, the same `Figures`): exact
edges, at the cost of at most two minutes of rows; callers that ask for "the last 24 hours" start
it on a whole minute (`minute_floor`), a window ending now reads its last minute from the rollup,
and the cut first minute of a window that starts at the same moment again (the guard's) is summed
once and kept while that minute's rollups stay the same.

Segments (a condition on a row's features or score) cannot be read from sums:
`audit.selectors.health` sums their raw rows with `raw_figures` too.
"""

import threading
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import cachetools
import orjson
from django.db.models import OuterRef, Q, QuerySet, Subquery

from audit.models import Outcome, PredictionLog, PredictionRollup, RollupPeriod
from audit.rollups.figures import COUNTED_FIELDS, Figures, Key, columns_of, figures_by_group, key_of
from audit.rollups.store import period_start

MINUTE = timedelta(seconds=RollupPeriod.MINUTE)
HOUR = timedelta(seconds=RollupPeriod.HOUR)


def minute_floor(moment: datetime) -> datetime:
    """The start of ``moment``'s minute: where a window given as a duration starts, so that no edge is read raw."""
    return period_start(moment, RollupPeriod.MINUTE)


def _ceil_minute(moment: datetime) -> datetime:
    floor = period_start(moment, RollupPeriod.MINUTE)
    return floor if floor == moment.astimezone(UTC) else floor + MINUTE


def _periods(start: datetime, end: datetime) -> Q:
    """Which rollup rows cover ``[start, end)`` (minute-aligned) once each: whole hours, minutes around them."""
    first_hour = period_start(start + HOUR - MINUTE, RollupPeriod.HOUR)
    last_hour = period_start(end, RollupPeriod.HOUR)
    if first_hour >= last_hour:
        return Q(period_seconds=RollupPeriod.MINUTE, period_start__gte=start, period_start__lt=end)
    minutes = Q(period_start__gte=start, period_start__lt=first_hour) | Q(period_start__gte=last_hour, period_start__lt=end)
    hours = Q(period_seconds=RollupPeriod.HOUR, period_start__gte=first_hour, period_start__lt=last_hour)
    return (Q(period_seconds=RollupPeriod.MINUTE) & minutes) | hours


def _key(product: str, role: str, version, fallback) -> Key:
    return Key(product, role, str(version), None if fallback is None else str(fallback))


def _log(product: str | None, since: datetime, until: datetime) -> QuerySet:
    rows = PredictionLog.objects.filter(created_at__gte=since, created_at__lt=until)
    return rows.filter(product=product) if product else rows


def outcome_label() -> Subquery:
    """The label of the one outcome that judges a log row, or NULL: `audit.rollups.figures.judging_label` in SQL."""
    outcomes = Outcome.objects.filter(product=OuterRef("product"), event_id=OuterRef("event_id")).filter(
        Q(prediction_id=OuterRef("prediction_id")) | Q(prediction_id=OuterRef("primary_prediction_id")) | Q(prediction_id__isnull=True)
    )
    return Subquery(outcomes.order_by("-observed_at", "-pk").values("label")[:1])


def raw_figures(rows: QuerySet, into: dict[Key, Figures] | None = None) -> dict[Key, Figures]:
    """``rows`` (of the log: a minute a window cuts, read at once) summed per key as the writer sums them
    into the rollups, each judged by its outcome."""
    figures = defaultdict(Figures) if into is None else into
    read = list(rows.annotate(outcome_label=outcome_label()).values(*COUNTED_FIELDS, "outcome_label"))
    keys = {}
    groups = [keys.setdefault(key_of(row), len(keys)) for row in read]
    summed_by_key = figures_by_group(columns_of(read), [row["outcome_label"] for row in read], groups, len(keys))
    for key, summed in zip(keys, summed_by_key, strict=True):
        figures[key].add(summed)
    return figures


# The rows of a window's cut first minute, summed, for windows that start at the same moment again
# and again (the guard's canary since its start, every few seconds): (product, since) -> (what the
# minute's rollups held then, figures). Valid while they hold the same: the rollups take every row
# the minute receives (a late one from a spill replay included) and every outcome that judges one.
_FIRST_MINUTES: cachetools.LRUCache = cachetools.LRUCache(maxsize=256)
_FIRST_MINUTES_LOCK = threading.Lock()


def reset() -> None:
    """Forget the first minutes kept (a test's database is another log)."""
    with _FIRST_MINUTES_LOCK:
        _FIRST_MINUTES.clear()


def _first_minute(product: str | None, since: datetime, start: datetime) -> dict[Key, Figures]:
    """The figures of ``[since, start)``, the part of its minute a window starting at ``since`` takes."""
    if product is None:
        return raw_figures(_log(product, since, start))
    minute = PredictionRollup.objects.filter(product=product, period_seconds=RollupPeriod.MINUTE, period_start=start - MINUTE)
    # What the minute's rollups hold now: any row or outcome that reached the minute since changed it.
    held = sorted(map(orjson.dumps, minute.values_list("role", "model_version_id", "fallback_from_id", "counts")), key=bytes)
    with _FIRST_MINUTES_LOCK:
        cached = _FIRST_MINUTES.get((product, since))
    if cached is not None and cached[0] == held:
        return cached[1]
    figures = raw_figures(_log(product, since, start))
    with _FIRST_MINUTES_LOCK:
        _FIRST_MINUTES[(product, since)] = (held, figures)
    return figures


def window_figures(product: str | None, since: datetime, until: datetime) -> dict[Key, Figures]:
    """The figures of every key of ``product`` (every product when None) over ``[since, until)``, summed.

    The whole minutes come from the rollups; a minute the window cuts is read from its raw rows,
    unless it is the last and nothing was logged in it after ``until`` (a window ending now), when
    its rollup is exact.
    """
    figures: dict[Key, Figures] = defaultdict(Figures)
    start, end = _ceil_minute(since), period_start(until, RollupPeriod.MINUTE)
    if start > end:  # inside one minute
        return raw_figures(_log(product, since, until), figures)
    if since < start:
        for key, value in _first_minute(product, since, start).items():
            figures[key].add(value)
    if end < until:
        if _log(product, until, end + MINUTE).exists():
            raw_figures(_log(product, end, until), figures)
        else:
            end += MINUTE
    rows = PredictionRollup.objects.filter(_periods(start, end)) if start < end else PredictionRollup.objects.none()
    if product:
        rows = rows.filter(product=product)
    fields = ("product", "role", "model_version_id", "fallback_from_id", "counts", "latency_ms", "score")
    for row_product, role, version, fallback, counts, latency, score in rows.values_list(*fields).iterator(chunk_size=2_000):
        figures[_key(row_product, role, version, fallback)].add(Figures.from_stored(counts, latency, score))
    return figures


def rows_logged(*, product: str, model_version_id, roles: Iterable[str], since: datetime, until: datetime) -> int:
    """How many rows of ``model_version_id`` in ``roles`` the log holds over ``[since, until)``, now.

    Whole minutes from the rollups (the writer adds a row to its minute in the row's own
    transaction, a late one included), the minutes the window cuts counted raw.
    """
    roles = list(roles)
    log = PredictionLog.objects.filter(product=product, model_version_id=model_version_id, role__in=roles)
    start, end = _ceil_minute(since), period_start(until, RollupPeriod.MINUTE)
    if start > end:
        return log.filter(created_at__gte=since, created_at__lt=until).count()
    edges = log.filter(Q(created_at__gte=since, created_at__lt=start) | Q(created_at__gte=end, created_at__lt=until)).count()
    if start == end:
        return edges
    rollups = PredictionRollup.objects.filter(_periods(start, end), product=product, model_version_id=model_version_id, role__in=roles)
    return edges + sum(int(counts.get("rows", 0)) for counts in rollups.values_list("counts", flat=True))


def minute_counts(product: str, since: datetime, until: datetime) -> list[tuple[datetime, Key, Figures]]:
    """The minute rollups of the minutes the window touches, in order: ``(minute, key, figures)``, for charts."""
    start, end = period_start(since, RollupPeriod.MINUTE), _ceil_minute(until)
    rows = PredictionRollup.objects.filter(product=product, period_seconds=RollupPeriod.MINUTE)
    rows = rows.filter(period_start__gte=start, period_start__lt=end)
    fields = ("period_start", "role", "model_version_id", "fallback_from_id", "counts", "latency_ms", "score")
    return [
        (minute, _key(product, role, version, fallback), Figures.from_stored(counts, latency, score))
        for minute, role, version, fallback, counts, latency, score in rows.order_by("period_start").values_list(*fields)
    ]
