"""The rollout page with Django's test client: what each role sees and may do."""

import uuid

import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from audit.models import PredictionLog
from audit.rollups.histograms import STEP
from mlops import services
from mlops.models import CanaryConfig, RollbackEvent
from tests.logged import log_rows

pytestmark = pytest.mark.django_db

PRODUCT = "fraud_score"


def page_url():
    return reverse("admin:mlops_rollout", args=[PRODUCT])


def action_url(action):
    return reverse("admin:mlops_rollout_action", args=[PRODUCT, action])


def test_the_url_the_model_version_admin_links_to():
    assert page_url() == "/admin/mlops/canaryconfig/rollout/fraud_score/"


def test_ops_see_the_state_and_the_buttons(client, ops_user, canary):
    client.force_login(ops_user)
    page = client.get(page_url())
    html = page.content.decode()
    assert page.status_code == 200
    assert "gbdt@1" in html and "logreg@1" in html
    assert 'id="canary-percent">10%' in html
    assert "Step to 25%" in html and 'data-action="stop"' in html


def test_ops_step_the_canary_with_a_reason(client, ops_user, canary):
    client.force_login(ops_user)
    answer = client.post(action_url("step"), {"step-reason": "10% looked fine"}, follow=True)
    assert CanaryConfig.objects.get(product=PRODUCT).canary_basis_points == 2500
    assert "Canary stepped up. Canary 25%, production 75%." in answer.content.decode()
    assert CanaryConfig.history.filter(product=PRODUCT).first().history_user == ops_user


def test_an_action_without_reason_changes_nothing(client, ops_user, canary):
    client.force_login(ops_user)
    answer = client.post(action_url("step"), {"step-reason": ""}, follow=True)
    assert "Nothing changed (reason: This field is required.)" in answer.content.decode()
    assert CanaryConfig.objects.get(product=PRODUCT).canary_basis_points == 1000


def test_an_illegal_action_shows_the_services_reason(client, ops_user, canary):
    client.force_login(ops_user)
    for _ in range(3):
        client.post(action_url("step"), {"step-reason": "up"})
    answer = client.post(action_url("step"), {"step-reason": "more"}, follow=True)
    assert "Nothing changed: the canary of &#x27;fraud_score&#x27; is at 100%, the last step; promote it instead" in answer.content.decode()


def test_ops_enable_a_shadow_and_start_a_canary(client, ops_user, candidate):
    client.force_login(ops_user)
    client.post(
        action_url("shadow_enable"),
        {"shadow_enable-shadow_model": candidate.pk, "shadow_enable-sample_percent": "20", "shadow_enable-reason": "compare"},
    )
    client.post(action_url("set"), {"set-canary_model": candidate.pk, "set-canary_percent": "10", "set-reason": "go"})
    html = client.get(page_url()).content.decode()
    assert 'id="shadow-source">override' in html
    assert 'id="canary-percent">10%' in html


def test_a_viewer_sees_the_page_without_buttons_and_cannot_post(client, viewer_user, canary):
    client.force_login(viewer_user)
    page = client.get(page_url())
    assert page.status_code == 200
    assert 'id="rollout-actions"' not in page.content.decode()
    assert client.post(action_url("step"), {"step-reason": "sneaky"}).status_code == 403
    assert CanaryConfig.objects.get(product=PRODUCT).canary_basis_points == 1000


def test_unknown_products_and_actions(client, ops_user, canary):
    client.force_login(ops_user)
    assert client.get(reverse("admin:mlops_rollout", args=["nosuch"])).status_code == 404
    assert client.post(action_url("explode"), {"explode-reason": "x"}).status_code == 404
    assert client.get(action_url("step")).status_code == 405


def test_stats_count_requests_errors_and_p95_per_role(client, viewer_user, canary):
    now = timezone.now()
    rows = [
        PredictionLog(
            prediction_id=uuid.uuid4(), event_id=f"e{i}", product=PRODUCT, model_version_id=model_id, role=role, features={}, score=0.1,
            decision="allow", threshold=0.5, latency_ms=latency, fallback_from_id=fallback, created_at=now,
        )
        for i, (model_id, role, latency, fallback) in enumerate(
            [(canary.production_model_id, "production", 4.0, None)] * 18
            + [(canary.canary_model_id, "canary", 9.0, None)] * 2
            + [(canary.production_model_id, "production", 4.0, canary.canary_model_id)]
        )
    ]  # fmt: skip
    log_rows(rows)
    cache.delete(f"rollout-stats:{PRODUCT}")  # the page caches its counters for 2 s
    client.force_login(viewer_user)
    stats = client.get(reverse("admin:mlops_rollout_stats", args=[PRODUCT])).json()
    # p95 from the latency histograms, whose buckets are 9% wide
    assert stats["roles"]["production"] == {"requests": 18, "errors": None, "p95_ms": pytest.approx(4.0, rel=STEP - 1)}
    assert stats["roles"]["canary"] == {"requests": 3, "errors": 1, "p95_ms": pytest.approx(9.0, rel=STEP - 1)}
    assert sum(stats["chart"]["series"]["production"]) == 19
    assert stats["split"] == {"production_percent": 90.0, "canary_percent": 10.0}


def test_rollback_events_show_on_the_page_and_in_their_read_only_admin(client, ops_user, canary):
    RollbackEvent.objects.create(
        product=PRODUCT, model_version_id=canary.canary_model_id, reason="high_latency", canary_basis_points=1000,
        message="p95 30.0 ms above 1.3 x production p95 4.0 ms", created_at=timezone.now(),
    )  # fmt: skip
    client.force_login(ops_user)
    assert "p95 30.0 ms above 1.3 x production p95 4.0 ms" in client.get(page_url()).content.decode()
    ops_user.user_permissions.add(Permission.objects.get(codename="view_rollbackevent"))
    changelist = client.get(reverse("admin:mlops_rollbackevent_changelist"))
    assert changelist.status_code == 200
    assert client.get(reverse("admin:mlops_rollbackevent_add")).status_code == 403


def test_the_rollout_record_lists_link_each_row_to_its_rollout_page(client, admin_user, canary):
    services.shadow_enable(product=PRODUCT, shadow_model_id=canary.canary_model_id, sample_percent=5, user=None, reason="watch")
    services.rollout_rollback(product=PRODUCT, user=None, reason="enough")
    client.force_login(admin_user)
    link = f'<a href="{page_url()}">rollout page</a>'
    for model in ("canaryconfig", "rollbackevent", "shadowoverride"):
        listing = client.get(reverse(f"admin:mlops_{model}_changelist"))
        assert listing.status_code == 200 and link in listing.content.decode(), model


def test_ops_turn_automatic_promotion_on_and_the_page_shows_what_the_guard_waits_for(client, ops_user, canary):
    cache.delete(f"rollout-stats:{PRODUCT}")
    client.force_login(ops_user)

    answer = client.post(action_url("auto_promote"), {"auto_promote-enabled": "on", "auto_promote-reason": "let it climb"}, follow=True)

    html = answer.content.decode()
    config = CanaryConfig.objects.get(product=PRODUCT)
    assert config.auto_promote is True
    assert "Automatic promotion changed." in html
    assert 'id="rollout-guard-metrics"' in html and "needs 500 more requests at 10%" in html
    assert CanaryConfig.history.filter(product=PRODUCT).first().history_change_reason == "let it climb"
    cache.delete(f"rollout-stats:{PRODUCT}")
    guard = client.get(reverse("admin:mlops_rollout_stats", args=[PRODUCT])).json()["guard"]
    assert guard["auto_promote"] is True
    assert [metric["metric"] for metric in guard["metrics"]] == ["error_rate", "false_positive_rate", "shadow_significant_diff", "latency"]


def test_the_guard_section_says_promotion_is_off_by_default(client, viewer_user, canary):
    cache.delete(f"rollout-stats:{PRODUCT}")  # the page caches its counters for 2 s
    client.force_login(viewer_user)

    html = client.get(page_url()).content.decode()

    assert "automatic promotion is off" in html
    assert "judged from 20 requests (0 so far)" in html
