"""One definition of model health: the rollout guard, the comparison page, ``GET /v1/audit/compare`` and
the rollout page report the same numbers for the same canary and window (`audit.selectors.health`)."""

import random
import re
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from audit.guard import judge
from audit.guard.services import canary_assess, rollout_guard_evaluate
from audit.models import Outcome, PredictionLog
from mlops.models import CanaryConfig, RollbackEvent
from tests.audit.conftest import make_record
from tests.audit.test_api import client_for
from tests.audit.test_compare import drawn_intervals
from tests.logged import log_rows, record_outcomes

pytestmark = pytest.mark.django_db

PRODUCT = "fraud_score"


def build_log(production, canary) -> None:
    """Fifty minutes of a canary at 25 %: answers of both sides, failovers, the canary model's shadow runs
    beside production, and outcomes, some of them late corrections and some naming another prediction."""
    now = timezone.now()
    draw = random.Random(16)
    rows, outcomes = [], []

    def answer(version, role, **extra) -> PredictionLog:
        score = draw.random()
        row = PredictionLog(
            **make_record(
                version,
                role=role,
                score=score,
                decision="block" if score >= 0.6 else "review" if score >= 0.4 else "allow",
                latency_ms=draw.uniform(1, 6 if role == "production" else 9),
                cached=draw.random() < 0.1,
                created_at=now - timedelta(minutes=draw.uniform(1, 50)),
                **extra,
            )
        )
        rows.append(row)
        return row

    for _ in range(150):
        primary = answer(production, "production")
        if draw.random() < 0.4:  # the canary model shadowing production
            diff_class = draw.choice(["minimal", "minimal", "moderate", "significant"])
            answer(
                canary,
                "shadow",
                event_id=primary.event_id,
                primary_prediction_id=primary.prediction_id,
                score_diff=0.3,
                diff_class=diff_class,
                decision_agrees=diff_class != "significant",
            )
    for _ in range(50):
        answer(canary, "canary")
    for _ in range(14):  # canary attempts that failed over to production
        answer(production, "production", fallback_from_id=canary.pk, fallback_reason="error")
    for row in rows:
        if row.role == "shadow" or draw.random() < 0.3:
            continue
        label = draw.random() < 0.35
        outcomes.append(Outcome(product=PRODUCT, event_id=row.event_id, label=label, observed_at=now - timedelta(minutes=1), source="a"))
        if draw.random() < 0.1:  # a later correction: the latest outcome counts
            outcomes.append(Outcome(product=PRODUCT, event_id=row.event_id, label=not label, observed_at=now, source="b"))
        elif draw.random() < 0.05:  # about another prediction of the event: not this row's
            outcomes.append(
                Outcome(product=PRODUCT, event_id=row.event_id, prediction_id=uuid.uuid4(), label=not label, observed_at=now, source="c")
            )
    log_rows(rows)
    record_outcomes(outcomes)


@pytest.fixture
def canary_config(production_version, canary_version):
    started = timezone.now() - timedelta(hours=1)
    return CanaryConfig.objects.create(
        product=PRODUCT,
        production_model=production_version,
        canary_model=canary_version,
        canary_basis_points=2500,
        started_at=started,
        step_started_at=started,
        auto_promote=True,
    )


@pytest.fixture
def staff(client):
    user = User.objects.create_user("one-definition", password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_predictionlog", "view_canaryconfig", "view_modelversion", "manage_rollout"])
    )
    client.force_login(user)
    return client


def test_guard_comparison_api_and_rollout_page_report_the_same_numbers(settings, staff, canary_config):
    build_log(canary_config.production_model, canary_config.canary_model)
    settings.ROLLOUT_STATS_MINUTES = 60  # the rollout page's window: the canary's hour, like the others

    guard = canary_assess(canary_config, now=timezone.now(), limits=judge.thresholds()).observations
    answer = client_for("auditor").get("/v1/audit/compare", {"product": PRODUCT, "window": "1h"})
    assert answer.status_code == 200
    api = answer.json()
    html = staff.get(reverse("admin:audit_predictionlog_compare"), {"product": PRODUCT, "window": "1h"}).content.decode()
    cache.delete(f"rollout-stats:{PRODUCT}")
    rollout = staff.get(reverse("admin:mlops_rollout_stats", args=[PRODUCT])).json()

    canary, production = api["canary"], api["production"]
    # Requests, failovers and the p95 of each side.
    assert (guard["canary"]["requests"], guard["canary"]["answered"], guard["canary"]["failovers"]) == (64, 50, 14)
    assert (canary["requests"], canary["answered"], canary["failovers"]) == (64, 50, 14)
    assert rollout["roles"]["canary"]["requests"] == 64 and rollout["roles"]["canary"]["errors"] == 14
    assert guard["production"]["answered"] == production["answered"] == rollout["roles"]["production"]["requests"] == 150
    assert guard["canary"]["p95_ms"] == pytest.approx(canary["latency_ms"]["p95"]) == pytest.approx(rollout["roles"]["canary"]["p95_ms"])
    assert guard["production"]["p95_ms"] == pytest.approx(production["latency_ms"]["p95"])
    assert production["latency_ms"]["p95"] == pytest.approx(rollout["roles"]["production"]["p95_ms"])
    assert f'<td class="num requests">{canary["requests"]} ({canary["answered"]})</td>' in html
    # Outcomes by the one rule: the same negatives and false positives for the guard and the comparison.
    assert guard["canary"]["negatives"] == canary["outcomes"]["negatives"] > 0
    assert guard["canary"]["false_positives"] == canary["outcomes"]["false_positives"]
    assert guard["production"]["negatives"] == production["outcomes"]["negatives"] > 0
    fp = api["evidence"]["false_positive_rate"]
    assert drawn_intervals(html, "rate-false_positive_rate")["canary"] == pytest.approx(
        (fp["a"]["value"], fp["a"]["low"], fp["a"]["high"]), rel=1e-5
    )
    # The canary model's shadow runs: the same significant differences everywhere.
    significant = canary["shadow"]["significant_rate"]
    assert (guard["canary"]["shadow_significant"], guard["canary"]["shadow_classified"]) == (significant["count"], significant["total"])
    assert significant["total"] > 0
    error = canary["error_rate"]
    assert drawn_intervals(html, "row-error-rate")["canary"] == pytest.approx((error["value"], error["low"], error["high"]), rel=1e-5)

    # 14 failovers in 64 requests is shown above the 5 % limit: the rollback records these same counts.
    (verdict,) = rollout_guard_evaluate()
    assert verdict.result == "rolled_back"
    event = RollbackEvent.objects.get()
    assert event.measured["metric"] == "error_rate"
    assert event.measured["statistic"]["count"] == canary["failovers"]
    assert event.measured["statistic"]["total"] == canary["requests"]
    assert event.measured["observations"]["canary"]["negatives"] == canary["outcomes"]["negatives"]
    assert re.search(r"14/64|14 of 64", event.message), event.message
