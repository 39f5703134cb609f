"""Where people look: GET /v1/drift/{product}, the admin drift page, the model list's column, the metrics."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from audit.drift import services
from mlops.demo import PRODUCT
from mlops.security.authentication import api_keys
from mlops.services import api_key_create
from tests.drift.conftest import SHIFTED, log, traffic

pytestmark = pytest.mark.django_db


@pytest.fixture
def evaluated(watched, reference_data):
    """Two evaluated windows of ``fraud_score``: the second with one feature shifted."""
    now = timezone.now()
    log(watched, traffic(reference_data, 600), at=now - timedelta(minutes=2), spread=timedelta(minutes=5))
    services.drift_evaluate(now=now - timedelta(minutes=2))
    log(watched, traffic(reference_data, 1500, seed=5, shift=SHIFTED), at=now - timedelta(seconds=10), spread=timedelta(minutes=1))
    services.drift_evaluate(now=now)
    return watched


def _key(role: str) -> dict:
    _, key = api_key_create(client=f"drift-{role}", role=role)
    api_keys.invalidate()
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


def test_the_api_answers_the_current_psi_per_feature_the_score_the_window_and_the_baseline(evaluated, settings):
    response = Client().get(f"/v1/drift/{PRODUCT}", **_key("viewer"))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"product", "window_seconds", "interval_seconds", "thresholds", "models"}
    assert body["thresholds"] == {"moderate": 0.1, "significant": 0.25} and body["window_seconds"] == settings.DRIFT_WINDOW_SECONDS
    (model,) = body["models"]
    assert model["model"] == "logreg@1" and model["status"] == "production" and model["model_id"] == str(evaluated.pk)
    assert model["baseline"]["source"] == "reference" and model["baseline"]["rows"] == 569
    assert model["window"]["rows"] == 2100 and model["window"]["incremental"] is True
    assert set(model["score"]) == {"psi", "level"} and model["score"]["psi"] is not None
    assert model["features"][0] == {
        "name": SHIFTED,
        "monitored": True,
        "reason": None,
        "psi": pytest.approx(model["features"][0]["psi"]),
        "level": "significant",
    }
    values = [f["psi"] for f in model["features"]]
    assert values == sorted(values, reverse=True) and len(values) == 30


def test_the_api_answers_404_for_an_unknown_product(evaluated):
    response = Client().get("/v1/drift/no_such_product", **_key("viewer"))
    assert response.status_code == 404 and response.json()["error"]["code"]


def test_the_api_refuses_a_role_without_read_models(evaluated):
    response = Client().get(f"/v1/drift/{PRODUCT}", **_key("inference_client"))
    assert response.status_code == 403


def test_a_product_not_evaluated_yet_has_no_window(watched):
    (model,) = Client().get(f"/v1/drift/{PRODUCT}", **_key("viewer")).json()["models"]
    assert model["window"] is None and model["baseline"] is None and all(f["psi"] is None for f in model["features"])


def _staff(role: str) -> Client:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(f"staff-{role}", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client = Client()
    client.force_login(user)
    return client


def test_the_admin_page_sorts_features_by_psi_and_draws_both_histograms_and_the_history(evaluated):
    response = _staff("viewer").get(f"/admin/audit/driftwindow/product/{PRODUCT}/")
    assert response.status_code == 200
    html = response.content.decode()
    table = html[html.index('id="drift-features"') :]
    assert table.index(SHIFTED) < table.index("mean_texture")  # the shifted feature first: sorted by PSI
    assert 'class="feature selected"' in table  # the top feature is selected by default
    chart = html[html.index('id="histogram-chart"') : html.index("</svg>", html.index('id="histogram-chart"'))]
    assert chart.count('class="bar-baseline"') == 12 and chart.count('class="bar-live"') == 12  # 10 bins + 2 overflow
    history = html[html.index('id="psi-chart"') :]
    assert history.count("<circle") == 2  # one point per stored window


def test_the_admin_page_shows_the_score_when_asked(evaluated):
    response = _staff("viewer").get(f"/admin/audit/driftwindow/product/{PRODUCT}/?feature=__score__")
    assert response.status_code == 200 and 'class="score selected"' in response.content.decode()


def test_the_admin_page_needs_the_view_permission(evaluated):
    assert _staff("inference_client").get(f"/admin/audit/driftwindow/product/{PRODUCT}/").status_code == 403


def test_the_model_list_has_a_drift_column(evaluated, push_demo):
    push_demo("gbdt")  # a candidate: not watched
    html = _staff("viewer").get("/admin/mlops/modelversion/").content.decode()
    assert "Drift (max PSI)" in html
    assert f"/admin/audit/driftwindow/product/{PRODUCT}/?model={evaluated.pk}" in html
    assert f"significant</span> ({SHIFTED})" in html


def test_the_metrics_carry_the_psi_of_each_feature_and_of_the_score(evaluated, api):
    text = api.get("/metrics").content.decode()
    assert f'mlops_feature_drift_psi{{feature="{SHIFTED}",model="logreg@1",product="{PRODUCT}"}}' in text
    assert f'mlops_score_drift_psi{{model="logreg@1",product="{PRODUCT}"}}' in text
