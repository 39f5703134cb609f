"""Reads of the product dashboard (the admin's front page, `mlops.admin_site`): one card per product.

Built on the registry's rollout reads and on what the audit app provides through `mlops.hooks`,
so that the dashboard's figures are those of the rollout page, the comparison page and the guard.
"""

from dataclasses import dataclass

from mlops import hooks
from mlops.models import RollbackEvent
from mlops.selectors import RolloutOverview, rollout_overview, rollout_products
from mlops.services.rollout import canary_ladder


@dataclass(frozen=True)
class ProductCard:
    """One product on the admin's front page: what serves it and how that went over the last minutes.

    The traffic figures come from the audit app's one definition of model health (`hooks.role_stats`:
    per role requests, errors and p95, and requests per minute), the canary's verdict from the rollout
    guard (`hooks.canary_verdict`) and the production model's drift from `hooks.drift_summary`.
    """

    overview: RolloutOverview
    minutes: int
    roles: dict
    chart: dict
    canary_rung: int | None  # 1-based position of the canary's share on CANARY_LADDER; None when off it
    canary_rungs: int
    canary_verdict: dict | None
    drift: dict | None

    @property
    def product(self) -> str:
        return self.overview.product

    @property
    def last_rollback(self) -> RollbackEvent | None:
        return self.overview.rollbacks[0] if self.overview.rollbacks else None


def product_card(*, product: str, minutes: int) -> ProductCard:
    overview = rollout_overview(product=product, rollbacks=1)
    stats = hooks.role_stats(product=product, minutes=minutes)
    ladder = canary_ladder()
    share = overview.canary_basis_points
    production_id = overview.production.pk if overview.production else None
    return ProductCard(
        overview=overview,
        minutes=minutes,
        roles=stats["roles"],
        chart=stats["chart"],
        canary_rung=ladder.index(share) + 1 if share in ladder else None,
        canary_rungs=len(ladder),
        canary_verdict=hooks.canary_verdict(product=product) if overview.canary_active else None,
        drift=hooks.drift_summary(model_version_ids=[production_id]).get(production_id) if production_id else None,
    )


def product_cards(*, minutes: int) -> list[ProductCard]:
    """A card per product with a model version, by product name."""
    return [product_card(product=product, minutes=minutes) for product in rollout_products()]
