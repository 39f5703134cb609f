"""What the request path reads: the immutable serving `Snapshot`, per product its `Route`.

Built by the refresher (`inference.runtime`) and published with one reference assignment, so a
request reads one attribute and never sees a half-built state; `Refusal` says why a model
version is not among them.
"""

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from inference.session import LoadedModel
from inference.validation import same_input


@dataclass(frozen=True, eq=False)
class Route:
    """How one product is served right now."""

    product: str
    production: LoadedModel
    canary: LoadedModel | None = None
    canary_basis_points: int = 0
    shadow: LoadedModel | None = None
    shadow_basis_points: int = 0

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.production.feature_names

    @cached_property
    def canary_has_own_input(self) -> bool:
        """Whether the canary takes its row in another feature order or input type than production
        (then each gets its own; read per request, so worked out once per route)."""
        return self.canary is not None and not same_input(self.canary, self.production)


@dataclass(frozen=True, eq=False)
class Refusal:
    product: str
    label: str
    reason: str
    at: datetime
    retry_after: float  # time.monotonic()


@dataclass(frozen=True, eq=False)
class Snapshot:
    generation: int
    routes: dict[str, Route]
    expected: dict[str, str]  # product -> its production version id in the registry
    refused: dict[str, Refusal]  # model version id -> why it is not loaded
    built_at: datetime

    @property
    def models(self) -> dict[str, LoadedModel]:
        models = {}
        for route in self.routes.values():
            for model in (route.production, route.canary, route.shadow):
                if model is not None:
                    models[model.id] = model
        return models

    @property
    def missing(self) -> list[str]:
        """Products whose registered production version is not the one serving (or none is)."""
        return sorted(p for p, version_id in self.expected.items() if p not in self.routes or self.routes[p].production.id != version_id)

    @property
    def ready(self) -> bool:
        return all(product in self.routes for product in self.expected)
