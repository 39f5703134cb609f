"""The guard's verdict on a canary without acting on it (the product dashboard's), by the guard's own judgement."""

import pytest

from mlops import hooks
from mlops.models import CanaryConfig, RollbackEvent
from tests.audit.test_guard import PRODUCT, log, thresholds  # noqa: F401 - thresholds: autouse, the guard's limits

pytestmark = pytest.mark.django_db


def test_no_active_canary_has_no_verdict(production_model):
    assert hooks.canary_verdict(product=PRODUCT) is None


def test_too_few_requests_are_gathering_evidence(canary):
    log(canary, role="canary", count=5)
    verdict = hooks.canary_verdict(product=PRODUCT)
    assert (verdict["result"], verdict["label"]) == ("insufficient_data", "gathering evidence")
    assert verdict["message"] == "5 canary requests, fewer than 20"


def test_a_healthy_canary_says_how_many_rates_are_judged(canary):
    log(canary, role="production", count=80)
    log(canary, role="canary", count=40, latency_ms=5.5)
    verdict = hooks.canary_verdict(product=PRODUCT)
    assert (verdict["result"], verdict["label"]) == ("healthy", "healthy")
    assert "none shown above its limit" in verdict["message"]


def test_a_failing_canary_would_be_rolled_back_but_is_left_to_the_guard(canary):
    log(canary, role="production", count=60)
    log(canary, role="canary", count=30)
    log(canary, role="production", count=10, fallback=True)
    verdict = hooks.canary_verdict(product=PRODUCT)
    assert (verdict["result"], verdict["label"]) == ("breach", "would roll back")
    assert verdict["message"].startswith("error rate 25.0% (10/40 requests")
    assert CanaryConfig.objects.get(product=PRODUCT).canary_basis_points == 1000 and not RollbackEvent.objects.exists()
