"""Archiving a version stops it serving in every role, or is refused naming the role."""

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from inference.serving_config import serving_config
from mlops import selectors, services
from mlops.choices import ModelStatus
from mlops.models import CanaryConfig, ModelVersion
from mlops.services import LifecycleError

pytestmark = pytest.mark.django_db


@pytest.fixture
def candidate(production_model, push_demo):
    model = push_demo("gbdt")
    return services.model_version_validate(model_version_id=model.pk, user=None, reason="offline checks passed")


@pytest.fixture
def staff(django_user_model):
    user = django_user_model.objects.create_user("archivist", password="archive-password-1", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_modelversion", "manage_lifecycle", "manage_rollout"]))
    return user


def served(product: str = "fraud_score"):
    [config] = [config for config in serving_config() if config.product == product]
    return config


def test_archiving_the_active_canary_stops_it_and_records_why(candidate, staff):
    services.canary_set(product="fraud_score", canary_model_id=candidate.pk, canary_percent=25, user=None, reason="start")
    result = services.model_version_archive(model_version_id=candidate.pk, user=staff, reason="worse offline")
    assert result.stopped == ["canary"]
    assert ModelVersion.objects.get(pk=candidate.pk).status == ModelStatus.ARCHIVED
    config = CanaryConfig.objects.get(product="fraud_score")
    assert config.canary_basis_points == 0
    latest = config.history.first()
    assert (latest.history_user, latest.history_change_reason) == (staff, f"archived {candidate}: worse offline")
    assert served().canary is None
    assert not selectors.active_canaries().exists()


def test_archiving_the_shadow_disables_it_and_records_why(candidate, staff):
    services.shadow_enable(product="fraud_score", shadow_model_id=candidate.pk, user=None, reason="compare")
    result = services.model_version_archive(model_version_id=candidate.pk, user=staff, reason="done comparing")
    assert result.stopped == ["shadow"]
    shadow = selectors.shadow_effective(product="fraud_score")
    assert not shadow.enabled
    assert shadow.override.history.first().history_change_reason == f"archived {candidate}: done comparing"
    assert served().shadow is None


def test_an_environment_shadow_that_names_an_archived_version_never_serves(candidate, settings):
    settings.SHADOW_MODELS = {"fraud_score": str(candidate.pk)}
    assert served().shadow is not None
    result = services.model_version_archive(model_version_id=candidate.pk, user=None, reason="retired")
    assert result.stopped == ["shadow"]  # recorded as a disabling override, over the environment
    assert served().shadow is None


def test_a_canary_row_that_names_an_archived_version_never_routes(candidate):
    services.canary_set(product="fraud_score", canary_model_id=candidate.pk, canary_percent=25, user=None, reason="start")
    # As a promote elsewhere or an old row could leave it: the version is archived under a live row.
    ModelVersion.objects.filter(pk=candidate.pk).update(status=ModelStatus.ARCHIVED)
    assert served().canary is None
    assert not selectors.active_canaries().exists()


def test_archiving_a_dual_model_version_is_refused_naming_the_stream(candidate, production_model):
    services.dual_model_set(
        product="fraud_score", fast_model_id=production_model.pk, full_model_id=candidate.pk,
        fast_timeout_ms=50, full_timeout_ms=500, user=None, reason="dual",
    )  # fmt: skip
    with pytest.raises(LifecycleError, match="is the full model of fraud_score's dual-model stream"):
        services.model_version_archive(model_version_id=candidate.pk, user=None, reason="retired")
    assert ModelVersion.objects.get(pk=candidate.pk).status == ModelStatus.VALIDATED


def test_archiving_a_version_that_serves_nothing_stops_nothing(candidate):
    result = services.model_version_archive(model_version_id=candidate.pk, user=None, reason="retired")
    assert result.stopped == []
    assert str(result) == str(candidate)


def test_the_admin_says_which_roles_the_archive_stopped(candidate, staff):
    services.canary_set(product="fraud_score", canary_model_id=candidate.pk, canary_percent=25, user=None, reason="start")
    services.shadow_enable(product="fraud_score", shadow_model_id=candidate.pk, user=None, reason="compare")
    client = Client()
    client.force_login(staff)
    response = client.post(
        "/admin/mlops/modelversion/",
        {"action": "archive", "_selected_action": [str(candidate.pk)], "apply": "1", "reason": "retired"},
        follow=True,
    )
    messages = [str(message) for message in response.context["messages"]]
    assert messages == [f"Archive: {candidate} (canary and shadow of fraud_score stopped)"]


def test_a_dual_model_stream_refuses_to_serve_a_version_archived_by_a_promote(candidate, production_model, inference_state):
    from inference.streams.dual_models import DualModels

    services.dual_model_set(
        product="fraud_score", fast_model_id=production_model.pk, full_model_id=candidate.pk,
        fast_timeout_ms=50, full_timeout_ms=500, user=None, reason="dual",
    )  # fmt: skip
    services.model_version_promote(model_version_id=candidate.pk, user=None, reason="better")  # archives logreg, the fast model
    route, why = DualModels().route("fraud_score")
    assert route is None
    assert why == f"{production_model} is archived"
