"""The drift job on logged rows: the reference's own traffic is stable, one shifted feature is flagged, windows are incremental."""

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.drift import services
from audit.drift.selectors import product_drift
from audit.models import DriftMeasurement, DriftWindow
from tests.drift.conftest import SHIFTED, log, traffic

pytestmark = pytest.mark.django_db


def _psi(window: DriftWindow) -> dict:
    return {m.feature: m.psi for m in window.measurements.filter(is_score=False)}


def test_traffic_drawn_from_the_reference_keeps_every_feature_under_0_1(watched, reference_data, settings):
    now = timezone.now()
    log(watched, traffic(reference_data, 2000), at=now - timedelta(seconds=30), spread=timedelta(minutes=10))
    (window,) = services.drift_evaluate(now=now)
    assert window.rows == 2000
    values = _psi(window)
    assert len(values) == 30 and all(value < settings.DRIFT_PSI_MODERATE for value in values.values()), values


def test_one_feature_shifted_by_one_standard_deviation_is_the_only_significant_one(watched, reference_data, settings):
    now = timezone.now()
    log(watched, traffic(reference_data, 2000, shift=SHIFTED), at=now - timedelta(seconds=30), spread=timedelta(minutes=10))
    (window,) = services.drift_evaluate(now=now)
    significant = {name for name, value in _psi(window).items() if value >= settings.DRIFT_PSI_SIGNIFICANT}
    assert significant == {SHIFTED}
    assert product_drift(product=watched.product)["models"][0]["features"][0]["name"] == SHIFTED  # sorted by PSI


def test_a_window_is_the_previous_one_plus_what_entered_minus_what_left(watched, reference_data, settings):
    settings.DRIFT_WINDOW_SECONDS = 600
    now = timezone.now()
    # 10 minutes of reference traffic, then 2 minutes of shifted traffic while the oldest 2 minutes slide out.
    log(watched, traffic(reference_data, 1000), at=now, spread=timedelta(minutes=10))
    log(watched, traffic(reference_data, 400, seed=2, shift=SHIFTED), at=now + timedelta(minutes=2), spread=timedelta(minutes=2))
    first = services.drift_window_evaluate(model_version=watched, baseline=services.drift_baseline_ensure(model_version=watched), end=now)
    assert not first.incremental and first.rows_read == first.rows == 1000
    later = now + timedelta(minutes=2)
    second = services.drift_window_evaluate(model_version=watched, baseline=first.baseline, end=later)
    assert second.incremental
    assert second.rows_read == 400 + 200  # the rows that entered and the rows that left, not the whole window
    incremental = {(m.feature, m.is_score): m.counts for m in DriftMeasurement.objects.filter(window=second)}
    incremental_psi = _psi(second)
    DriftWindow.objects.all().delete()  # no previous window: the next one counts everything
    recount = services.drift_window_evaluate(model_version=watched, baseline=first.baseline, end=later)
    assert not recount.incremental and recount.rows == second.rows == 1200
    assert {(m.feature, m.is_score): m.counts for m in DriftMeasurement.objects.filter(window=recount)} == incremental
    assert _psi(recount) == pytest.approx(incremental_psi)


def test_a_row_logged_after_its_window_passed_it_is_counted_by_the_next_window(watched, reference_data, settings):
    settings.DRIFT_WINDOW_SECONDS = 600
    now = timezone.now()
    log(watched, traffic(reference_data, 1000), at=now, spread=timedelta(minutes=5))
    first = services.drift_window_evaluate(model_version=watched, baseline=services.drift_baseline_ensure(model_version=watched), end=now)
    assert first.rows == 1000
    # A writer batch that landed late, or a spill file replayed: made inside the counted window, logged after it.
    log(watched, traffic(reference_data, 24, seed=3), at=now - timedelta(seconds=1), spread=timedelta(seconds=10))
    later = now + timedelta(seconds=30)
    log(watched, traffic(reference_data, 10, seed=4), at=later, spread=timedelta(seconds=20))
    second = services.drift_window_evaluate(model_version=watched, baseline=first.baseline, end=later)
    assert (second.rows, second.incremental) == (1034, False)  # counted afresh: the sum had missed the late rows
    third = services.drift_window_evaluate(model_version=watched, baseline=first.baseline, end=later + timedelta(seconds=30))
    assert (third.rows, third.incremental) == (1034, True)
