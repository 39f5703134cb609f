"""The serving path's behaviour: decisions, explanations, cache, canary, fallback and shadow."""

import math
import threading
import time

import pytest
from prometheus_client import REGISTRY

from audit import writer
from audit.models import PredictionLog
from inference import cache, routing, services, shadow
from inference.decisions import decide
from inference.runtime import runtime
from inference.validation import InferRequest, feature_row
from mlops import services as registry
from mlops.demo import PRODUCT

pytestmark = pytest.mark.django_db(transaction=True)


def _sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(("score", "decision"), [(0.5, "block"), (0.9, "block"), (0.35, "review"), (0.3499, "allow"), (0.0, "allow")])
def test_decision_thresholds(score, decision):
    assert decide(score, 0.5) == decision


def test_the_decision_uses_the_model_versions_threshold(serving, events):
    for i, features in enumerate(events[:40]):
        prediction = services.predict(event_id=f"e{i}", product=PRODUCT, features=features)
        assert prediction.decision == decide(prediction.score, serving.threshold)


def test_linear_explanation_is_the_logit_decomposition(serving, events):
    """For the logistic regression, logit(score) - sum(contributions) is the same for every event (the intercept)."""
    model = runtime.peek().routes[PRODUCT].production
    assert model.explainer.method == "linear"
    intercepts = []
    for features in events:
        row = feature_row(features, model.feature_names, model.dtype)
        score = float(model.run(row)[0])
        if 0.01 < score < 0.99:  # the session answers in float32: logits of extreme scores are imprecise
            intercepts.append(math.log(score / (1 - score)) - float(model.contributions(row)[0].sum()))
    assert len(intercepts) >= 5
    assert max(intercepts) - min(intercepts) < 1e-3 * max(1.0, abs(intercepts[0]))


def test_explanation_summary_is_at_most_five_features_by_magnitude(serving, validated, events):
    gbdt = validated("gbdt")
    registry.model_version_promote(model_version_id=gbdt.pk, user=None, reason="explain gbdt")
    runtime.refresh()
    prediction = services.predict(event_id="e", product=PRODUCT, features=events[0])
    assert prediction.model.explainer.method == "substitution"
    summary = prediction.explain_summary
    assert 1 <= len(summary) <= 5
    magnitudes = [abs(entry["contribution"]) for entry in summary]
    assert magnitudes == sorted(magnitudes, reverse=True)
    assert {entry["feature"] for entry in summary} <= set(events[0])
    importances = [entry["importance"] for entry in summary]  # seed 001's field: a share of the whole
    assert importances == sorted(importances, reverse=True) and 0 < sum(importances) <= 1.0001


def test_a_repeated_request_is_a_logged_cache_hit(serving, events):
    first = services.predict(event_id="a", product=PRODUCT, features=events[0])
    reordered = dict(reversed(list(events[0].items())))  # same vector, other JSON order
    second = services.predict(event_id="b", product=PRODUCT, features=reordered)
    assert (first.cached, second.cached) == (False, True)
    assert (second.score, second.explain_summary) == (first.score, first.explain_summary)
    assert writer.lookup(second.prediction_id)["cached"] is True
    writer.flush(10)
    assert PredictionLog.objects.get(pk=second.prediction_id).cached is True


def test_concurrent_identical_requests_run_the_model_once(serving, events):
    model = runtime.peek().routes[PRODUCT].production
    misses = _sample("mlops_inference_cache_total", product=PRODUCT, model=model.label, result="miss")
    barrier = threading.Barrier(8)
    results = []

    def call(n):
        barrier.wait()
        results.append(services.predict(event_id=f"s{n}", product=PRODUCT, features=events[5]))

    threads = [threading.Thread(target=call, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and len({r.score for r in results}) == 1
    assert _sample("mlops_inference_cache_total", product=PRODUCT, model=model.label, result="miss") == misses + 1


def test_canary_routing_follows_the_event_bucket(serving, validated, events):
    gbdt = validated("gbdt")
    registry.canary_set(product=PRODUCT, canary_model_id=gbdt.pk, canary_percent=30, user=None, reason="test")
    runtime.refresh()
    for i in range(60):
        event_id = f"evt-{i}"
        prediction = services.predict(event_id=event_id, product=PRODUCT, features=events[i])
        expected = "canary" if routing.in_canary(PRODUCT, event_id, 3_000) else "production"
        assert prediction.role == expected
        assert prediction.model.id == (str(gbdt.pk) if expected == "canary" else str(serving.pk))


def test_a_failing_canary_falls_back_to_production_and_is_counted(serving, push_misbehaving, events):
    failing = push_misbehaving("failing")
    registry.canary_set(product=PRODUCT, canary_model_id=failing.pk, canary_percent=100, user=None, reason="test")
    runtime.refresh()
    before = _sample("mlops_inference_canary_fallbacks_total", product=PRODUCT, reason="error")
    prediction = services.predict(event_id="e1", product=PRODUCT, features=events[0])
    assert prediction.role == "production" and prediction.model.id == str(serving.pk)
    assert prediction.fallback_from.id == str(failing.pk) and prediction.fallback_reason == "error"
    assert _sample("mlops_inference_canary_fallbacks_total", product=PRODUCT, reason="error") == before + 1
    record = writer.lookup(prediction.prediction_id)
    assert (str(record["fallback_from_id"]), record["fallback_reason"]) == (str(failing.pk), "error")


def test_a_canary_that_times_out_is_cancelled_and_falls_back(serving, push_misbehaving, events, settings):
    slow = push_misbehaving("slow")
    settings.INFERENCE_MODEL_TIMEOUTS_MS = {f"{PRODUCT}/slow": 50}
    registry.canary_set(product=PRODUCT, canary_model_id=slow.pk, canary_percent=100, user=None, reason="test")
    runtime.refresh()
    features = max(events, key=lambda f: f["mean_radius"])  # the slow model's run time grows with it (about 1 s here)
    started = time.perf_counter()
    prediction = services.predict(event_id="e1", product=PRODUCT, features=features)
    assert time.perf_counter() - started < 0.5  # generous: the cancellation lands about 50 ms in
    assert prediction.role == "production" and prediction.fallback_reason == "timeout"


def test_batch_runs_each_model_once_and_matches_single_predictions(serving, validated, events):
    gbdt = validated("gbdt")
    registry.canary_set(product=PRODUCT, canary_model_id=gbdt.pk, canary_percent=50, user=None, reason="test")
    runtime.refresh()
    items = [InferRequest(event_id=f"b{i}", product=PRODUCT, features=events[i]) for i in range(30)]
    batch = services.predict_batch(items=items)
    assert {p.role for p in batch} == {"production", "canary"}
    for item, answer in zip(items, batch, strict=True):
        single = services.predict(event_id=item.event_id, product=PRODUCT, features=item.features)
        assert single.cached and single.model.id == answer.model.id
        assert single.score == pytest.approx(answer.score)
        assert single.explain_summary == answer.explain_summary


@pytest.fixture
def slow_shadow(serving, push_misbehaving, settings):
    """``fraud_score``: logreg answers, the slow model shadows every event (about half a second a run)."""
    settings.INFERENCE_MODEL_TIMEOUTS_MS = {f"{PRODUCT}/slow": 10_000}
    slow = push_misbehaving("slow")
    registry.shadow_enable(product=PRODUCT, shadow_model_id=slow.pk, sample_percent=100, user=None, reason="test")
    runtime.refresh()
    return slow


def test_shadow_never_changes_or_delays_the_response(slow_shadow, events):
    baseline = services.predict(event_id="e1", product=PRODUCT, features=events[0])  # before: the same features
    assert runtime.peek().routes[PRODUCT].shadow.id == str(slow_shadow.pk)
    started = time.perf_counter()
    answered = services.predict(event_id="e2", product=PRODUCT, features=events[0])
    elapsed = time.perf_counter() - started
    assert elapsed < 0.2  # the shadow run alone takes about 0.5 s
    assert (answered.model.id, answered.role, answered.score, answered.decision) == (
        baseline.model.id,
        "production",
        baseline.score,
        baseline.decision,
    )
    shadow.reset(wait=True)  # let the shadow finish, then check what it logged
    writer.flush(10)
    row = PredictionLog.objects.get(primary_prediction_id=answered.prediction_id)
    assert row.role == "shadow" and str(row.model_version_id) == str(slow_shadow.pk)
    assert row.score_diff == pytest.approx(abs(answered.score - row.score))
    assert row.diff_class and row.decision_agrees == (row.decision == answered.decision)


def test_a_full_shadow_pool_skips_and_counts(slow_shadow, events, settings):
    settings.INFERENCE_SHADOW_WORKERS = 1
    settings.INFERENCE_SHADOW_QUEUE = 0
    shadow.reset()
    before = _sample("mlops_inference_shadow_skips_total", product=PRODUCT)
    started = time.perf_counter()
    for i in range(3):
        services.predict(event_id=f"e{i}", product=PRODUCT, features=events[i])
    assert time.perf_counter() - started < 0.3
    assert _sample("mlops_inference_shadow_skips_total", product=PRODUCT) == before + 2


def test_the_shared_cache_tier_answers_another_process(serving, events, settings):
    settings.INFERENCE_CACHE_SHARED = True
    cache.reset()
    first = services.predict(event_id="a", product=PRODUCT, features=events[7])
    cache.reset()  # as if another worker, with an empty in-process cache, got the same features
    model = runtime.peek().routes[PRODUCT].production
    shared_hits = _sample("mlops_inference_cache_total", product=PRODUCT, model=model.label, result="shared_hit")
    second = services.predict(event_id="b", product=PRODUCT, features=events[7])
    assert second.cached and (second.score, second.explain_summary) == (first.score, first.explain_summary)
    assert _sample("mlops_inference_cache_total", product=PRODUCT, model=model.label, result="shared_hit") == shared_hits + 1


def test_the_request_path_makes_no_database_query(serving, validated, events, django_assert_num_queries):
    gbdt = validated("gbdt")
    registry.canary_set(product=PRODUCT, canary_model_id=gbdt.pk, canary_percent=50, user=None, reason="test")
    runtime.refresh()
    with django_assert_num_queries(0):
        for i in range(20):
            services.predict(event_id=f"q{i}", product=PRODUCT, features=events[i])
        services.predict_batch(items=[InferRequest(event_id=f"b{i}", product=PRODUCT, features=events[i + 20]) for i in range(10)])


def test_shadow_diff_classes_and_disagreements_are_counted_as_the_log_records_them(serving, validated, events):
    gbdt = validated("gbdt")
    registry.shadow_enable(product=PRODUCT, shadow_model_id=gbdt.pk, sample_percent=100, user=None, reason="test")
    runtime.refresh()
    label = runtime.peek().routes[PRODUCT].shadow.label
    classes = ("minimal", "moderate", "significant")
    before = {c: _sample("mlops_inference_shadow_diffs_total", product=PRODUCT, model=label, diff_class=c) for c in classes}
    disagreed = _sample("mlops_inference_shadow_disagreements_total", product=PRODUCT, model=label)
    for i in range(40):
        services.predict(event_id=f"d{i}", product=PRODUCT, features=events[i])
    shadow.reset(wait=True)
    writer.flush(10)
    rows = PredictionLog.objects.filter(role="shadow", event_id__startswith="d")
    counted = {c: _sample("mlops_inference_shadow_diffs_total", product=PRODUCT, model=label, diff_class=c) - before[c] for c in classes}
    assert counted == {c: rows.filter(diff_class=c).count() for c in classes}
    assert sum(counted.values()) == 40
    disagreements = rows.filter(decision_agrees=False).count()
    assert _sample("mlops_inference_shadow_disagreements_total", product=PRODUCT, model=label) - disagreed == disagreements
