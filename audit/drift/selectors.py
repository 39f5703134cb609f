"""Reads of drift: the current state of a product, a feature's PSI over time, the model list's column."""

from django.conf import settings

from audit.drift.baseline import redacted
from audit.drift.psi import level
from audit.drift.services import SCORE, watched_models
from audit.models import DriftBaseline, DriftMeasurement, DriftWindow
from mlops import selectors as registry
from mlops.choices import ModelStatus
from mlops.models import ModelVersion


def thresholds() -> dict:
    return {"moderate": settings.DRIFT_PSI_MODERATE, "significant": settings.DRIFT_PSI_SIGNIFICANT}


def _level(value):
    return level(value, moderate=settings.DRIFT_PSI_MODERATE, significant=settings.DRIFT_PSI_SIGNIFICANT)


def latest_window(*, model_version_id) -> DriftWindow | None:
    return DriftWindow.objects.filter(model_version_id=model_version_id).order_by("-window_end").first()


def _baseline_summary(baseline: DriftBaseline | None) -> dict | None:
    if baseline is None:
        return None
    return {"source": baseline.source, "detail": baseline.source_detail, "rows": baseline.rows, "created_at": baseline.created_at}


def model_drift(model_version: ModelVersion) -> dict:
    """One watched version's drift: its baseline, its latest window, the PSI of each feature (highest first) and of the score."""
    baseline = DriftBaseline.objects.filter(model_version=model_version).first()
    window = latest_window(model_version_id=model_version.pk) if baseline else None
    measured = {}
    if window is not None:
        measured = {SCORE if m.is_score else m.feature: m for m in window.measurements.all()}
    names = model_version.feature_names
    not_monitored = dict(baseline.not_monitored) if baseline else {}
    if baseline:  # redaction may have been turned on after the baseline was made
        not_monitored.update(redacted(names, drop=settings.AUDIT_REDACT_DROP, hashed=settings.AUDIT_REDACT_HASH))
    features = []
    for name in names:
        if name in not_monitored:
            features.append({"name": name, "monitored": False, "reason": not_monitored[name], "psi": None, "level": None})
        else:
            value = measured[name].psi if name in measured else None
            features.append({"name": name, "monitored": True, "reason": None, "psi": value, "level": _level(value)})
    features.sort(key=lambda f: (not f["monitored"], f["psi"] is None, -(f["psi"] or 0.0), f["name"]))
    score = measured.get(SCORE)
    return {
        "model_id": model_version.pk,
        "model": f"{model_version.name}@{model_version.version}",
        "status": model_version.status,
        "baseline": _baseline_summary(baseline),
        "window": None
        if window is None
        else {
            "start": window.window_start,
            "end": window.window_end,
            "rows": window.rows,
            "evaluated_at": window.evaluated_at,
            "incremental": window.incremental,
        },
        "score": {"psi": score.psi if score else None, "level": _level(score.psi) if score else None},
        "features": features,
    }


def product_drift(*, product: str) -> dict | None:
    """The drift of every watched version of ``product`` (production first), or None for an unknown product."""
    if not registry.product_exists(product=product):
        return None
    models = [m for m in watched_models() if m.product == product]
    models.sort(key=lambda m: m.status != ModelStatus.PRODUCTION)
    return {
        "product": product,
        "window_seconds": settings.DRIFT_WINDOW_SECONDS,
        "interval_seconds": settings.DRIFT_INTERVAL_SECONDS,
        "thresholds": thresholds(),
        "models": [model_drift(m) for m in models],
    }


def feature_history(*, model_version_id, feature: str, is_score: bool = False, limit: int = 200) -> list[tuple]:
    """``(window_end, psi)`` of one feature (or the score) over the stored windows, oldest first."""
    rows = (
        DriftMeasurement.objects.filter(window__model_version_id=model_version_id, feature=feature, is_score=is_score)
        .order_by("-window__window_end")
        .values_list("window__window_end", "psi")[:limit]
    )
    return list(reversed(rows))


def feature_histograms(*, model_version_id, feature: str, is_score: bool = False) -> dict | None:
    """``{"edges", "baseline", "live"}`` counts of one feature (or the score) in the latest window, or None."""
    baseline = DriftBaseline.objects.filter(model_version_id=model_version_id).first()
    window = latest_window(model_version_id=model_version_id)
    if baseline is None or window is None:
        return None
    histogram = baseline.score if is_score else baseline.features.get(feature)
    measurement = window.measurements.filter(feature=feature, is_score=is_score).first()
    if histogram is None or measurement is None:
        return None
    return {"edges": histogram["edges"], "baseline": histogram["counts"], "live": measurement.counts}


def drift_summary(*, model_version_ids) -> dict:
    """Per version id: ``{"max_psi", "level", "feature", "window_end"}`` of its latest window (the model list's column)."""
    out = {}
    for model_version_id in model_version_ids:
        window = latest_window(model_version_id=model_version_id)
        if window is None:
            continue
        top = window.measurements.filter(is_score=False, psi__isnull=False).order_by("-psi").first()
        out[model_version_id] = {
            "max_psi": window.max_psi,
            "level": _level(window.max_psi),
            "feature": top.feature if top else None,
            "window_end": window.window_end,
        }
    return out
