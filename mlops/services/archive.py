"""Archiving a model version: it stops serving in every role, in the same transaction.

An archived version must never answer or shadow a request. Archiving the product's active
canary stops the canary and archiving its shadow disables the shadow, each recorded in that
role's own history with who and why ("archived <version>: <reason>"): both are optional
traffic, so stopping them changes nothing a client sees. Archiving a version that one of the
product's dual-model streams uses is refused instead: the stream has no "stopped" state, and
clearing it would make every client's stream answer 404 because of an archive click.
Production is never archived alone (promote another version or roll back).
"""

from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Q

from mlops import selectors
from mlops.background import config_generation
from mlops.choices import ModelStatus
from mlops.models import CanaryConfig, DualModelConfig, ModelVersion
from mlops.services.lifecycle import LifecycleError, User, _require_reason, _transition
from mlops.services.rollout import canary_stop, shadow_disable


@dataclass(frozen=True)
class ArchiveResult:
    """The archived version and the roles it was stopped in (``"canary"``, ``"shadow"``)."""

    model_version: ModelVersion
    stopped: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if not self.stopped:
            return str(self.model_version)
        return f"{self.model_version} ({' and '.join(self.stopped)} of {self.model_version.product} stopped)"


@transaction.atomic
def model_version_archive(*, model_version_id, user: User, reason: str) -> ArchiveResult:
    """Retire a version that is not production, stopping its canary and shadow roles first."""
    reason = _require_reason(reason)
    version = ModelVersion.objects.select_for_update().filter(pk=model_version_id).first()
    if version is None:
        raise LifecycleError(f"model version {model_version_id} does not exist")
    dual = DualModelConfig.objects.filter(Q(fast_model=version) | Q(full_model=version)).first()
    if dual is not None:
        part = "fast" if dual.fast_model_id == version.pk else "full"
        raise LifecycleError(
            f"{version} is the {part} model of {dual.product}'s dual-model stream; set other dual models or clear them first"
        )
    role_reason = f"archived {version}: {reason}"
    stopped = []
    canary = CanaryConfig.objects.filter(product=version.product, canary_model=version, canary_basis_points__gt=0).first()
    if canary is not None:
        canary_stop(product=version.product, user=user, reason=role_reason)
        stopped.append("canary")
    shadow = selectors.shadow_effective(product=version.product)
    if shadow.enabled and shadow.shadow_model is not None and shadow.shadow_model.pk == version.pk:
        shadow_disable(product=version.product, user=user, reason=role_reason)
        stopped.append("shadow")
    archived = _transition(
        version.pk,
        allowed=(ModelStatus.CANDIDATE, ModelStatus.VALIDATED, ModelStatus.CANARY),
        to=ModelStatus.ARCHIVED,
        user=user,
        reason=reason,
    )
    config_generation.bump_on_commit()
    return ArchiveResult(archived, stopped)
