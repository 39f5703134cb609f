"""Where a baseline comes from, in order: the reference file, a backtest's rows, the first N predictions.

And features the log redacts are reported as not monitored.
"""

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from audit.drift import services
from audit.drift.selectors import product_drift
from audit.models import Backtest, BacktestStatus, DriftBaseline
from mlops import services as registry
from mlops.artifacts.stores import ChecksumMismatch
from mlops.demo import PRODUCT
from tests.drift.conftest import SHIFTED, log, traffic

pytestmark = pytest.mark.django_db


@pytest.fixture
def without_reference(production_model):
    """``fraud_score`` in production with the demo logistic regression pushed without a reference."""
    return production_model


def _backtest(model_version, *, last: int) -> Backtest:
    now = timezone.now()
    return Backtest.objects.create(
        model_version=model_version,
        product=model_version.product,
        last=last,
        status=BacktestStatus.DONE,
        finished_at=now,
        report={"window": {"since": None, "until": now.isoformat(), "last": last}},
    )


def test_a_reference_file_comes_first(watched, reference_data, settings):
    settings.DRIFT_BASELINE_PREDICTIONS = 10
    log(watched, traffic(reference_data, 50), at=timezone.now() - timedelta(seconds=5))
    _backtest(watched, last=20)
    baseline = services.drift_baseline_ensure(model_version=watched)
    assert baseline.source == "reference" and baseline.rows == reference_data.shape[0]
    assert baseline.source_detail.endswith("/fraud_score/logreg/1/reference.csv")
    histogram = baseline.features[SHIFTED]
    assert len(histogram["edges"]) == settings.DRIFT_BINS + 1 and len(histogram["counts"]) == settings.DRIFT_BINS + 2
    assert sum(histogram["counts"]) == reference_data.shape[0]
    assert baseline.score is not None and sum(baseline.score["counts"]) == reference_data.shape[0]  # the model scored the reference


def test_without_a_reference_the_rows_a_backtest_replayed(without_reference, push_demo, reference_data, settings):
    settings.DRIFT_BASELINE_PREDICTIONS = 10
    log(without_reference, traffic(reference_data, 80), at=timezone.now() - timedelta(seconds=5))
    candidate = push_demo("logreg", version="2")
    _backtest(candidate, last=50)
    baseline = services.drift_baseline_ensure(model_version=candidate)
    assert baseline.source == "backtest" and baseline.rows == 50
    assert sum(baseline.features[SHIFTED]["counts"]) == 50
    assert sum(baseline.score["counts"]) == 50  # the candidate's own scores of those rows


def test_without_either_the_first_predictions_of_its_production_period(without_reference, reference_data, settings):
    settings.DRIFT_BASELINE_PREDICTIONS = 100
    start = timezone.now() - timedelta(minutes=5)
    log(without_reference, traffic(reference_data, 60), at=start)
    assert services.drift_baseline_ensure(model_version=without_reference) is None  # not enough yet
    log(without_reference, traffic(reference_data, 60, seed=2), at=start + timedelta(minutes=1))
    baseline = services.drift_baseline_ensure(model_version=without_reference)
    assert baseline.source == "predictions" and baseline.rows == 100
    assert baseline.source_detail.startswith("first 100 production answers")


def test_a_baseline_is_made_once(watched):
    first = services.drift_baseline_ensure(model_version=watched)
    assert services.drift_baseline_ensure(model_version=watched).pk == first.pk
    assert DriftBaseline.objects.count() == 1


def test_a_tampered_reference_is_refused_not_passed_over(watched, settings):
    Path(watched.reference_uri.removeprefix("file://")).write_text("mean_radius\n1\n")
    settings.MODEL_CACHE_DIR = str(Path(settings.MODEL_CACHE_DIR) / "fresh")  # nothing verified in the cache either
    with pytest.raises(ChecksumMismatch):
        services.drift_baseline_ensure(model_version=watched)
    assert not DriftBaseline.objects.exists()


def test_features_the_log_redacts_are_reported_as_not_monitored(watched, reference_data, settings):
    settings.AUDIT_REDACT_DROP = ["mean_texture"]
    settings.AUDIT_REDACT_HASH = ["mean_area"]
    now = timezone.now()
    log(watched, traffic(reference_data, 500), at=now - timedelta(seconds=30), redact=["mean_texture"])
    (window,) = services.drift_evaluate(now=now)
    measured = set(window.measurements.filter(is_score=False).values_list("feature", flat=True))
    assert "mean_texture" not in measured and "mean_area" not in measured and len(measured) == 28
    features = {f["name"]: f for f in product_drift(product=PRODUCT)["models"][0]["features"]}
    assert features["mean_texture"]["monitored"] is False and "AUDIT_REDACT_DROP" in features["mean_texture"]["reason"]
    assert features["mean_area"]["monitored"] is False and "AUDIT_REDACT_HASH" in features["mean_area"]["reason"]
    assert features["mean_texture"]["psi"] is None


def test_a_product_without_registered_versions_is_unknown(db):
    assert product_drift(product="nothing") is None


def test_registry_change_keeps_working_without_a_reference(local_store, demo_model_files):
    demo = demo_model_files["logreg"]
    model = registry.model_push(source=Path(demo.path), store=local_store, product="plain", name="logreg", version="1")
    assert model.reference_uri == "" and model.reference_sha256 == ""
