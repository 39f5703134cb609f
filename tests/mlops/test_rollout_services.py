"""Rollout services: the canary ladder, shadow overrides and the states they refuse."""

import pytest

from mlops import services
from mlops.background import config_generation
from mlops.choices import ModelStatus
from mlops.models import CanaryConfig, ModelVersion, RollbackEvent, ShadowOverride
from mlops.selectors import SOURCE_ENVIRONMENT, SOURCE_NONE, SOURCE_OVERRIDE, shadow_effective
from mlops.services import LifecycleError

pytestmark = pytest.mark.django_db

PRODUCT = "fraud_score"


def test_canary_set_routes_the_share_and_marks_the_model_canary(candidate, production_model, ops_user):
    config = services.canary_set(product=PRODUCT, canary_model_id=candidate.pk, canary_percent=12.5, user=ops_user, reason="first look")

    assert (config.production_model_id, config.canary_model_id, config.canary_basis_points) == (production_model.pk, candidate.pk, 1250)
    assert ModelVersion.objects.get(pk=candidate.pk).status == ModelStatus.CANARY
    assert (config.changed_by, config.change_reason) == (ops_user, "first look")
    record = config.history.first()
    assert (record.history_user, record.history_change_reason) == (ops_user, "first look")


def test_canary_changes_bump_the_serving_generation_after_commit(candidate, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        before = config_generation.current()
        services.canary_set(product=PRODUCT, canary_model_id=candidate.pk, canary_percent=10, user=None, reason="go")
    assert config_generation.current() > before


def test_canary_step_climbs_the_ladder_and_refuses_past_the_top(canary):
    shares = [services.canary_step(product=PRODUCT, user=None, reason="healthy").canary_basis_points for _ in range(3)]

    assert shares == [2500, 5000, 10000]
    with pytest.raises(LifecycleError, match="last step; promote"):
        services.canary_step(product=PRODUCT, user=None, reason="more")


def test_canary_step_follows_the_configured_ladder(canary, settings):
    settings.CANARY_LADDER = [5, 10, 20, 100]
    assert services.canary_step(product=PRODUCT, user=None, reason="next").canary_basis_points == 2000


def test_canary_stop_keeps_the_model_and_a_step_restarts_at_the_first_rung(canary):
    stopped = services.canary_stop(product=PRODUCT, user=None, reason="looks off")
    assert (stopped.canary_basis_points, stopped.canary_model_id) == (0, canary.canary_model_id)
    with pytest.raises(LifecycleError, match="already stopped"):
        services.canary_stop(product=PRODUCT, user=None, reason="again")

    restarted = services.canary_step(product=PRODUCT, user=None, reason="fixed")
    assert restarted.canary_basis_points == 1000
    assert restarted.started_at > canary.started_at


def test_canary_promote_makes_the_canary_production_and_clears_the_config(canary, production_model):
    config = services.canary_promote(product=PRODUCT, user=None, reason="all good at 10%")

    assert ModelVersion.objects.get(pk=canary.canary_model_id).status == ModelStatus.PRODUCTION
    assert ModelVersion.objects.get(pk=production_model.pk).status == ModelStatus.ARCHIVED
    assert (config.production_model_id, config.canary_model_id, config.canary_basis_points) == (canary.canary_model_id, None, 0)
    with pytest.raises(LifecycleError, match="has no canary"):
        services.canary_step(product=PRODUCT, user=None, reason="next")


def test_a_new_canary_sends_the_previous_one_back_to_validated(canary, push_demo):
    other = push_demo("logreg", version="2")
    services.model_version_validate(model_version_id=other.pk, user=None, reason="ok")

    services.canary_set(product=PRODUCT, canary_model_id=other.pk, canary_percent=10, user=None, reason="try the other")

    assert ModelVersion.objects.get(pk=canary.canary_model_id).status == ModelStatus.VALIDATED
    assert ModelVersion.objects.get(pk=other.pk).status == ModelStatus.CANARY


@pytest.mark.parametrize("percent", [-1, 100.5, "lots", 12.345])
def test_canary_set_refuses_a_percentage_out_of_range(candidate, percent):
    with pytest.raises(LifecycleError, match="percentage"):
        services.canary_set(product=PRODUCT, canary_model_id=candidate.pk, canary_percent=percent, user=None, reason="x")


def test_canary_set_refuses_the_production_model(production_model):
    with pytest.raises(LifecycleError, match="is the production version"):
        services.canary_set(product=PRODUCT, canary_model_id=production_model.pk, canary_percent=10, user=None, reason="x")


def test_canary_set_refuses_a_model_of_another_product(production_model, push_demo):
    foreign = push_demo("gbdt", product="churn")
    services.model_version_validate(model_version_id=foreign.pk, user=None, reason="ok")
    with pytest.raises(LifecycleError, match="belongs to product 'churn'"):
        services.canary_set(product=PRODUCT, canary_model_id=foreign.pk, canary_percent=10, user=None, reason="x")


def test_canary_set_refuses_an_archived_model(candidate):
    services.model_version_archive(model_version_id=candidate.pk, user=None, reason="retired")
    with pytest.raises(LifecycleError, match="archived"):
        services.canary_set(product=PRODUCT, canary_model_id=candidate.pk, canary_percent=10, user=None, reason="x")


def test_canary_set_refuses_an_unvalidated_candidate(production_model, push_demo):
    fresh = push_demo("gbdt")
    with pytest.raises(LifecycleError, match="validate it"):
        services.canary_set(product=PRODUCT, canary_model_id=fresh.pk, canary_percent=10, user=None, reason="x")


def test_canary_set_refuses_a_product_without_production(push_demo):
    model = push_demo("gbdt")
    services.model_version_validate(model_version_id=model.pk, user=None, reason="ok")
    with pytest.raises(LifecycleError, match="no production version"):
        services.canary_set(product=PRODUCT, canary_model_id=model.pk, canary_percent=10, user=None, reason="x")
    assert not CanaryConfig.objects.exists()


def test_canary_set_refuses_a_production_model_that_is_not_production(candidate, push_demo):
    other = push_demo("logreg", version="9")
    with pytest.raises(LifecycleError, match="is not the production version"):
        services.canary_set(
            product=PRODUCT, canary_model_id=candidate.pk, production_model_id=other.pk, canary_percent=10, user=None, reason="x"
        )


@pytest.mark.parametrize("reason", ["", "   "])
def test_every_change_needs_a_reason(canary, reason):
    with pytest.raises(LifecycleError, match="reason is required"):
        services.canary_step(product=PRODUCT, user=None, reason=reason)
    assert CanaryConfig.objects.get(product=PRODUCT).canary_basis_points == 1000


def test_a_canary_whose_production_changed_cannot_step(canary, push_demo):
    newer = push_demo("logreg", version="3")
    services.model_version_validate(model_version_id=newer.pk, user=None, reason="ok")
    services.model_version_promote(model_version_id=newer.pk, user=None, reason="hotfix")
    with pytest.raises(LifecycleError, match="changed since the canary was set"):
        services.canary_step(product=PRODUCT, user=None, reason="next")


def test_manual_rollback_stops_an_active_canary_and_records_it(canary, ops_user):
    event = services.rollout_rollback(product=PRODUCT, user=ops_user, reason="pager went off")

    assert CanaryConfig.objects.get(product=PRODUCT).canary_basis_points == 0
    assert (event.reason, event.created_by, event.model_version_id, event.canary_basis_points) == (
        "manual",
        ops_user,
        canary.canary_model_id,
        1000,
    )


def test_manual_rollback_without_canary_restores_the_previous_production(canary, production_model):
    services.canary_promote(product=PRODUCT, user=None, reason="ship")
    event = services.rollout_rollback(product=PRODUCT, user=None, reason="bad after promote")

    assert ModelVersion.objects.get(pk=production_model.pk).status == ModelStatus.PRODUCTION
    assert CanaryConfig.objects.get(product=PRODUCT).production_model_id == production_model.pk
    assert RollbackEvent.objects.get() == event


def test_shadow_enable_overrides_the_environment_default(candidate, settings, ops_user):
    settings.SHADOW_MODELS = {PRODUCT: str(candidate.pk)}
    assert shadow_effective(product=PRODUCT).source == SOURCE_ENVIRONMENT

    services.shadow_enable(product=PRODUCT, shadow_model_id=candidate.pk, sample_percent=30, user=ops_user, reason="compare")
    state = shadow_effective(product=PRODUCT)
    assert (state.source, state.enabled, state.shadow_model, state.sample_basis_points) == (SOURCE_OVERRIDE, True, candidate, 3000)

    services.shadow_disable(product=PRODUCT, user=ops_user, reason="enough")
    state = shadow_effective(product=PRODUCT)
    assert (state.source, state.enabled) == (SOURCE_OVERRIDE, False)

    assert services.shadow_clear(product=PRODUCT, user=ops_user, reason="back to default") is True
    assert shadow_effective(product=PRODUCT).source == SOURCE_ENVIRONMENT
    assert [r.history_type for r in ShadowOverride.history.filter(product=PRODUCT).order_by("history_date")] == ["+", "~", "-"]
    assert ShadowOverride.history.filter(product=PRODUCT).latest("history_date").history_user == ops_user


def test_shadow_without_override_or_default_is_none(production_model):
    assert shadow_effective(product=PRODUCT).source == SOURCE_NONE
    assert services.shadow_clear(product=PRODUCT, user=None, reason="nothing") is False


def test_shadow_enable_refuses_production_archived_and_foreign_models(candidate, production_model, push_demo):
    with pytest.raises(LifecycleError, match="production version"):
        services.shadow_enable(product=PRODUCT, shadow_model_id=production_model.pk, user=None, reason="x")
    foreign = push_demo("gbdt", product="churn")
    with pytest.raises(LifecycleError, match="belongs to product"):
        services.shadow_enable(product=PRODUCT, shadow_model_id=foreign.pk, user=None, reason="x")
    services.model_version_archive(model_version_id=candidate.pk, user=None, reason="retired")
    with pytest.raises(LifecycleError, match="archived"):
        services.shadow_enable(product=PRODUCT, shadow_model_id=candidate.pk, user=None, reason="x")
    with pytest.raises(LifecycleError, match="percentage"):
        services.shadow_enable(product=PRODUCT, shadow_model_id=candidate.pk, sample_percent=101, user=None, reason="x")


def test_a_long_reason_is_kept_in_full_in_the_history(canary):
    reason = "incident review: " + "x" * 300
    services.canary_promote(product=PRODUCT, user=None, reason=reason)
    assert CanaryConfig.history.filter(product=PRODUCT).first().history_change_reason == f"canary promoted: {reason}"


def test_every_share_change_starts_a_step_and_the_start_stays(canary):
    stepped = services.canary_step(product=canary.product, user=None, reason="up")

    assert stepped.step_started_at > canary.step_started_at == canary.started_at
    assert stepped.started_at == canary.started_at


def test_a_step_judged_on_a_share_that_moved_meanwhile_is_refused(canary):
    services.canary_step(product=canary.product, user=None, reason="a person stepped")

    with pytest.raises(LifecycleError, match="moved to 25% meanwhile"):
        services.canary_step(product=canary.product, user=None, reason="[rollout guard] too late", from_basis_points=1000)


def test_automatic_promotion_is_switched_with_a_reason_and_a_promotion_clears_it(canary):
    on = services.canary_auto_promote_set(product=canary.product, enabled=True, user=None, reason="opt in")
    with pytest.raises(LifecycleError, match="already on"):
        services.canary_auto_promote_set(product=canary.product, enabled=True, user=None, reason="again")
    promoted = services.canary_promote(product=canary.product, user=None, reason="done")

    assert (on.auto_promote, promoted.auto_promote, promoted.step_started_at) == (True, False, None)
