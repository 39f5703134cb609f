"""The dual-model configuration: service validation, history, admin, demo bootstrap."""

# ruff: noqa: F811  (the tests take fixtures imported from the stream tests' conftest as arguments)

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from mlops import services
from mlops.choices import ModelStatus
from mlops.demo import PRODUCT
from mlops.models import DualModelConfig, ModelVersion
from mlops.services.lifecycle import LifecycleError
from tests.inference.conftest import local_store  # noqa: F401  a store under a short path
from tests.inference.streams.conftest import (  # noqa: F401  the stream tests' models and state, which these configure
    close_pooled_connections,
    model_files,
    register,
    stream_state,
)

pytestmark = pytest.mark.django_db


def test_set_records_who_why_and_history(register):
    fast, full = register("logreg"), register("gbdt")
    user = get_user_model().objects.create_user("ops", password="pw", is_staff=True)
    config = services.dual_model_set(
        product=PRODUCT, fast_model_id=fast.pk, full_model_id=full.pk, fast_timeout_ms=50, full_timeout_ms=900, user=user, reason="try gbdt"
    )
    assert (config.fast_model, config.full_model, config.fast_timeout_ms, config.full_timeout_ms) == (fast, full, 50, 900)
    assert config.changed_by == user and config.change_reason == "try gbdt"
    again = {"fast_model_id": fast.pk, "full_model_id": full.pk, "fast_timeout_ms": 80, "full_timeout_ms": 900}
    services.dual_model_set(product=PRODUCT, **again, user=user, reason="slower p99")
    assert DualModelConfig.objects.count() == 1
    assert [h.history_change_reason for h in DualModelConfig.history.order_by("history_date")] == ["try gbdt", "slower p99"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fast_timeout_ms": 0}, "between 1 and"),
        ({"full_timeout_ms": 70_000}, "between 1 and"),
        ({"same": True}, "both the fast and the full"),
        ({"other_product": True}, "belongs to product"),
        ({"archived": True}, "archived"),
        ({"reason": " "}, "reason is required"),
    ],
)
def test_set_refuses_what_cannot_serve(register, push_demo, change, message):
    fast, full = register("logreg"), register("gbdt")
    if change.get("other_product"):
        full = push_demo("gbdt", product="other_product")
    if change.get("archived"):
        ModelVersion.objects.filter(pk=full.pk).update(status=ModelStatus.ARCHIVED)
    arguments = {
        "product": PRODUCT,
        "fast_model_id": fast.pk,
        "full_model_id": fast.pk if change.get("same") else full.pk,
        "fast_timeout_ms": change.get("fast_timeout_ms", 100),
        "full_timeout_ms": change.get("full_timeout_ms", 1_000),
        "user": None,
        "reason": change.get("reason", "test"),
    }
    with pytest.raises(LifecycleError, match=message):
        services.dual_model_set(**arguments)
    assert not DualModelConfig.objects.exists()


def test_the_admin_changes_it_through_the_service_with_a_reason(register):
    fast, full = register("logreg"), register("gbdt")
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", password="pw"))
    url = "/admin/mlops/dualmodelconfig/add/"
    assert client.get(url).status_code == 200
    form = {"product": PRODUCT, "fast_model": fast.pk, "full_model": full.pk, "fast_timeout_ms": 60, "full_timeout_ms": 700}
    refused = client.post(url, {**form, "full_model": fast.pk, "reason": "oops"})
    assert refused.status_code == 200 and "cannot be both" in refused.content.decode()
    response = client.post(url, {**form, "reason": "from the admin"})
    assert response.status_code == 302
    config = DualModelConfig.objects.get()
    assert config.change_reason == "from the admin" and config.changed_by.username == "root"
    assert client.get("/admin/mlops/dualmodelconfig/").status_code == 200


def test_demo_bootstrap_sets_up_fraud_score_once(local_store):
    from mlops.services.demo import demo_bootstrap

    demo_bootstrap(store=local_store, admin_username="admin", admin_password="admin-password-1")
    config = DualModelConfig.objects.select_related("fast_model", "full_model").get(product=PRODUCT)
    assert (config.fast_model.name, config.full_model.name) == ("logreg", "gbdt")
    report = demo_bootstrap(store=local_store, admin_username="admin", admin_password="admin-password-1")
    assert any("exist (unchanged)" in line for line in report.lines)
    assert DualModelConfig.history.count() == 1
