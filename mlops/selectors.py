"""Reads of the registry's rollout state: what serves a product, its canary, its effective shadow,
and which serving workers have picked up the current configuration."""

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from mlops.background import config_generation
from mlops.choices import BASIS_POINTS_MAX, GUARD_NAME, GUARD_PREFIX, ModelStatus
from mlops.models import CanaryConfig, ModelVersion, RollbackEvent, ServingWorker, ShadowOverride

SOURCE_OVERRIDE = "override"
SOURCE_ENVIRONMENT = "environment"
SOURCE_NONE = "none"


@dataclass(frozen=True)
class ShadowState:
    """The shadow a product effectively runs, and where that comes from.

    ``source`` is ``override`` (a `ShadowOverride` row, enabled or not), ``environment`` (the
    ``SHADOW_MODELS`` setting) or ``none``.
    """

    product: str
    source: str
    enabled: bool
    shadow_model: ModelVersion | None
    sample_basis_points: int
    override: ShadowOverride | None = None
    environment_model_id: str | None = None
    problem: str = ""

    @property
    def sample_percent(self) -> float:
        return self.sample_basis_points / 100


@dataclass(frozen=True)
class RolloutOverview:
    product: str
    production: ModelVersion | None
    config: CanaryConfig | None
    shadow: ShadowState
    rollbacks: list = field(default_factory=list)

    @property
    def canary_model(self) -> ModelVersion | None:
        return self.config.canary_model if self.config else None

    @property
    def canary_basis_points(self) -> int:
        """The share the canary really gets: 0 when stopped or when production changed under it."""
        if not self.config or not self.config.canary_model_id or self.production is None:
            return 0
        if self.config.production_model_id != self.production.pk:
            return 0
        return self.config.canary_basis_points

    @property
    def canary_percent(self) -> float:
        return self.canary_basis_points / 100

    @property
    def production_percent(self) -> float:
        return (BASIS_POINTS_MAX - self.canary_basis_points) / 100 if self.production else 0.0

    @property
    def canary_active(self) -> bool:
        return self.canary_basis_points > 0

    @property
    def stale_config(self) -> bool:
        """The canary row names a production version that no longer is production."""
        return bool(
            self.config and self.production and self.config.production_model_id != self.production.pk and self.config.canary_model_id
        )


def model_version_get(*, model_version_id) -> ModelVersion | None:
    return ModelVersion.objects.select_related("changed_by").filter(pk=model_version_id).first()


def product_exists(*, product: str) -> bool:
    return ModelVersion.objects.filter(product=product).exists()


def rollout_products() -> list[str]:
    return list(ModelVersion.objects.order_by("product").values_list("product", flat=True).distinct())


def canary_config_get(*, product: str) -> CanaryConfig | None:
    return CanaryConfig.objects.select_related("production_model", "canary_model", "changed_by").filter(product=product).first()


def shadow_effective(*, product: str) -> ShadowState:
    """The override when the product has one, else the environment default, else no shadow."""
    override = ShadowOverride.objects.select_related("shadow_model", "changed_by").filter(product=product).first()
    default_id = (settings.SHADOW_MODELS or {}).get(product)
    if override is not None:
        return ShadowState(
            product=product,
            source=SOURCE_OVERRIDE,
            enabled=override.enabled and override.shadow_model is not None,
            shadow_model=override.shadow_model,
            sample_basis_points=override.sample_basis_points,
            override=override,
            environment_model_id=str(default_id) if default_id else None,
        )
    if default_id:
        model_version, problem = None, ""
        try:
            model_version = ModelVersion.objects.filter(pk=uuid.UUID(str(default_id)), product=product).first()
        except ValueError:
            problem = f"SHADOW_MODELS[{product!r}] = {default_id!r} is not a model version id"
        if model_version is None and not problem:
            problem = f"SHADOW_MODELS[{product!r}] names no model version of {product!r}"
        return ShadowState(
            product=product,
            source=SOURCE_ENVIRONMENT,
            enabled=model_version is not None,
            shadow_model=model_version,
            sample_basis_points=BASIS_POINTS_MAX if model_version else 0,
            environment_model_id=str(default_id),
            problem=problem,
        )
    return ShadowState(product=product, source=SOURCE_NONE, enabled=False, shadow_model=None, sample_basis_points=0)


def rollback_events(*, product: str | None = None) -> QuerySet[RollbackEvent]:
    events = RollbackEvent.objects.select_related("model_version", "production_model", "created_by").order_by("-created_at")
    return events.filter(product=product) if product else events


def rollout_overview(*, product: str, rollbacks: int = 20) -> RolloutOverview:
    """Production, canary and shadow of one product at a glance, with its latest rollbacks."""
    return RolloutOverview(
        product=product,
        production=ModelVersion.objects.filter(product=product, status=ModelStatus.PRODUCTION).first(),
        config=canary_config_get(product=product),
        shadow=shadow_effective(product=product),
        rollbacks=list(rollback_events(product=product)[:rollbacks]),
    )


def active_canaries() -> QuerySet[CanaryConfig]:
    """Canary rows that route traffic: a canary not archived, a share above 0, and still on the current production."""
    return (
        CanaryConfig.objects.select_related("production_model", "canary_model")
        .filter(canary_model__isnull=False, canary_basis_points__gt=0, production_model__status=ModelStatus.PRODUCTION)
        .exclude(canary_model__status=ModelStatus.ARCHIVED)
        .order_by("product")
    )


def _guard_or_none(reason: str | None) -> str | None:
    return GUARD_NAME if (reason or "").startswith(GUARD_PREFIX) else None


def rollout_history(*, product: str, limit: int = 50) -> list[dict]:
    """Changes of the product's canary and shadow rows, newest first, as one list for a page."""
    rows = []
    for record in CanaryConfig.history.filter(product=product).select_related("history_user", "canary_model", "production_model")[:limit]:
        rows.append(
            {
                "when": record.history_date,
                "what": "canary",
                "who": record.history_user or _guard_or_none(record.history_change_reason),
                "why": record.history_change_reason or "",
                "summary": (
                    f"canary {record.canary_model} at {record.canary_basis_points / 100:g}% beside {record.production_model}"
                    if record.canary_model_id
                    else f"no canary; production {record.production_model}"
                ),
            }
        )
    for record in ShadowOverride.history.filter(product=product).select_related("history_user", "shadow_model")[:limit]:
        if record.history_type == "-":
            summary = "override cleared; environment default applies"
        elif record.enabled:
            summary = f"shadow {record.shadow_model} on {record.sample_basis_points / 100:g}% of requests"
        else:
            summary = "shadow disabled"
        rows.append(
            {
                "when": record.history_date,
                "what": "shadow",
                "who": record.history_user,
                "why": record.history_change_reason or "",
                "summary": summary,
            }
        )
    rows.sort(key=lambda row: row["when"], reverse=True)
    return rows[:limit]


@dataclass(frozen=True)
class ServingWorkerState:
    """One live serving process as the rollout page of a product shows it."""

    worker: str  # "<hostname>:<pid>"
    hostname: str
    pid: int
    seen_seconds_ago: float
    generation: int
    # The product's route in that process: {"production", "canary", "canary_percent", "shadow"};
    # None when the process does not serve the product (e.g. its production model was refused).
    route: dict | None
    current: bool  # it serves the current configuration generation


@dataclass(frozen=True)
class ServingWorkers:
    """The live serving processes of a product, and how many serve the current configuration."""

    product: str
    generation: int  # what "current" means: the shared generation, or the newest reported while the cache is down
    live: int
    current: int
    stale_seconds: int
    workers: list[ServingWorkerState]


def serving_workers(*, product: str, now: datetime | None = None) -> ServingWorkers:
    """The processes that reported within ``SERVING_WORKER_STALE_SECONDS``, each with its route of
    ``product`` and whether its generation is the current one (`mlops.background.config_generation`; when the
    shared cache cannot be read, the highest generation any live process reports)."""
    now = now or timezone.now()
    stale_seconds = settings.SERVING_WORKER_STALE_SECONDS
    rows = list(ServingWorker.objects.filter(seen_at__gte=now - timedelta(seconds=stale_seconds)).order_by("hostname", "pid"))
    generation = config_generation.current()
    if generation == -1:
        generation = max((row.generation for row in rows), default=-1)
    workers = [
        ServingWorkerState(
            worker=row.worker,
            hostname=row.hostname,
            pid=row.pid,
            seen_seconds_ago=round(max(0.0, (now - row.seen_at).total_seconds()), 1),
            generation=row.generation,
            route=(row.routes or {}).get(product),
            current=row.generation == generation,
        )
        for row in rows
    ]
    return ServingWorkers(
        product=product,
        generation=generation,
        live=len(workers),
        current=sum(worker.current for worker in workers),
        stale_seconds=stale_seconds,
        workers=workers,
    )
