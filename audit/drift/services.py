"""The drift job: baselines for the models in service, and one window per model and interval.

`drift_evaluate` runs in the process that runs the rollout guard (`audit.drift.runner`), never on
a request. For each production version and active canary it

1. makes sure the version has a `DriftBaseline` (`drift_baseline_ensure`: the reference file
   pushed with it, else the rows its latest backtest replayed, else its first
   ``DRIFT_BASELINE_PREDICTIONS`` production answers; none yet: it waits for them);
2. counts the version's logged answers (roles production and canary; shadows are the same
   inputs again) over ``[end - DRIFT_WINDOW_SECONDS, end)``, ``end = now - DRIFT_LAG_SECONDS``,
   into the baseline's bins, and stores a `DriftWindow` with one `DriftMeasurement` per feature
   and one for the score.

Incremental. A window's live counts are stored with it, so the next window is the previous one
plus the rows logged since its end minus the rows that slid out of its start: each log row is
read twice in all (entering and leaving), whatever the window's length, instead of the whole
window every interval. A full count is made when there is no usable previous window (the first
one, a gap longer than the window, another baseline) or when the sum misses a row: one that
reached the log after the window had passed its ``created_at`` (a writer batch later than
``DRIFT_LAG_SECONDS``, a replayed spill file) was never added, and may be subtracted. The window's
rows are checked against the rollups' count of the same rows (`rows_logged`), which has every row
however late: a missed row only ever lowers the sum, so equal counts mean exact bins.
"""

import logging
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
from django.conf import settings
from django.db import transaction
from django.db.models import TextField
from django.db.models.functions import Cast
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from audit.backtests import backtest_rows
from audit.drift import baseline as builder
from audit.drift import metrics
from audit.drift.psi import bin_counts, psi
from audit.models import (
    Backtest,
    BacktestStatus,
    DriftBaseline,
    DriftBaselineSource,
    DriftMeasurement,
    DriftWindow,
    PredictionLog,
)
from audit.rollups.selectors import rows_logged
from mlops import selectors as registry
from mlops.artifacts.loading import load_verified
from mlops.artifacts.reference import reference_matrix
from mlops.artifacts.stores import download_verified
from mlops.choices import ModelRole, ModelStatus
from mlops.models import ModelVersion

logger = logging.getLogger(__name__)

ANSWERING_ROLES = (ModelRole.PRODUCTION, ModelRole.CANARY)
SCORE = ""  # the score's key among a window's counts (a feature name is never empty)
CHUNK = 5000  # log rows fetched and binned at a time
SCORE_BATCH = 4096  # rows per session run when a baseline's rows are scored


# --- Baselines ----------------------------------------------------------------------------------


def _scores(model_version: ModelVersion, matrix: np.ndarray) -> np.ndarray:
    """The version's scores of the rows of ``matrix`` (NaN for a row with a missing value), from its verified session."""
    artifact = load_verified(
        artifact_uri=model_version.artifact_uri,
        sha256=model_version.sha256,
        input_schema=model_version.input_schema,
        output_schema=model_version.output_schema,
    )
    scores = np.full(matrix.shape[0], np.nan)
    complete = np.flatnonzero(~np.isnan(matrix).any(axis=1))
    for start in range(0, complete.size, SCORE_BATCH):
        index = complete[start : start + SCORE_BATCH]
        rows = matrix[index].astype(artifact.dtype)
        feed = (
            {artifact.input_name: rows}
            if artifact.input_name
            else {name: rows[:, i : i + 1] for i, name in enumerate(artifact.feature_names)}
        )
        output = artifact.session.run([artifact.score_output], feed)[0]
        scores[index] = np.asarray(output, dtype=np.float64).reshape(len(index), -1)[:, artifact.score_column]
    return scores


def _from_reference(model_version: ModelVersion, names: list[str]) -> tuple[np.ndarray, np.ndarray, str] | None:
    if not model_version.reference_uri:
        return None
    path = download_verified(model_version.reference_uri, model_version.reference_sha256, suffix=Path(model_version.reference_uri).suffix)
    matrix = reference_matrix(path, names)
    return matrix, _scores(model_version, matrix), model_version.reference_uri


def _from_backtest(model_version: ModelVersion, names: list[str]) -> tuple[np.ndarray, np.ndarray, str] | None:
    """The logged production rows the version's latest finished backtest replayed, scored again by the version.

    The report keeps counts, not rows: the rows are found again from its window (``until``,
    ``since``, ``last``), which names exactly the rows the backtest read (the log is append-only
    and `backtest_rows` orders them). The candidate's scores are recomputed with its verified
    session, as the backtest made them.
    """
    latest = (
        Backtest.objects.filter(model_version=model_version, status=BacktestStatus.DONE, report__isnull=False)
        .order_by("-finished_at")
        .first()
    )
    window = (latest.report or {}).get("window", {}) if latest else {}
    until = parse_datetime(window.get("until") or "")
    if until is None:
        return None
    since = parse_datetime(window["since"]) if window.get("since") else None
    rows = backtest_rows(product=model_version.product, until=until, since=since, last=window.get("last"))
    matrix = builder.feature_matrix(rows.values_list("features", flat=True), names)
    if matrix.shape[0] == 0:
        return None
    return matrix, _scores(model_version, matrix), f"backtest {latest.pk}: {matrix.shape[0]} logged production rows"


def _from_predictions(model_version: ModelVersion, names: list[str]) -> tuple[np.ndarray, np.ndarray, str] | None:
    wanted = settings.DRIFT_BASELINE_PREDICTIONS
    rows = list(
        PredictionLog.objects.filter(model_version=model_version, role=ModelRole.PRODUCTION)
        .order_by("created_at", "prediction_id")
        .values_list("features", "score", "created_at")[:wanted]
    )
    if len(rows) < wanted:
        return None  # not yet: the first N answers of its production period are still to come
    matrix = builder.feature_matrix((features for features, _, _ in rows), names)
    scores = np.asarray([score for _, score, _ in rows], dtype=np.float64)
    return matrix, scores, f"first {wanted} production answers, {rows[0][2].isoformat()} to {rows[-1][2].isoformat()}"


SOURCES = [
    (DriftBaselineSource.REFERENCE, _from_reference),
    (DriftBaselineSource.BACKTEST, _from_backtest),
    (DriftBaselineSource.PREDICTIONS, _from_predictions),
]


def drift_baseline_ensure(*, model_version: ModelVersion) -> DriftBaseline | None:
    """The version's baseline, built now from the best source there is if it has none; None while there is none.

    A reference that fails verification (checksum, unreadable) is not passed over for a lesser
    source: the error propagates and the next run tries again, so a tampered file is seen.
    """
    existing = DriftBaseline.objects.filter(model_version=model_version).first()
    if existing is not None:
        return existing
    names = model_version.feature_names
    for source, find in SOURCES:
        found = find(model_version, names)
        if found is None:
            continue
        matrix, scores, detail = found
        made = builder.build_baseline(
            names=names,
            matrix=matrix,
            scores=scores,
            bins=settings.DRIFT_BINS,
            not_monitored=builder.redacted(names, drop=settings.AUDIT_REDACT_DROP, hashed=settings.AUDIT_REDACT_HASH),
        )
        baseline, _ = DriftBaseline.objects.get_or_create(
            model_version=model_version,
            defaults={
                "source": source,
                "source_detail": detail[:1024],
                "rows": made["rows"],
                "features": made["features"],
                "score": made["score"],
                "not_monitored": made["not_monitored"],
            },
        )
        logger.info("drift baseline of %s built from %s (%s rows)", model_version, source, made["rows"])
        return baseline
    return None


# --- Windows ------------------------------------------------------------------------------------


def monitored(baseline: DriftBaseline) -> dict[str, dict]:
    """The baseline's histograms of the features the log still keeps as numbers (redaction may have changed since)."""
    now_redacted = builder.redacted(baseline.features, drop=settings.AUDIT_REDACT_DROP, hashed=settings.AUDIT_REDACT_HASH)
    return {name: histogram for name, histogram in baseline.features.items() if name not in now_redacted}


def _count(model_version_id, start: datetime, end: datetime, histograms: dict[str, dict]) -> tuple[int, dict[str, list[int]]]:
    """Rows of the version's answers logged in ``[start, end)`` and their counts per bin (the score under `SCORE`)."""
    names = [name for name in histograms if name != SCORE]
    totals = {name: np.zeros(len(histogram["counts"]), dtype=np.int64) for name, histogram in histograms.items()}
    rows = (
        PredictionLog.objects.filter(model_version_id=model_version_id, role__in=ANSWERING_ROLES, created_at__gte=start, created_at__lt=end)
        .annotate(raw=Cast("features", output_field=TextField()))  # orjson parses the text ~5x faster than json
        .values_list("raw", "score")
    )
    seen = 0
    chunk: list = []

    def flush() -> None:
        matrix = builder.feature_matrix((orjson.loads(raw) for raw, _ in chunk), names)
        for index, name in enumerate(names):
            totals[name] += bin_counts(matrix[:, index], histograms[name]["edges"])
        if SCORE in histograms:
            totals[SCORE] += bin_counts(np.asarray([score for _, score in chunk], dtype=np.float64), histograms[SCORE]["edges"])
        chunk.clear()

    for row in rows.iterator(chunk_size=CHUNK):
        chunk.append(row)
        seen += 1
        if len(chunk) >= CHUNK:
            flush()
    if chunk:
        flush()
    return seen, {name: [int(count) for count in counts] for name, counts in totals.items()}


def _previous_counts(previous: DriftWindow) -> dict[str, list[int]]:
    return {SCORE if m.is_score else m.feature: m.counts for m in previous.measurements.all()}


@transaction.atomic
def drift_window_evaluate(*, model_version: ModelVersion, baseline: DriftBaseline, end: datetime) -> DriftWindow:
    """Count and judge the version's window ending at ``end`` (from the previous window when it can) and store it."""
    started = time.perf_counter()
    start = end - timedelta(seconds=settings.DRIFT_WINDOW_SECONDS)
    histograms = monitored(baseline)
    if baseline.score:
        histograms[SCORE] = baseline.score
    previous = (
        DriftWindow.objects.filter(model_version=model_version, baseline=baseline, window_end__lte=end, window_end__gt=start)
        .order_by("-window_end")
        .first()
    )
    counts = None
    if previous is not None and previous.window_start <= start:
        before = _previous_counts(previous)
        if set(before) == set(histograms):
            added_rows, added = _count(model_version.pk, previous.window_end, end, histograms)
            removed_rows, removed = _count(model_version.pk, previous.window_start, start, histograms)
            counts = {name: [b + a - r for b, a, r in zip(before[name], added[name], removed[name], strict=True)] for name in histograms}
            rows, read = previous.rows + added_rows - removed_rows, added_rows + removed_rows
            logged = rows_logged(
                product=model_version.product, model_version_id=model_version.pk, roles=ANSWERING_ROLES, since=start, until=end
            )
            if rows != logged:
                counts = None  # a late row: count afresh
    incremental = counts is not None
    if counts is None:
        rows, counts = _count(model_version.pk, start, end, histograms)
        read = rows
    judged = rows >= settings.DRIFT_MIN_ROWS
    values = {name: psi(histograms[name]["counts"], counts[name]) if judged else None for name in histograms}
    feature_values = [value for name, value in values.items() if name != SCORE and value is not None]
    window = DriftWindow.objects.create(
        product=model_version.product,
        model_version=model_version,
        baseline=baseline,
        window_start=start,
        window_end=end,
        rows=rows,
        rows_read=read,
        incremental=incremental,
        max_psi=max(feature_values) if feature_values else None,
        duration_ms=0.0,
    )
    DriftMeasurement.objects.bulk_create(
        DriftMeasurement(window=window, feature=name, is_score=name == SCORE, psi=values[name], counts=counts[name]) for name in histograms
    )
    window.duration_ms = (time.perf_counter() - started) * 1000
    DriftWindow.objects.filter(pk=window.pk).update(duration_ms=window.duration_ms)
    metrics.publish(model_version=model_version, values=values, score_key=SCORE)
    return window


def watched_models() -> list[ModelVersion]:
    """The versions whose inputs are watched: every product's production version and its active canary."""
    models = list(ModelVersion.objects.filter(status=ModelStatus.PRODUCTION).order_by("product"))
    models += [config.canary_model for config in registry.active_canaries()]
    return models


def drift_evaluate(*, now: datetime | None = None) -> list[DriftWindow]:
    """One drift evaluation of every watched version (one failing version does not stop the others)."""
    now = now or timezone.now()
    end = now - timedelta(seconds=settings.DRIFT_LAG_SECONDS)
    windows = []
    for model_version in watched_models():
        try:
            baseline = drift_baseline_ensure(model_version=model_version)
            if baseline is not None:
                windows.append(drift_window_evaluate(model_version=model_version, baseline=baseline, end=end))
        except Exception:
            logger.exception("drift evaluation of %s failed", model_version)
    DriftWindow.objects.filter(window_end__lt=now - timedelta(days=settings.DRIFT_HISTORY_DAYS)).delete()
    return windows
