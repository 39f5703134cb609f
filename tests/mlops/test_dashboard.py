"""The admin's front page: the platform's name, one card per product, and its refreshed fragment."""

import re

import pytest
from django.core.cache import cache
from django.test import Client

from audit.rollups.histograms import STEP
from mlops import services
from mlops.admin_site import cards_cache_key
from tests.audit.conftest import make_rows, make_version

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_cards(settings):
    """The cards are shared for 2 s through the cache: each test starts, and reads again, without them."""
    cache.delete(cards_cache_key(settings.DASHBOARD_MINUTES))
    yield lambda: cache.delete(cards_cache_key(settings.DASHBOARD_MINUTES))


@pytest.fixture
def rollout(db):
    """fraud_score: logreg in production, gbdt validated as a canary at 25% (a ladder step) and shadowing."""
    production = make_version("logreg", "1", status="production")
    candidate = make_version("gbdt", "1", status="validated", threshold=0.6)
    services.canary_set(product="fraud_score", canary_model_id=candidate.pk, canary_percent=25, user=None, reason="try it")
    services.shadow_enable(product="fraud_score", shadow_model_id=candidate.pk, user=None, reason="compare")
    return production, candidate


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def card_of(html: str, product: str) -> str:
    start = html.index(f'data-product="{product}"')
    return html[start : html.index("</section>", start)]


def test_the_front_page_carries_the_platforms_name_and_keeps_the_model_lists(viewer_user, rollout):
    html = signed_in(viewer_user).get("/admin/").content.decode()
    assert "<title>Products | MLOps platform</title>" in html
    assert "MLOps platform</a>" in html  # the header
    assert 'href="/admin/mlops/modelversion/"' in html  # the stock model lists


def test_a_card_shows_what_serves_the_product_and_links_to_its_pages(viewer_user, rollout):
    card = card_of(signed_in(viewer_user).get("/admin/").content.decode(), "fraud_score")
    assert "logreg@1" in card
    assert "gbdt@1\n      at 25% (step 2 of 4)" in card
    assert "gathering evidence" in card  # the guard's verdict: too few canary requests yet
    assert "gbdt@1 on 100%" in card
    assert "not measured yet" in card and 'Last rollback</dt>\n    <dd class="rollback">none' in card
    for link in (
        "/admin/mlops/canaryconfig/rollout/fraud_score/",
        "/admin/audit/predictionlog/compare/?product=fraud_score",
        "/live/fraud_score/",
    ):
        assert link in card


def test_the_cards_fragment_counts_the_last_hours_traffic_by_role(viewer_user, rollout, fresh_cards):
    production, candidate = rollout
    client = signed_in(viewer_user)
    before = card_of(client.get("/admin/dashboard/cards/").content.decode(), "fraud_score")
    assert '<td class="requests">0</td>' in before and "no traffic in the last 60 min" in before
    make_rows(production, 30, latency_ms=2.0)
    make_rows(candidate, 10, role="canary", latency_ms=4.0)
    fresh_cards()
    response = client.get("/admin/dashboard/cards/")
    assert "no-cache" in response["Cache-Control"]
    after = card_of(response.content.decode(), "fraud_score")
    assert '<tr class="role-production" data-role="production">\n        <td>production</td>\n        <td class="requests">30</td>' in after
    assert '<td class="requests">10</td>' in after
    # p95 is read from the latency histogram (buckets 9% wide): ten answers of 4.0 ms show as about 4 ms.
    canary_p95 = float(re.search(r'data-role="canary">.*?<td class="p95">([\d.]+) ms', after, re.S).group(1))
    assert canary_p95 == pytest.approx(4.0, rel=STEP - 1)
    assert '<polyline class="role-production"' in after and "production 30" in after and "canary 10" in after


def test_staff_without_the_rollout_view_permission_see_the_model_lists_only(django_user_model, rollout):
    clerk = django_user_model.objects.create_user("clerk", password="clerk-password-1", is_staff=True)
    html = signed_in(clerk).get("/admin/").content.decode()
    assert '<section class="product-card"' not in html and 'id="dashboard-cards"' not in html
    assert 'href="/admin/auth/' not in html  # nor lists the clerk may not see
    assert signed_in(clerk).get("/admin/dashboard/cards/").status_code == 403


def test_the_cards_need_a_staff_session():
    assert Client().get("/admin/dashboard/cards/").status_code == 302


def test_staff_watching_at_once_share_one_computation_of_the_cards(viewer_user, rollout, django_assert_max_num_queries):
    client = signed_in(viewer_user)
    client.get("/admin/dashboard/cards/")
    with django_assert_max_num_queries(4):  # the session, the user and its two kinds of permission: no figures
        client.get("/admin/dashboard/cards/")
