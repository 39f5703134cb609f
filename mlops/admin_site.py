"""The platform's admin site: its name in the header and title, and a product dashboard as its front page.

Installed through `mlops.apps.PlatformAdminConfig` (``default_site``), so ``admin.site`` is this
site and every ``@admin.register`` lands on it. The dashboard shows one card per product
(`mlops.dashboard.product_cards`) above the stock model lists; the page polls its cards'
fragment (``admin:dashboard_cards``) and swaps it in, so the figures follow the traffic.
"""

from functools import partial

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.cache import add_never_cache_headers

from mlops import dashboard

VIEW_PERMISSION = "mlops.view_canaryconfig"  # the same as the rollout pages the cards lead to
CARDS_CACHE_SECONDS = 2  # every open dashboard polls: one set of queries per refresh, however many staff watch
SPARKLINE_WIDTH, SPARKLINE_HEIGHT = 240, 40
SPARKLINE_ROLES = ("production", "canary", "shadow")


def cards_cache_key(minutes: int) -> str:
    return f"dashboard-cards:{minutes}"


def sparkline(series: dict[str, list[int]]) -> list[dict]:
    """SVG polyline points per role, on one vertical scale so that the roles compare at a glance."""
    drawn = [(role, series[role]) for role in SPARKLINE_ROLES if any(series.get(role, ()))]
    peak = max((max(values) for _, values in drawn), default=0) or 1
    lines = []
    for role, values in drawn:
        step = SPARKLINE_WIDTH / max(len(values) - 1, 1)
        points = " ".join(
            f"{i * step:.1f},{SPARKLINE_HEIGHT - value / peak * (SPARKLINE_HEIGHT - 2) - 1:.1f}" for i, value in enumerate(values)
        )
        lines.append({"role": role, "points": points, "total": sum(values)})
    return lines


class PlatformAdminSite(admin.AdminSite):
    site_header = "MLOps platform"
    site_title = "MLOps platform"
    index_title = "Products"
    index_template = "admin/dashboard.html"
    # The sidebar of every app's models takes 280 px of a 1366 px laptop from each list, which then
    # cuts columns; the dashboard and the breadcrumbs lead to every list instead.
    enable_nav_sidebar = False

    def get_urls(self):
        return [path("dashboard/cards/", self.admin_view(self.dashboard_cards_view), name="dashboard_cards"), *super().get_urls()]

    def _dashboard(self, request) -> dict:
        if not request.user.has_perm(VIEW_PERMISSION):
            return {"cards": None}
        # Imported here: importing the admin package registers its model admins on this very site.
        from mlops.admin.base import cached_briefly

        minutes = settings.DASHBOARD_MINUTES
        cards = cached_briefly(
            cards_cache_key(minutes), CARDS_CACHE_SECONDS, partial(dashboard.product_cards, minutes=minutes), what="dashboard cards"
        )
        return {
            "cards": [{"card": card, "sparkline": sparkline(card.chart["series"])} for card in cards],
            "minutes": minutes,
            "sparkline_size": (SPARKLINE_WIDTH, SPARKLINE_HEIGHT),
            "refresh_seconds": settings.DASHBOARD_REFRESH_SECONDS,
        }

    def index(self, request, extra_context=None):
        return super().index(request, extra_context={**self._dashboard(request), **(extra_context or {})})

    def dashboard_cards_view(self, request):
        if not request.user.has_perm(VIEW_PERMISSION):
            raise PermissionDenied
        response = TemplateResponse(request, "admin/dashboard_cards.html", self._dashboard(request))
        add_never_cache_headers(response)
        return response
