"""A candidate scored on logged production traffic: agreement, confusion, score differences, outcome
rates and latency, from real ONNX models whose differences are known, in batched session runs."""

import pytest
from django.utils import timezone

from audit import backtests as audit_backtests
from audit.models import BacktestStatus, Outcome, PredictionLog
from audit.redaction import Redactor
from inference.backtests import backtest_create, backtest_run
from inference.decisions import decide
from tests.audit.conftest import make_record
from tests.backtests.conftest import LABELLED, ROWS, batches

pytestmark = pytest.mark.django_db(transaction=True)


def run(model, **window):
    backtest = backtest_run(backtest_id=backtest_create(model_version_id=model.pk, **window).pk)
    assert backtest.status == BacktestStatus.DONE, backtest.error
    return backtest


def test_an_identical_copy_of_production_agrees_on_every_row_with_no_score_difference(logged, push_copy):
    report = run(push_copy("copy")).report

    assert report["rows"] == {**report["rows"], "considered": ROWS, "scored": ROWS, "skipped": 0}
    assert report["decisions"]["agreement"] == {**report["decisions"]["agreement"], "count": ROWS, "total": ROWS, "value": 1.0}
    assert report["decisions"]["stricter"] == report["decisions"]["more_lenient"] == 0
    assert report["score_diff"]["classes"]["minimal"]["count"] == ROWS
    assert report["score_diff"]["max_absolute_difference"] == pytest.approx(0.0, abs=1e-6)
    outcomes = report["outcomes"]
    assert outcomes["candidate"]["false_positive_rate"] == outcomes["production"]["false_positive_rate"]
    assert outcomes["production"]["labelled"] == LABELLED
    assert outcomes["false_positive_rate_difference"]["difference"] == 0.0


def test_a_shifted_threshold_disagrees_exactly_where_the_decision_rule_says(logged, push_copy, serving):
    lowered = push_copy("lowered", threshold=serving.threshold / 2)
    report = run(lowered).report

    expected = {p: dict.fromkeys(audit_backtests.DECISIONS, 0) for p in audit_backtests.DECISIONS}
    for row in logged:
        expected[row.decision][decide(row.score, lowered.threshold)] += 1
    assert report["decisions"]["confusion"]["counts"] == expected
    disagreeing = sum(n for p, cols in expected.items() for c, n in cols.items() if c != p)
    assert disagreeing > 0
    assert report["decisions"]["agreement"]["count"] == ROWS - disagreeing
    assert report["decisions"]["stricter"] == disagreeing and report["decisions"]["more_lenient"] == 0
    assert report["score_diff"]["max_absolute_difference"] == pytest.approx(0.0, abs=1e-6)  # same scores, other decisions


def test_outcome_rates_of_both_sides_are_counted_on_the_same_labelled_rows(logged, push_copy):
    labels = dict(Outcome.objects.values_list("event_id", "label"))
    report = run(push_copy("gbdt-1", name="gbdt")).report

    negatives = [row for row in logged if labels.get(row.event_id) is False]
    positives = [row for row in logged if labels.get(row.event_id) is True]
    production = report["outcomes"]["production"]
    assert production["labelled"] == LABELLED and production["negatives"] == len(negatives)
    assert production["false_positive_rate"]["count"] == sum(row.decision == "block" for row in negatives)
    assert production["true_positive_rate"]["count"] == sum(row.decision == "block" for row in positives)
    for side in ("production", "candidate"):
        fp = report["outcomes"][side]["false_positive_rate"]
        assert fp["total"] == len(negatives) and fp["low"] <= fp["value"] <= fp["high"]
    difference = report["outcomes"]["false_positive_rate_difference"]
    assert difference["low"] <= difference["difference"] <= difference["high"] and 0 <= difference["p_value"] <= 1


def test_the_rows_are_scored_in_batched_session_runs(logged, push_copy, settings):
    settings.BACKTEST_BATCH_SIZE = 64
    report = run(push_copy("copy")).report

    assert report["rows"]["scored"] == ROWS
    assert report["latency_ms"]["runs"] <= batches(ROWS, 64)
    assert report["latency_ms"]["rows_per_run"]["max"] == 64
    assert report["latency_ms"]["candidate_single_row_ms"]["n"] > 0
    assert report["latency_ms"]["batch_ms_per_row"] > 0


def test_last_and_since_bound_the_rows_replayed(logged, push_copy):
    model = push_copy("copy")
    assert run(model, last=50).report["rows"]["considered"] == 50
    assert run(model, since=timezone.now()).report["rows"]["considered"] == 0


def test_rows_with_features_redaction_dropped_or_hashed_are_skipped_with_the_reason_and_the_features(
    logged, push_copy, settings, writer_factory
):
    names = list(logged[0].features)
    settings.AUDIT_REDACT_DROP = [names[0]]
    production = logged[0].model_version
    dropping = writer_factory(redactor=Redactor(drop=[names[0]]))
    for _ in range(3):
        dropping.submit(make_record(production, features=dict(logged[0].features), score=0.1))
    hashing = writer_factory(redactor=Redactor(hash_keys=[names[1]], hash_key="k"))
    for _ in range(2):
        hashing.submit(make_record(production, features=dict(logged[0].features), score=0.1))
    assert dropping.flush(10) and hashing.flush(10)

    report = run(push_copy("copy")).report
    assert report["rows"]["considered"] == ROWS + 5 and report["rows"]["scored"] == ROWS
    assert report["skipped"]["dropped_by_redaction"]["rows"] == 3
    assert report["skipped"]["dropped_by_redaction"]["features"] == {names[0]: 3}
    assert report["skipped"]["hashed_by_redaction"] == {**report["skipped"]["hashed_by_redaction"], "rows": 2, "features": {names[1]: 2}}


def test_a_product_without_production_traffic_gives_a_zero_row_report_that_does_not_pass(serving, push_copy):
    report = run(push_copy("copy")).report
    assert report["rows"]["scored"] == 0
    assert report["decisions"]["agreement"]["value"] is None
    assert report["verdict"]["passed"] is False


def test_a_model_whose_artifact_cannot_load_fails_the_backtest_with_the_reason(logged, push_copy):
    model = push_copy("copy")
    type(model).objects.filter(pk=model.pk).update(sha256="0" * 64)
    backtest = backtest_run(backtest_id=backtest_create(model_version_id=model.pk).pk)
    assert backtest.status == BacktestStatus.FAILED
    assert "sha256" in backtest.error or "checksum" in backtest.error


def test_the_log_is_left_alone(logged, push_copy):
    before = PredictionLog.objects.count()
    run(push_copy("copy"))
    assert PredictionLog.objects.count() == before
