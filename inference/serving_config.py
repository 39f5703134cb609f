"""What the registry says each product is served by, as the background refresher reads it.

Plain data (`ModelSpec`, `ProductConfig`) built from the registry's tables and the
``SHADOW_MODELS`` setting; read off the request path (`inference.runtime` rebuilds its
snapshot from it), never by a request of ``POST /v1/infer``.
"""

import uuid
from dataclasses import dataclass

from django.conf import settings

from mlops.choices import BASIS_POINTS_MAX, ModelStatus
from mlops.models import CanaryConfig, ModelVersion, ShadowOverride


@dataclass(frozen=True)
class ModelSpec:
    """What the runtime needs to load and serve one model version (plain data, no ORM object)."""

    id: str
    product: str
    name: str
    version: str
    artifact_uri: str
    sha256: str
    threshold: float
    input_schema: dict
    output_schema: dict

    @classmethod
    def of(cls, model_version: ModelVersion) -> "ModelSpec":
        return cls(
            id=str(model_version.pk),
            product=model_version.product,
            name=model_version.name,
            version=model_version.version,
            artifact_uri=model_version.artifact_uri,
            sha256=model_version.sha256,
            threshold=model_version.threshold,
            input_schema=model_version.input_schema,
            output_schema=model_version.output_schema,
        )


@dataclass(frozen=True)
class ProductConfig:
    product: str
    production: ModelSpec
    canary: ModelSpec | None
    canary_basis_points: int
    shadow: ModelSpec | None
    shadow_basis_points: int


def serving_config() -> list[ProductConfig]:
    """Per product with a production version: what serves it (production, canary, shadow).

    The canary comes from `CanaryConfig` (its production model must still be the product's
    production version, so a stale row never routes traffic); the shadow from `ShadowOverride`
    or, without a row for the product, the ``SHADOW_MODELS`` setting (product -> version id).
    """
    productions = {mv.product: mv for mv in ModelVersion.objects.filter(status=ModelStatus.PRODUCTION)}
    canaries = {c.product: c for c in CanaryConfig.objects.select_related("canary_model").filter(product__in=productions)}
    overrides = {o.product: o for o in ShadowOverride.objects.select_related("shadow_model").filter(product__in=productions)}
    defaults = {}
    default_ids = {product: _as_uuid(value) for product, value in (settings.SHADOW_MODELS or {}).items() if product in productions}
    if any(default_ids.values()):
        by_id = ModelVersion.objects.in_bulk([value for value in default_ids.values() if value])
        defaults = {product: by_id.get(value) for product, value in default_ids.items()}

    configs = []
    for product, production in sorted(productions.items()):
        canary, canary_bp = None, 0
        row = canaries.get(product)
        if (
            row
            and row.canary_model_id
            and row.production_model_id == production.pk
            and row.canary_basis_points > 0
            and row.canary_model.status != ModelStatus.ARCHIVED
        ):
            canary, canary_bp = row.canary_model, row.canary_basis_points
        shadow, shadow_bp = None, 0
        override = overrides.get(product)
        if override is not None:
            if override.enabled and override.shadow_model is not None:
                shadow, shadow_bp = override.shadow_model, override.sample_basis_points
        elif defaults.get(product) is not None and defaults[product].product == product:
            shadow, shadow_bp = defaults[product], BASIS_POINTS_MAX
        if shadow is not None and (shadow.pk == production.pk or shadow.status == ModelStatus.ARCHIVED):
            shadow = None  # an archived version never serves, whatever a row or the environment still says
        configs.append(
            ProductConfig(
                product=product,
                production=ModelSpec.of(production),
                canary=ModelSpec.of(canary) if canary else None,
                canary_basis_points=canary_bp,
                shadow=ModelSpec.of(shadow) if shadow and shadow_bp > 0 else None,
                shadow_basis_points=shadow_bp,
            )
        )
    return configs


def _as_uuid(value) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
