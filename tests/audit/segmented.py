"""A log where the canary is better overall but worse for one segment (a feature named with a space).

Every answer's event has a negative outcome, so each false-positive rate is blocked / answered:

| segment (``mean radius``) | production        | canary            |
|---------------------------|-------------------|-------------------|
| 10 (below the median 15)  | 50 of 500 (10%)   | 20 of 1000 (2%)   |
| 20 (above it)             | 50 of 500 (10%)   | 30 of 100 (30%)   |
| overall                   | 100 of 1000 (10%) | 50 of 1100 (4.5%) |
"""

import uuid
from datetime import timedelta

from django.utils import timezone

from audit.models import Outcome, PredictionLog
from tests.audit.conftest import make_record
from tests.logged import log_rows, record_outcomes

FEATURE = "mean radius"
SEGMENTS = {"fraud_score": [{"feature": FEATURE, "bins": 2}, {"score_band": [0, 0.5, 1]}]}
# (role, radius, answers, blocked)
CELLS = [("production", 10.0, 500, 50), ("production", 20.0, 500, 50), ("canary", 10.0, 1000, 20), ("canary", 20.0, 100, 30)]


def build(production, canary) -> None:
    now = timezone.now()
    rows, outcomes = [], []
    for role, radius, answers, blocked in CELLS:
        version = production if role == "production" else canary
        for index in range(answers):
            block = index < blocked
            event = f"seg-{uuid.uuid4().hex[:16]}"
            record = make_record(
                version,
                event_id=event,
                role=role,
                features={FEATURE: radius, "email": "a@example.com"},
                score=0.9 if block else 0.1,
                decision="block" if block else "allow",
                latency_ms=2.0 + (index % 7) * 0.1,
                created_at=now - timedelta(minutes=5, seconds=index % 200),
            )
            rows.append(PredictionLog(**record))
            outcomes.append(Outcome(product=version.product, event_id=event, label=False, observed_at=now, source="chargebacks"))
    log_rows(rows)
    record_outcomes(outcomes)
