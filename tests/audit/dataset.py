"""A small fixed prediction log whose summary and comparison figures are computed by hand in the tests.

Production (logreg): p1..p4 answered directly, p5 answered after the canary failed over.
Canary (gbdt): c1..c3. Shadows: s1..s3 (gbdt) of p1..p3, s4 (logreg) of c1. One old row
outside every window. Outcomes: e1 F, e2 T then F (latest counts), e3 F, e4 T, e6 F, e7 F.
"""

import uuid
from datetime import timedelta

from django.utils import timezone

from audit.models import Outcome, PredictionLog
from tests.audit.conftest import make_record
from tests.logged import log_rows, record_outcomes

PRODUCT = "fraud_score"


def build(production, canary) -> dict[str, PredictionLog]:
    now = timezone.now()
    rows: dict[str, PredictionLog] = {}

    def add(name, version, role, score, decision, latency, event=None, minutes_ago=10, **extra):
        record = make_record(
            version,
            prediction_id=uuid.uuid4(),
            event_id=event or f"x-{name}",
            role=role,
            score=score,
            decision=decision,
            latency_ms=latency,
            created_at=now - timedelta(minutes=minutes_ago),
            **extra,
        )
        rows[name] = log_rows([PredictionLog(**record)])[0]

    add("p1", production, "production", 0.10, "allow", 1.0, "e1")
    add("p2", production, "production", 0.30, "allow", 2.0, "e2", cached=True)
    add("p3", production, "production", 0.55, "block", 3.0, "e3")
    add("p4", production, "production", 0.80, "block", 4.0, "e4")
    add("p5", production, "production", 0.20, "allow", 10.0, "e5", fallback_from_id=canary.pk, fallback_reason="timeout")
    add("c1", canary, "canary", 0.05, "allow", 5.0, "e6")
    add("c2", canary, "canary", 0.65, "block", 6.0, "e7", cached=True)
    add("c3", canary, "canary", 0.45, "review", 7.0, "e8")

    def shadow(name, version, of, score, decision, diff, diff_class, agrees):
        primary = rows[of]
        add(
            name,
            version,
            "shadow",
            score,
            decision,
            20.0,
            primary.event_id,
            primary_prediction_id=primary.pk,
            score_diff=diff,
            diff_class=diff_class,
            decision_agrees=agrees,
        )

    shadow("s1", canary, "p1", 0.12, "allow", 0.02, "minimal", True)
    shadow("s2", canary, "p2", 0.50, "review", 0.2, "significant", False)
    shadow("s3", canary, "p3", 0.45, "review", 0.1, "moderate", False)
    shadow("s4", production, "c1", 0.07, "allow", 0.02, "minimal", True)
    add("old", production, "production", 0.99, "block", 99.0, "e-old", minutes_ago=3 * 24 * 60)

    def outcome(event, label, minutes_ago=1, source="chargebacks"):
        record_outcomes(
            [Outcome(product=PRODUCT, event_id=event, label=label, observed_at=now - timedelta(minutes=minutes_ago), source=source)]
        )

    outcome("e1", False)
    outcome("e2", True, minutes_ago=5, source="first-look")
    outcome("e2", False, minutes_ago=2)
    outcome("e3", False)
    outcome("e4", True)
    outcome("e6", False)
    outcome("e7", False)
    return rows
