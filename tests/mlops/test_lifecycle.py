"""Lifecycle services: the transitions a person can make, and the ones the registry refuses."""

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

from mlops import services
from mlops.choices import ModelStatus
from mlops.models import ModelVersion

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_user("alice", password="pw", is_staff=True)


def test_pushed_model_is_a_candidate_with_its_schema_read_from_the_graph(push_demo):
    model = push_demo("logreg")
    assert model.status == ModelStatus.CANDIDATE
    assert len(model.feature_names) == 30
    assert model.feature_names[0] == "mean_radius"
    assert model.output_schema["score_output"] == "probabilities"
    assert len(model.sha256) == 64 and model.size_bytes > 0


def test_promote_archives_the_previous_production_version(push_demo, staff):
    first, second = push_demo("logreg", "1"), push_demo("logreg", "2")
    for model in (first, second):
        services.model_version_validate(model_version_id=model.pk, user=staff, reason="offline AUC ok")
    services.model_version_promote(model_version_id=first.pk, user=staff, reason="first release")
    services.model_version_promote(model_version_id=second.pk, user=staff, reason="better recall")
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == (ModelStatus.ARCHIVED, ModelStatus.PRODUCTION)


def test_every_change_is_in_the_history_with_user_and_reason(push_demo, staff):
    model = push_demo("logreg")
    services.model_version_validate(model_version_id=model.pk, user=staff, reason="offline AUC ok")
    services.model_version_promote(model_version_id=model.pk, user=staff, reason="ship it")
    history = list(model.history.order_by("history_date").values_list("status", "history_user__username", "history_change_reason"))
    assert history[0][0] == ModelStatus.CANDIDATE
    assert history[1:] == [(ModelStatus.VALIDATED, "alice", "offline AUC ok"), (ModelStatus.PRODUCTION, "alice", "ship it")]
    model.refresh_from_db()
    assert (model.changed_by, model.change_reason) == (staff, "ship it")


def test_a_candidate_cannot_be_promoted_without_validation(push_demo):
    model = push_demo("logreg")
    with pytest.raises(services.LifecycleError, match="only validated or canary versions can become production"):
        services.model_version_promote(model_version_id=model.pk, user=None, reason="skip checks")
    model.refresh_from_db()
    assert model.status == ModelStatus.CANDIDATE


def test_a_reason_is_required(push_demo):
    model = push_demo("logreg")
    with pytest.raises(services.LifecycleError, match="reason is required"):
        services.model_version_validate(model_version_id=model.pk, user=None, reason="  ")


def test_production_cannot_be_archived_alone(production_model):
    with pytest.raises(services.LifecycleError, match="only candidate or validated or canary"):
        services.model_version_archive(model_version_id=production_model.pk, user=None, reason="cleanup")


def test_rollback_restores_the_last_good_version(push_demo):
    versions = [push_demo("logreg", str(n)) for n in (1, 2, 3)]
    for model in versions:
        services.model_version_validate(model_version_id=model.pk, user=None, reason="ok")
        services.model_version_promote(model_version_id=model.pk, user=None, reason="release")
    restored = services.model_version_rollback(product="fraud_score", user=None, reason="v3 misbehaves")
    assert restored.pk == versions[1].pk
    # Rolling back again skips v3, which was itself rolled back, and restores v1.
    restored = services.model_version_rollback(product="fraud_score", user=None, reason="v2 misbehaves too")
    assert restored.pk == versions[0].pk
    assert ModelVersion.objects.get(pk=versions[2].pk).rolled_back_at is not None


def test_rollback_without_an_earlier_version_is_refused(production_model):
    with pytest.raises(services.LifecycleError, match="no earlier production version"):
        services.model_version_rollback(product="fraud_score", user=None, reason="panic")


def test_registering_the_same_version_twice_is_refused(push_demo):
    push_demo("logreg", "1")
    with pytest.raises(services.LifecycleError, match="already registered"):
        push_demo("logreg", "1")


@pytest.mark.parametrize(
    ("product", "name", "version"), [("Fraud Score", "logreg", "1"), ("fraud_score", "log reg", "1"), ("fraud_score", "logreg", "../1")]
)
def test_unsafe_names_are_refused(push_demo, product, name, version):
    with pytest.raises(services.LifecycleError, match="must be"):
        push_demo(name="logreg", version=version, product=product) if name == "logreg" else services.model_version_register(
            product=product, name=name, version=version, artifact_uri="file:///x", sha256="0" * 64, size_bytes=1,
            input_schema={}, output_schema={},
        )  # fmt: skip


def test_the_database_refuses_two_production_versions_for_a_product(push_demo):
    first, second = push_demo("logreg", "1"), push_demo("gbdt", "1")
    ModelVersion.objects.filter(pk=first.pk).update(status=ModelStatus.PRODUCTION)
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.filter(pk=second.pk).update(status=ModelStatus.PRODUCTION)


def test_the_database_refuses_a_threshold_outside_0_1(push_demo):
    model = push_demo("logreg")
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.filter(pk=model.pk).update(threshold=1.5)
