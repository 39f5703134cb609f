"""Fixtures of the rollout tests: a product with production and a validated candidate, users."""

import pytest
from django.contrib.auth.models import Permission

from mlops import services


@pytest.fixture
def candidate(production_model, push_demo):
    """A validated ``gbdt`` version of ``fraud_score``, next to the ``logreg`` production."""
    model = push_demo("gbdt")
    return services.model_version_validate(model_version_id=model.pk, user=None, reason="offline checks passed")


@pytest.fixture
def canary(candidate):
    """``fraud_score`` with ``gbdt`` as canary at 10 %."""
    return services.canary_set(product=candidate.product, canary_model_id=candidate.pk, canary_percent=10, user=None, reason="start")


@pytest.fixture
def ops_user(django_user_model):
    user = django_user_model.objects.create_user("ops", password="ops-password-1", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="mlops", codename__in=["manage_rollout", "view_canaryconfig", "view_modelversion"]
        )
    )
    return user


@pytest.fixture
def viewer_user(django_user_model):
    user = django_user_model.objects.create_user("viewer", password="viewer-password-1", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="mlops", codename__in=["view_canaryconfig", "view_modelversion"])
    )
    return user
