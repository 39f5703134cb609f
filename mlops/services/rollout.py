"""Rollout control: the canary of each product (set, step, stop, promote, roll back, and the rollout
guard's automatic rollback) and its shadow override.

Every change needs a reason, stamps who/when/why on the row, writes a history row and bumps the
serving configuration generation after commit, so every worker picks it up. Changes of a
product's share are conditional updates on the value the caller saw (two people stepping at
once cannot skip a rung); illegal states raise `LifecycleError` with a message a person can
act on.

Percentages are what people and the API speak; rows store basis points (1/100 %) because
routing compares integers.

Every change of the share stamps ``step_started_at``: automatic promotion (``auto_promote``,
opt-in per product) counts its minimum sample at the current step from there. The rollout
guard acts with ``user=None`` and reasons that begin with `GUARD_PREFIX`, which is how the
history says it was the guard.
"""

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from mlops.background import config_generation
from mlops.choices import BASIS_POINTS_MAX, GUARD_PREFIX, ModelStatus
from mlops.models import CanaryConfig, ModelVersion, RollbackEvent, RollbackReason, ShadowOverride
from mlops.observability.tracing import span
from mlops.services.lifecycle import LifecycleError, User, _require_reason, _transition, model_version_promote, model_version_rollback

# History rows keep the reason as text; bound it like the row's own change_reason (500).
HISTORY_REASON_MAX = 500


def _short(reason: str, *, room: int = HISTORY_REASON_MAX) -> str:
    """``reason`` cut to fit history (``room`` is less where the lifecycle prefixes its own words)."""
    room = max(10, room)
    return reason if len(reason) <= room else reason[: room - 1] + "…"


# --- Helpers ----------------------------------------------------------------------------------


def percent_to_basis_points(percent) -> int:
    """``12.5`` -> ``1250``; refuses anything outside 0-100 or finer than a basis point."""
    try:
        value = Decimal(str(percent))
    except (InvalidOperation, ValueError):
        raise LifecycleError(f"percentage {percent!r} is not a number") from None
    if not value.is_finite() or value < 0 or value > 100:
        raise LifecycleError(f"percentage {percent} must be between 0 and 100")
    basis_points = value * 100
    if basis_points != basis_points.to_integral_value():
        raise LifecycleError(f"percentage {percent} is finer than 0.01")
    return int(basis_points.to_integral_value(rounding=ROUND_HALF_UP))


def canary_ladder() -> list[int]:
    """The ladder in basis points, ascending, from the ``CANARY_LADDER`` setting (percentages)."""
    rungs = sorted({percent_to_basis_points(step) for step in settings.CANARY_LADDER})
    return [rung for rung in rungs if rung > 0] or [BASIS_POINTS_MAX]


def _production_of(product: str) -> ModelVersion:
    production = ModelVersion.objects.filter(product=product, status=ModelStatus.PRODUCTION).first()
    if production is None:
        raise LifecycleError(f"product {product!r} has no production version; promote one before starting a canary")
    return production


def serving_model_of(product: str, model_version_id, *, label: str, label_every_error: bool = False) -> ModelVersion:
    """The model version ``model_version_id`` when it may serve ``product``, else `LifecycleError`.

    It must exist, be a version of ``product`` and not be archived. ``label`` names its role
    ("canary", "fast", ...); ``label_every_error`` puts the role before the version in every
    message, for callers that check several versions at once.
    """
    model_version = ModelVersion.objects.filter(pk=model_version_id).first()
    if model_version is None:
        raise LifecycleError(f"{label} model version {model_version_id} does not exist")
    subject = f"{label} model {model_version}" if label_every_error else str(model_version)
    if model_version.product != product:
        raise LifecycleError(f"{subject} belongs to product {model_version.product!r}, not {product!r}")
    if model_version.status == ModelStatus.ARCHIVED:
        raise LifecycleError(f"{subject} is archived; archived versions cannot serve")
    return model_version


def save_product_config(config, *, name: str) -> None:
    """Save a product's configuration row (one per product), then bump the serving generation after commit.

    A product's first change creates its row; when two requests do that at once, the database
    refuses the second, which is told that ``name`` (e.g. "the canary") changed meanwhile.
    """
    try:
        with transaction.atomic():
            config.save()
    except IntegrityError:
        raise LifecycleError(f"{name} of {config.product!r} changed meanwhile; reload and try again") from None
    config_generation.bump_on_commit()


def _locked_config(product: str) -> CanaryConfig:
    config = CanaryConfig.objects.select_for_update().filter(product=product).first()
    if config is None or config.canary_model_id is None:
        raise LifecycleError(f"product {product!r} has no canary")
    return config


def _record_config_history(config_id: int, *, user: User, reason: str) -> CanaryConfig:
    config = CanaryConfig.objects.select_related("production_model", "canary_model").get(pk=config_id)
    CanaryConfig.history.bulk_history_create(
        [config], update=True, default_user=user, default_change_reason=_short(reason), default_date=config.changed_at
    )
    return config


def _move_share(config: CanaryConfig, *, to: int, user: User, reason: str, **fields) -> CanaryConfig:
    """Conditional update of the canary's share from the value just read to ``to``."""
    now = timezone.now()
    updated = CanaryConfig.objects.filter(
        pk=config.pk, canary_model_id=config.canary_model_id, canary_basis_points=config.canary_basis_points
    ).update(canary_basis_points=to, step_started_at=now, changed_by=user, changed_at=now, change_reason=reason, updated_at=now, **fields)
    if updated != 1:
        raise LifecycleError(f"the canary of {config.product!r} changed meanwhile; reload and try again")
    config_generation.bump_on_commit()
    return _record_config_history(config.pk, user=user, reason=reason)


def _check_production_unchanged(config: CanaryConfig) -> None:
    production = _production_of(config.product)
    if config.production_model_id != production.pk:
        raise LifecycleError(
            f"the production version of {config.product!r} changed since the canary was set (now {production}); set the canary again"
        )


def _check_share_unchanged(config: CanaryConfig, expected: int | None) -> None:
    if expected is not None and config.canary_basis_points != expected:
        raise LifecycleError(f"the canary of {config.product!r} moved to {config.canary_percent:g}% meanwhile; nothing changed")


# --- Canary -----------------------------------------------------------------------------------


@transaction.atomic
def canary_set(
    *,
    product: str,
    canary_model_id,
    canary_percent,
    production_model_id=None,
    auto_promote: bool | None = None,
    user: User,
    reason: str,
) -> CanaryConfig:
    """Start (or restart) a canary, or move it: ``canary_percent`` of the product's traffic goes to the canary.

    The production side is the product's production version; ``production_model_id``, when
    given, must name it (a guard against acting on a stale page). The canary must be a
    validated (or already canary) version of the same product; it becomes ``canary``. A canary
    it replaces goes back to ``validated``. ``auto_promote`` (None: as it was, off for a new
    row) lets the rollout guard step and promote it.
    """
    reason = _require_reason(reason)
    basis_points = percent_to_basis_points(canary_percent)
    production = _production_of(product)
    if production_model_id is not None and str(production_model_id) != str(production.pk):
        requested = ModelVersion.objects.filter(pk=production_model_id).first()
        if requested is None:
            raise LifecycleError(f"production model version {production_model_id} does not exist")
        raise LifecycleError(f"{requested} is not the production version of {product!r} ({production} is)")
    canary = serving_model_of(product, canary_model_id, label="canary")
    if canary.pk == production.pk:
        raise LifecycleError(f"{canary} is the production version; the canary must be another version")
    if canary.status not in (ModelStatus.VALIDATED, ModelStatus.CANARY):
        raise LifecycleError(f"{canary} is {canary.status}; validate it before it takes canary traffic")

    config = CanaryConfig.objects.select_for_update().filter(product=product).first()
    # A canary this one replaces goes back to validated: one canary per product at a time.
    other_canaries = ModelVersion.objects.filter(product=product, status=ModelStatus.CANARY).exclude(pk=canary.pk)
    for stale in other_canaries:
        _transition(
            stale.pk,
            allowed=(ModelStatus.CANARY,),
            to=ModelStatus.VALIDATED,
            user=user,
            reason=_short(f"replaced as canary by {canary}: {reason}"),
        )
    if canary.status == ModelStatus.VALIDATED:
        _transition(canary.pk, allowed=(ModelStatus.VALIDATED,), to=ModelStatus.CANARY, user=user, reason=_short(reason))

    now = timezone.now()
    if config is None:
        config = CanaryConfig(product=product)
    # The same canary moved to another share keeps its start (the guard judges it on all its
    # traffic); a new canary, one that was stopped or one beside another production starts now.
    moved = config.canary_model_id == canary.pk and config.production_model_id == production.pk and config.canary_basis_points
    if not moved or config.started_at is None:
        config.started_at = now
    if not moved or config.canary_basis_points != basis_points or config.step_started_at is None:
        config.step_started_at = now
    if auto_promote is not None:
        config.auto_promote = auto_promote
    config.production_model = production
    config.canary_model = canary
    config.canary_basis_points = basis_points
    config.changed_by = user
    config.changed_at = now
    config.change_reason = reason
    config._history_user = user
    config._change_reason = _short(reason)
    save_product_config(config, name="the canary")
    return config


@transaction.atomic
def canary_step(*, product: str, user: User, reason: str, from_basis_points: int | None = None) -> CanaryConfig:
    """Move the canary to the next rung of the ladder (``CANARY_LADDER``, default 10/25/50/100 %).

    A stopped canary restarts at the first rung, with a fresh start time (so the guard judges
    the restarted canary on its own traffic). ``from_basis_points``, when given, is the share
    the caller judged (the rollout guard): a canary moved meanwhile is refused.
    """
    reason = _require_reason(reason)
    config = _locked_config(product)
    _check_share_unchanged(config, from_basis_points)
    _check_production_unchanged(config)
    if config.canary_model.status != ModelStatus.CANARY:
        raise LifecycleError(f"{config.canary_model} is {config.canary_model.status}, no longer a canary; set a new canary")
    higher = [rung for rung in canary_ladder() if rung > config.canary_basis_points]
    if not higher:
        raise LifecycleError(f"the canary of {product!r} is at {config.canary_percent:g}%, the last step; promote it instead")
    extra = {"started_at": timezone.now()} if config.canary_basis_points == 0 else {}
    return _move_share(config, to=higher[0], user=user, reason=reason, **extra)


@transaction.atomic
def canary_auto_promote_set(*, product: str, enabled: bool, user: User, reason: str) -> CanaryConfig:
    """Let the rollout guard step the product's canary and promote it (``enabled``), or leave that to people."""
    reason = _require_reason(reason)
    config = _locked_config(product)
    if config.auto_promote == enabled:
        raise LifecycleError(f"automatic promotion of {product!r} is already {'on' if enabled else 'off'}")
    now = timezone.now()
    CanaryConfig.objects.filter(pk=config.pk).update(
        auto_promote=enabled, changed_by=user, changed_at=now, change_reason=reason, updated_at=now
    )  # routing does not read it: no new serving generation
    return _record_config_history(config.pk, user=user, reason=reason)


@transaction.atomic
def canary_stop(*, product: str, user: User, reason: str) -> CanaryConfig:
    """Send no more traffic to the canary; the canary model stays on the row for the record."""
    reason = _require_reason(reason)
    config = _locked_config(product)
    if config.canary_basis_points == 0:
        raise LifecycleError(f"the canary of {product!r} is already stopped")
    return _move_share(config, to=0, user=user, reason=reason)


@transaction.atomic
def canary_promote(*, product: str, user: User, reason: str, from_basis_points: int | None = None) -> CanaryConfig:
    """The canary becomes production (through the lifecycle's promote; the old production is archived).

    The configuration is cleared: production is the promoted version, no canary, share 0.
    ``from_basis_points`` as for `canary_step`.
    """
    reason = _require_reason(reason)
    config = _locked_config(product)
    _check_share_unchanged(config, from_basis_points)
    _check_production_unchanged(config)
    if config.canary_basis_points == 0:
        raise LifecycleError(f"the canary of {product!r} is stopped; step it up again before promoting it")
    # The lifecycle writes "replaced by <canary>: <reason>" on the old production's history.
    room = HISTORY_REASON_MAX - len(f"replaced by {config.canary_model}: ")
    # The guard's prefix stays first: it is how the history knows who acted.
    prefix = GUARD_PREFIX if reason.startswith(GUARD_PREFIX) else ""
    reason = f"{prefix}canary promoted: {reason.removeprefix(prefix)}"
    promoted = model_version_promote(model_version_id=config.canary_model_id, user=user, reason=_short(reason, room=room))
    return _reset_config(config, production=promoted, user=user, reason=reason)


@transaction.atomic
def canary_auto_rollback(
    *, config: CanaryConfig, reason: str, message: str, measured: dict, window_start: datetime, window_end: datetime
) -> RollbackEvent:
    """The rollout guard's rollback: stop the canary it judged in ``config`` and record why.

    The `RollbackEvent` keeps what was measured over ``[window_start, window_end)`` (the canary's
    whole run so far: the statistic, its confidence sequence, p-value, limit and sample sizes) and
    the share the canary had, and is dated ``window_end``. Raises `LifecycleError`, and changes
    nothing, when the canary was stopped or removed meanwhile.
    """
    canary_stop(product=config.product, user=None, reason=f"{GUARD_PREFIX}automatic rollback ({reason}): {message}")
    return RollbackEvent.objects.create(
        product=config.product,
        model_version_id=config.canary_model_id,
        production_model_id=config.production_model_id,
        reason=reason,
        canary_basis_points=config.canary_basis_points,
        measured=measured,
        window_seconds=int((window_end - window_start).total_seconds()),
        window_start=window_start,
        window_end=window_end,
        message=message[:500],
        created_at=window_end,
    )


def _reset_config(config: CanaryConfig, *, production: ModelVersion, user: User, reason: str) -> CanaryConfig:
    now = timezone.now()
    CanaryConfig.objects.filter(pk=config.pk).update(
        production_model=production,
        canary_model=None,
        canary_basis_points=0,
        started_at=None,
        step_started_at=None,
        auto_promote=False,
        changed_by=user,
        changed_at=now,
        change_reason=reason,
        updated_at=now,
    )
    config_generation.bump_on_commit()
    return _record_config_history(config.pk, user=user, reason=reason)


@transaction.atomic
def rollout_rollback(*, product: str, user: User, reason: str) -> RollbackEvent:
    """A person rolls the product back: an active canary is stopped; without one, production goes
    back to its previous version (`production_rollback`).

    Either way a `RollbackEvent` with reason ``manual`` records it beside the guard's.
    """
    reason = _require_reason(reason)
    config = CanaryConfig.objects.select_for_update().filter(product=product).first()
    if config is not None and config.canary_model_id and config.canary_basis_points > 0:
        share = config.canary_basis_points
        canary_stop(product=product, user=user, reason=f"rolled back: {reason}")
        return RollbackEvent.objects.create(
            product=product,
            model_version_id=config.canary_model_id,
            production_model_id=config.production_model_id,
            reason=RollbackReason.MANUAL,
            canary_basis_points=share,
            message=f"canary stopped by hand: {reason}",
            created_by=user,
            created_at=timezone.now(),
        )
    return production_rollback(product=product, user=user, reason=reason)


@transaction.atomic
def production_rollback(*, product: str, user: User, reason: str) -> RollbackEvent:
    """Production goes back to its previous version (the lifecycle's rollback), the canary row
    follows it, and a `RollbackEvent` with reason ``manual`` records it.

    A canary keeps its share, now beside the restored production; a canary that *is* the restored
    version is cleared (it is production again).
    """
    reason = _require_reason(reason)
    config = CanaryConfig.objects.select_for_update().filter(product=product).first()
    now = timezone.now()
    current = _production_of(product)
    restored = model_version_rollback(
        product=product, user=user, reason=_short(reason, room=HISTORY_REASON_MAX - len("restored by rollback: "))
    )
    if config is not None:
        if config.canary_model_id == restored.pk:
            _reset_config(config, production=restored, user=user, reason=f"production rolled back: {reason}")
        else:
            CanaryConfig.objects.filter(pk=config.pk).update(
                production_model=restored, changed_by=user, changed_at=now, change_reason=reason
            )
            _record_config_history(config.pk, user=user, reason=f"production rolled back: {reason}")
    return RollbackEvent.objects.create(
        product=product,
        model_version=current,
        production_model=restored,
        reason=RollbackReason.MANUAL,
        message=f"production rolled back from {current} to {restored}: {reason}",
        created_by=user,
        created_at=now,
    )


# --- Shadow -----------------------------------------------------------------------------------


def _save_override(product: str, *, user: User, reason: str, **fields) -> ShadowOverride:
    override = ShadowOverride.objects.select_for_update().filter(product=product).first() or ShadowOverride(product=product)
    for name, value in fields.items():
        setattr(override, name, value)
    override.changed_by = user
    override.changed_at = timezone.now()
    override.change_reason = reason
    override._history_user = user
    override._change_reason = _short(reason)
    override.save()
    config_generation.bump_on_commit()
    return override


@transaction.atomic
def shadow_enable(*, product: str, shadow_model_id, sample_percent=100, user: User, reason: str) -> ShadowOverride:
    """Shadow ``sample_percent`` of the product's traffic with ``shadow_model_id``, over the environment default."""
    reason = _require_reason(reason)
    with span("enable_shadow_mode", product=product, shadow_version=str(shadow_model_id), reason=reason) as traced:
        basis_points = percent_to_basis_points(sample_percent)
        shadow = serving_model_of(product, shadow_model_id, label="shadow")
        traced.set(shadow_version=f"{shadow.name}@{shadow.version}", sample_basis_points=basis_points)
        if shadow.status == ModelStatus.PRODUCTION:
            raise LifecycleError(f"{shadow} is the production version; a shadow must be another version")
        return _save_override(product, user=user, reason=reason, enabled=True, shadow_model=shadow, sample_basis_points=basis_points)


@transaction.atomic
def shadow_disable(*, product: str, user: User, reason: str) -> ShadowOverride:
    """No shadow for the product, whatever the environment default says (the last shadow model is kept for the record)."""
    reason = _require_reason(reason)
    with span("disable_shadow_mode", product=product, reason=reason) as traced:
        current = ShadowOverride.objects.select_related("shadow_model").filter(product=product).first()
        if current is not None and current.enabled and current.shadow_model is not None:
            traced.set(previous_shadow=f"{current.shadow_model.name}@{current.shadow_model.version}")
        if current is not None and not current.enabled:
            raise LifecycleError(f"the shadow of {product!r} is already disabled")
        return _save_override(product, user=user, reason=reason, enabled=False)


@transaction.atomic
def shadow_clear(*, product: str, user: User, reason: str) -> bool:
    """Remove the override: the environment default (``SHADOW_MODELS``) applies again.

    Returns whether there was an override to remove.
    """
    reason = _require_reason(reason)
    with span("clear_runtime_override", product=product, reason=reason) as traced:
        override = ShadowOverride.objects.select_for_update().filter(product=product).first()
        traced.set(reverted_to_env=override is not None)
        if override is None:
            return False
        override._history_user = user
        override._change_reason = _short(reason)
        override.delete()
        config_generation.bump_on_commit()
        return True
