"""Dual-model configuration: which fast and full model answer a product's dual-model stream.

``POST /stream/v1/infer`` runs a product's fast model (``preliminary``) and full model
(``final``) at once, each cancelled after its own timeout. Both must be versions of that product
that are not archived (any other status may serve a stream: a candidate can be tried here before
it takes real traffic). Every change needs a reason, stamps who/when/why, writes a history row
and bumps the serving configuration generation after commit, so stream processes reload.
"""

from django.db import transaction
from django.utils import timezone

from mlops.background import config_generation
from mlops.models import DualModelConfig, ModelVersion
from mlops.services.lifecycle import LifecycleError, User, _require_reason
from mlops.services.rollout import save_product_config, serving_model_of

TIMEOUT_MS_MAX = 60_000
HISTORY_REASON_MAX = 100  # django-simple-history keeps at most 100 characters of a reason

# The demo's dual models (mlops.demo): the logistic regression answers first, boosting last.
DEMO_FAST, DEMO_FULL = "logreg", "gbdt"
DEMO_FAST_TIMEOUT_MS, DEMO_FULL_TIMEOUT_MS = 100, 2_000


def _timeout(value, *, label: str) -> int:
    try:
        milliseconds = int(value)
    except (TypeError, ValueError):
        raise LifecycleError(f"{label} timeout {value!r} is not a whole number of milliseconds") from None
    if milliseconds != value and not isinstance(value, str):
        raise LifecycleError(f"{label} timeout {value!r} is not a whole number of milliseconds")
    if not 1 <= milliseconds <= TIMEOUT_MS_MAX:
        raise LifecycleError(f"{label} timeout must be between 1 and {TIMEOUT_MS_MAX} ms, not {milliseconds}")
    return milliseconds


def dual_model_check(
    *, product: str, fast_model_id, full_model_id, fast_timeout_ms, full_timeout_ms
) -> tuple[ModelVersion, ModelVersion, int, int]:
    """``(fast, full, fast_ms, full_ms)`` when the configuration is allowed, else `LifecycleError`."""
    # Two versions are checked at once: every message says which of them it is about.
    fast = serving_model_of(product, fast_model_id, label="fast", label_every_error=True)
    full = serving_model_of(product, full_model_id, label="full", label_every_error=True)
    if fast.pk == full.pk:
        raise LifecycleError(f"{fast} cannot be both the fast and the full model")
    return fast, full, _timeout(fast_timeout_ms, label="fast"), _timeout(full_timeout_ms, label="full")


@transaction.atomic
def dual_model_set(
    *, product: str, fast_model_id, full_model_id, fast_timeout_ms: int, full_timeout_ms: int, user: User, reason: str
) -> DualModelConfig:
    """Create or change the dual-model configuration of ``product``."""
    reason = _require_reason(reason)
    fast, full, fast_ms, full_ms = dual_model_check(
        product=product,
        fast_model_id=fast_model_id,
        full_model_id=full_model_id,
        fast_timeout_ms=fast_timeout_ms,
        full_timeout_ms=full_timeout_ms,
    )

    config = DualModelConfig.objects.select_for_update().filter(product=product).first() or DualModelConfig(product=product)
    config.fast_model, config.full_model = fast, full
    config.fast_timeout_ms, config.full_timeout_ms = fast_ms, full_ms
    config.changed_by, config.changed_at, config.change_reason = user, timezone.now(), reason
    config._history_user = user
    config._change_reason = reason if len(reason) <= HISTORY_REASON_MAX else reason[: HISTORY_REASON_MAX - 1] + "…"
    save_product_config(config, name="the dual-model configuration")
    return config


@transaction.atomic
def dual_model_clear(*, product: str, user: User, reason: str) -> None:
    """Remove the product's dual-model configuration (its stream then answers 404)."""
    reason = _require_reason(reason)
    config = DualModelConfig.objects.select_for_update().filter(product=product).first()
    if config is None:
        raise LifecycleError(f"product {product!r} has no dual-model configuration")
    config._history_user = user
    config._change_reason = reason[:HISTORY_REASON_MAX]
    config.delete()
    config_generation.bump_on_commit()


def dual_model_demo_ensure(*, product: str) -> str:
    """The demo's configuration (``logreg`` fast, ``gbdt`` full), unless the product has one."""
    if DualModelConfig.objects.filter(product=product).exists():
        return f"dual models of {product!r} exist (unchanged)"
    models = {mv.name: mv for mv in ModelVersion.objects.filter(product=product, name__in=[DEMO_FAST, DEMO_FULL], version="1")}
    if len(models) < 2:
        return f"dual models of {product!r} not set: {DEMO_FAST}@1 and {DEMO_FULL}@1 are not both registered"
    config = dual_model_set(
        product=product,
        fast_model_id=models[DEMO_FAST].pk,
        full_model_id=models[DEMO_FULL].pk,
        fast_timeout_ms=DEMO_FAST_TIMEOUT_MS,
        full_timeout_ms=DEMO_FULL_TIMEOUT_MS,
        user=None,
        reason="demo bootstrap",
    )
    return f"dual models of {product!r}: fast {config.fast_model}, full {config.full_model}"
