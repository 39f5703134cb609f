"""The rollout guard stops a misbehaving canary from what the prediction log records, leaves a healthy one alone,
and moves an opted-in canary up the ladder once it is shown non-inferior."""

import os
import subprocess
import sys
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from django.core.management import call_command
from django.utils import timezone

from audit.guard import runner, services
from audit.guard.metrics import ROLLBACKS
from audit.models import Outcome, PredictionLog
from audit.rollups.histograms import STEP
from mlops import hooks
from mlops.models import CanaryConfig, RollbackEvent
from tests.logged import log_rows, record_outcomes

pytestmark = pytest.mark.django_db

PRODUCT = "fraud_score"


@pytest.fixture(autouse=True)
def thresholds(settings):
    settings.ROLLOUT_GUARD_MIN_REQUESTS = 20
    settings.ROLLOUT_GUARD_MAX_ERROR_RATE = 0.05
    settings.ROLLOUT_GUARD_LATENCY_RATIO = 1.3
    settings.ROLLOUT_GUARD_LATENCY_MIN_DELTA_MS = 1.0
    settings.ROLLOUT_GUARD_MAX_FP_RATE = 0.1
    settings.ROLLOUT_GUARD_MIN_OUTCOMES = 10
    settings.ROLLOUT_GUARD_MAX_SIGNIFICANT_DIFF_RATE = 0.2
    settings.ROLLOUT_PROMOTE_MIN_REQUESTS = 100
    settings.ROLLOUT_PROMOTE_MIN_OUTCOMES = 40
    settings.ROLLOUT_PROMOTE_MAX_ERROR_RATE = 0.05
    settings.ROLLOUT_PROMOTE_LATENCY_MARGIN = 0.2
    settings.ROLLOUT_PROMOTE_FP_MARGIN = 0.1
    settings.ROLLOUT_PROMOTE_MAX_SIGNIFICANT_DIFF_RATE = 0.1
    settings.CANARY_LADDER = [10, 25, 50, 100]


def log(config, *, role, count, latency_ms=5.0, fallback=False, decision="allow", when=None, diff_class="", **extra):
    """``count`` prediction log rows as the serving path would write them."""
    when = when or timezone.now()
    model_id = config.canary_model_id if role in ("canary", "shadow") else config.production_model_id
    rows = [
        PredictionLog(
            prediction_id=uuid.uuid4(),
            event_id=f"evt-{uuid.uuid4().hex[:12]}",
            product=PRODUCT,
            model_version_id=model_id,
            role=role,
            features={},
            score=0.9 if decision == "block" else 0.1,
            decision=decision,
            threshold=0.5,
            latency_ms=latency_ms,
            fallback_from_id=config.canary_model_id if fallback else None,
            fallback_reason="error" if fallback else "",
            diff_class=diff_class,
            created_at=when,
            **extra,
        )
        for _ in range(count)
    ]
    return log_rows(rows)


def evaluate():
    return services.rollout_guard_evaluate(now=timezone.now() + timedelta(seconds=1))


def test_a_failing_canary_is_stopped_with_a_rollback_event(canary):
    log(canary, role="production", count=60)
    log(canary, role="canary", count=30)
    log(canary, role="production", count=10, fallback=True)  # canary errors that production answered
    before = ROLLBACKS.labels(product=PRODUCT, reason="high_error_rate")._value.get()

    [verdict] = evaluate()

    assert (verdict.result, verdict.reason) == ("rolled_back", "high_error_rate")
    config = CanaryConfig.objects.get(product=PRODUCT)
    assert (config.canary_basis_points, config.canary_model_id) == (0, canary.canary_model_id)
    assert config.change_reason.startswith("[rollout guard] automatic rollback (high_error_rate)")
    event = RollbackEvent.objects.get()
    assert (event.product, event.model_version_id, event.reason, event.canary_basis_points) == (
        PRODUCT,
        canary.canary_model_id,
        "high_error_rate",
        1000,
    )
    measured = event.measured
    assert measured["metric"] == "error_rate"
    assert measured["statistic"] == {"count": 10, "total": 40, "estimate": pytest.approx(0.25)}
    assert 0.05 < measured["interval"]["low"] < 0.25 < measured["interval"]["high"] < 1
    assert measured["interval"]["confidence"] == pytest.approx(0.95)
    assert measured["p_value"] < 0.025  # always-valid, one-sided at half the confidence sequence's 5%
    assert measured["limit"] == 0.05
    assert measured["samples"] == {"canary": 40, "production": 60}
    assert measured["method"].startswith("mixture SPRT")
    assert measured["thresholds"]["max_error_rate"] == 0.05
    # The test ran over the canary's whole run: from its start to the evaluation.
    assert event.window_start == canary.started_at
    assert measured["observations"]["since"] == canary.started_at.isoformat()
    assert ROLLBACKS.labels(product=PRODUCT, reason="high_error_rate")._value.get() == before + 1


def test_a_slow_canary_is_stopped_for_latency(canary, caplog):
    log(canary, role="production", count=50, latency_ms=4.0)
    log(canary, role="canary", count=40, latency_ms=30.0)

    [verdict] = evaluate()

    assert (verdict.result, verdict.reason) == ("rolled_back", "high_latency")
    measured = RollbackEvent.objects.get().measured
    # Percentiles come from the latency histograms (buckets 9% wide).
    assert (measured["canary_p95_ms"], measured["production_p95_ms"]) == pytest.approx((30.0, 4.0), rel=STEP - 1)
    # L = max(1.3 x p95, p95 + 1.0) ms; all 40 canary answers were slower than it.
    assert measured["latency_bound_ms"] == pytest.approx(max(1.3 * measured["production_p95_ms"], measured["production_p95_ms"] + 1.0))
    assert (measured["statistic"]["count"], measured["statistic"]["total"], measured["limit"]) == (40, 40, 0.05)
    assert CanaryConfig.objects.get(product=PRODUCT).canary_basis_points == 0
    assert "rollout guard stopped the canary" in caplog.text


def test_a_healthy_canary_is_left_alone(canary):
    log(canary, role="production", count=80, latency_ms=5.0)
    log(canary, role="canary", count=40, latency_ms=5.5)
    log(canary, role="production", count=1, fallback=True)  # one error in 41 attempts is under 5 %

    [verdict] = evaluate()

    assert verdict.result == "healthy"
    assert CanaryConfig.objects.get(product=PRODUCT).canary_basis_points == 1000
    assert not RollbackEvent.objects.exists()


def test_too_few_requests_are_not_judged(canary):
    log(canary, role="production", count=5, fallback=True)

    [verdict] = evaluate()

    assert verdict.result == "insufficient_data"
    assert CanaryConfig.objects.get(product=PRODUCT).canary_basis_points == 1000


def test_errors_before_the_canary_start_do_not_count(canary):
    log(canary, role="production", count=30, fallback=True, when=canary.started_at - timedelta(seconds=5))
    log(canary, role="canary", count=30)

    [verdict] = evaluate()

    assert verdict.result == "healthy"
    assert verdict.measured["canary"]["failovers"] == 0


def test_every_observation_since_the_start_counts_however_old(canary):
    """No sliding window: errors of an hour ago still count, so the test keeps its validity over the whole run."""
    CanaryConfig.objects.filter(pk=canary.pk).update(started_at=canary.started_at - timedelta(hours=2))
    log(canary, role="production", count=20, fallback=True, when=timezone.now() - timedelta(hours=1))
    log(canary, role="canary", count=20)

    [verdict] = evaluate()

    assert (verdict.result, verdict.reason) == ("rolled_back", "high_error_rate")
    assert RollbackEvent.objects.get().measured["statistic"]["total"] == 40


def test_a_rate_over_its_limit_by_chance_is_not_a_rollback(canary):
    """3 errors in 40 (7.5%) is above 5%, but not shown above it: the old fixed threshold stopped this canary."""
    log(canary, role="canary", count=37)
    log(canary, role="production", count=3, fallback=True)

    [verdict] = evaluate()

    assert verdict.result == "healthy"
    assert CanaryConfig.objects.get(product=PRODUCT).canary_basis_points == 1000


def test_a_canary_blocking_good_events_is_stopped_for_false_positives(canary):
    rows = log(canary, role="canary", count=20, decision="block")
    log(canary, role="canary", count=20)
    record_outcomes(
        [
            Outcome(product=PRODUCT, event_id=row.event_id, prediction_id=row.prediction_id, label=False, observed_at=timezone.now())
            for row in rows[:12]
        ]
    )

    [verdict] = evaluate()

    assert (verdict.result, verdict.reason) == ("rolled_back", "fp_rate_threshold")
    assert RollbackEvent.objects.get().measured["statistic"] == {"count": 12, "total": 12, "estimate": 1.0}


def test_significant_shadow_differences_stop_the_canary(canary):
    log(canary, role="shadow", count=15, diff_class="significant", score_diff=0.5)
    log(canary, role="shadow", count=15, diff_class="minimal", score_diff=0.01)

    [verdict] = evaluate()

    assert (verdict.result, verdict.reason) == ("rolled_back", "shadow_significant_diff")
    assert RollbackEvent.objects.get().measured["statistic"] == {"count": 15, "total": 30, "estimate": 0.5}


def test_a_stopped_canary_is_not_evaluated(canary):
    from mlops import services

    services.canary_stop(product=PRODUCT, user=None, reason="paused")
    log(canary, role="production", count=30, fallback=True)

    assert evaluate() == []


def test_the_command_prints_one_line_per_canary(canary):
    log(canary, role="production", count=30, fallback=True)
    out = StringIO()

    call_command("rollout_guard", "--once", stdout=out)

    assert "fraud_score: canary fraud_score/gbdt@1 rolled back: error rate 100.0%" in out.getvalue()


def test_only_one_worker_gets_each_turn():
    cache.delete(runner.LOCK_KEY)
    assert runner.acquire_turn(5) is True
    assert runner.acquire_turn(5) is False
    cache.delete(runner.LOCK_KEY)


@pytest.fixture
def in_process_guard(settings):
    """The in-process guard switched on, stopped again after the test (with its turn lock released)."""
    settings.ROLLOUT_GUARD_IN_PROCESS = True
    settings.ROLLOUT_GUARD_INTERVAL_SECONDS = 60  # one turn within the test
    cache.delete(runner.LOCK_KEY)
    yield runner.guard
    runner.stop_in_process()
    cache.delete(runner.LOCK_KEY)


@pytest.mark.django_db(transaction=True)  # the guard thread reads the rows on its own connection
def test_a_server_process_runs_the_guard_that_stops_a_failing_canary(canary, in_process_guard):
    log(canary, role="production", count=30, fallback=True)

    hooks.serving_started.send(sender="test")

    assert in_process_guard.wait_for(runner.IDLE, timeout=30)
    assert CanaryConfig.objects.get(product=PRODUCT).canary_basis_points == 0
    assert RollbackEvent.objects.get().reason == "high_error_rate"


def test_a_server_process_does_not_run_the_guard_when_the_setting_is_off(in_process_guard, settings):
    settings.ROLLOUT_GUARD_IN_PROCESS = False

    hooks.serving_started.send(sender="test")

    assert not in_process_guard.started


REPORT_GUARD = "from audit.guard.runner import guard; print(guard.started)"


@pytest.mark.parametrize(
    ("command", "started"),
    [
        ([sys.executable, "-c", f"import mlops.wsgi; {REPORT_GUARD}"], True),  # gunicorn, uWSGI
        ([sys.executable, "-c", f"import mlops.asgi; {REPORT_GUARD}"], True),  # daphne, uvicorn, granian, runserver
        ([sys.executable, "manage.py", "shell", "-c", REPORT_GUARD], False),  # any management command
    ],
    ids=["wsgi", "asgi", "management-command"],
)
def test_only_the_server_entry_points_start_the_in_process_guard(command, started, tmp_path):
    environment = {name: value for name, value in os.environ.items() if name not in ("DATABASE_URL", "REDIS_URL", "DEBUG")}
    environment.update(DJANGO_SETTINGS_MODULE="mlops.settings", VAR_DIR=str(tmp_path), ROLLOUT_GUARD_IN_PROCESS="1")

    result = subprocess.run(command, cwd=django_settings.BASE_DIR, env=environment, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(started)


# --- Automatic promotion ------------------------------------------------------------------------


def healthy_step(config, *, requests=100, negatives=40):
    """A step's worth of traffic of a canary as good as production: answers, negative outcomes it did not block."""
    production = log(config, role="production", count=4 * requests)
    log(config, role="canary", count=requests - negatives)
    judged = log(config, role="canary", count=negatives)
    blocked = log(config, role="production", count=2, decision="block")
    label(judged + production[:negatives] + blocked, False)


def label(rows, value):
    record_outcomes(
        [
            Outcome(product=PRODUCT, event_id=row.event_id, prediction_id=row.prediction_id, label=value, observed_at=timezone.now())
            for row in rows
        ]
    )


def auto_promote(config):
    CanaryConfig.objects.filter(pk=config.pk).update(auto_promote=True)
    return CanaryConfig.objects.get(pk=config.pk)


def test_an_opted_in_canary_shown_non_inferior_climbs_the_ladder_and_is_promoted_by_the_guard(canary):
    from mlops.models import ModelVersion
    from mlops.selectors import rollout_history

    config = auto_promote(canary)
    shares = []
    for _ in range(4):
        healthy_step(config)
        [verdict] = evaluate()
        config = CanaryConfig.objects.get(pk=config.pk)
        shares.append((verdict.result, config.canary_basis_points))

    assert shares == [("stepped", 2500), ("stepped", 5000), ("stepped", 10000), ("promoted", 0)]
    assert config.canary_model_id is None
    assert ModelVersion.objects.get(pk=canary.canary_model_id).status == "production"
    guard_rows = [row for row in rollout_history(product=PRODUCT) if row["who"] == "rollout guard"]
    assert len(guard_rows) == 4
    assert [row["why"].split(" on every")[0] for row in reversed(guard_rows)] == [
        "[rollout guard] non-inferior at 10%",
        "[rollout guard] non-inferior at 25%",
        "[rollout guard] non-inferior at 50%",
        "[rollout guard] canary promoted: non-inferior at 100%",
    ]
    assert "error rate 0/100" in guard_rows[-1]["why"]


def test_each_step_counts_its_minimum_sample_from_the_step_not_the_start(canary):
    config = auto_promote(canary)
    healthy_step(config)
    [first] = evaluate()
    healthy_step(config, requests=30, negatives=10)  # too little at 25%, though plenty since the start

    [second] = evaluate()

    assert (first.result, second.result) == ("stepped", "healthy")
    assert CanaryConfig.objects.get(pk=config.pk).canary_basis_points == 2500


def test_nothing_moves_when_automatic_promotion_is_off(canary):
    healthy_step(canary)

    [verdict] = evaluate()

    assert verdict.result == "healthy"
    config = CanaryConfig.objects.get(pk=canary.pk)
    assert (config.canary_basis_points, config.auto_promote) == (1000, False)


def test_a_canary_not_shown_non_inferior_stays_where_it_is(canary):
    config = auto_promote(canary)
    log(config, role="production", count=400)
    log(config, role="canary", count=96)
    log(config, role="production", count=4, fallback=True)  # 4% errors: under the rollback limit, not shown under 5%
    label(log(config, role="canary", count=40) + log(config, role="production", count=40), False)

    [verdict] = evaluate()

    assert verdict.result == "healthy"
    assert CanaryConfig.objects.get(pk=config.pk).canary_basis_points == 1000


def test_the_rollout_page_says_what_the_guard_waits_for(canary):
    config = auto_promote(canary)
    healthy_step(config)
    evaluate()  # 10% -> 25%
    log(config, role="production", count=100)
    label(log(config, role="canary", count=20), False)
    django_settings.ROLLOUT_PROMOTE_MIN_OUTCOMES = 200

    status = hooks.rollout_guard_status(product=PRODUCT)

    by_metric = {metric["metric"]: metric for metric in status["metrics"]}
    assert status["percent"] == 25 and status["auto_promote"] is True
    assert by_metric["false_positive_rate"]["promotion"] == "needs 180 more outcomes at 25%"
    assert by_metric["error_rate"]["promotion"] == "needs 80 more requests at 25%"
    assert by_metric["shadow_significant_diff"]["promotion"] == "no shadow runs: not needed"
    assert by_metric["error_rate"]["rollback"].startswith("0.0% (sequence 0.0%-")
    assert by_metric["error_rate"]["rollback"].endswith("rolls back if shown above the limit")


def test_the_rollout_page_says_when_a_canary_would_be_rolled_back(canary):
    log(canary, role="canary", count=37)
    log(canary, role="production", count=3, fallback=True)

    status = hooks.rollout_guard_status(product=PRODUCT)

    error = next(metric for metric in status["metrics"] if metric["metric"] == "error_rate")
    assert error["promotion"] == "automatic promotion is off"
    assert "rolls back after ~" in error["rollback"] and "if it stays at 7.5%" in error["rollback"]
