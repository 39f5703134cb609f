"""Rollouts in the admin: one page per product, and the read-only records behind it.

The page (``/admin/mlops/canaryconfig/rollout/<product>/``, ``admin:mlops_rollout``) shows
production, canary and shadow at a glance, the traffic split, which serving workers serve the
current configuration, live-ish counters per role (polled from a small JSON endpoint) and the
history of changes and rollbacks. Its buttons post
a form with a reason to one action view that calls the rollout service and reports the result
as a message. Looking needs the view permission on canary configurations; acting needs
``mlops.manage_rollout``.
"""

from dataclasses import asdict
from functools import partial

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from mlops import hooks, selectors, services
from mlops.admin.base import ReadOnlyAdmin, cached_briefly, call_service_and_report
from mlops.choices import ModelStatus
from mlops.models import CanaryConfig, ModelVersion, RollbackEvent, ServingWorker, ShadowOverride
from mlops.services.rollout import canary_ladder

MANAGE_PERMISSION = "mlops.manage_rollout"
STATS_CACHE_SECONDS = 2  # several staff polling one page cost one set of queries per product (cached_briefly)


# --- Forms ------------------------------------------------------------------------------------


class ReasonForm(forms.Form):
    reason = forms.CharField(
        max_length=500, strip=True, widget=forms.TextInput(attrs={"size": 60, "placeholder": "why (recorded in the history)"})
    )

    def service_kwargs(self) -> dict:
        """The cleaned data as keyword arguments of the action's rollout service."""
        return {"reason": self.cleaned_data["reason"]}


def _model_choices(product: str, statuses) -> forms.ModelChoiceField:
    queryset = ModelVersion.objects.filter(product=product, status__in=statuses).order_by("-created_at")
    return forms.ModelChoiceField(queryset=queryset, empty_label=None)


class CanarySetForm(ReasonForm):
    canary_percent = forms.DecimalField(min_value=0, max_value=100, decimal_places=2, initial=10, label="percent")

    def __init__(self, *args, product: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["canary_model"] = _model_choices(product, [ModelStatus.VALIDATED, ModelStatus.CANARY])
        self.order_fields(["canary_model", "canary_percent", "reason"])

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        return {**super().service_kwargs(), "canary_model_id": data["canary_model"].pk, "canary_percent": data["canary_percent"]}


class ShadowEnableForm(ReasonForm):
    sample_percent = forms.DecimalField(min_value=0, max_value=100, decimal_places=2, initial=100, label="sample percent")

    def __init__(self, *args, product: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["shadow_model"] = _model_choices(product, [ModelStatus.CANDIDATE, ModelStatus.VALIDATED, ModelStatus.CANARY])
        self.order_fields(["shadow_model", "sample_percent", "reason"])

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        return {**super().service_kwargs(), "shadow_model_id": data["shadow_model"].pk, "sample_percent": data["sample_percent"]}


class AutoPromoteForm(ReasonForm):
    enabled = forms.BooleanField(required=False, label="let the rollout guard step and promote it")

    def service_kwargs(self) -> dict:
        return {**super().service_kwargs(), "enabled": self.cleaned_data["enabled"]}


# action -> (form class, rollout service, success message). The service is called with the product,
# the user and the form's service_kwargs().
ACTIONS = {
    "set": (CanarySetForm, services.canary_set, "Canary started"),
    "step": (ReasonForm, services.canary_step, "Canary stepped up"),
    "stop": (ReasonForm, services.canary_stop, "Canary stopped"),
    "auto_promote": (AutoPromoteForm, services.canary_auto_promote_set, "Automatic promotion changed"),
    "promote": (ReasonForm, services.canary_promote, "Canary promoted to production"),
    "rollback": (ReasonForm, services.rollout_rollback, "Rolled back"),
    "shadow_enable": (ShadowEnableForm, services.shadow_enable, "Shadow enabled"),
    "shadow_disable": (ReasonForm, services.shadow_disable, "Shadow disabled"),
    "shadow_clear": (ReasonForm, services.shadow_clear, "Shadow override cleared; the environment default applies"),
}


def _form_for(action: str, product: str, data=None):
    form_class = ACTIONS[action][0]
    kwargs = {"product": product} if form_class in (CanarySetForm, ShadowEnableForm) else {}
    return form_class(data, prefix=action, **kwargs)


# --- Canary configurations: the rollout pages --------------------------------------------------


class RolloutLinkMixin:
    """A "rollout page" column for the lists of a product's rollout records."""

    @admin.display(description="rollout")
    def rollout_link(self, obj):
        return format_html('<a href="{}">rollout page</a>', reverse("admin:mlops_rollout", args=[obj.product]))


@admin.register(CanaryConfig)
class CanaryConfigAdmin(RolloutLinkMixin, SimpleHistoryAdmin, ReadOnlyAdmin):
    """Read-only rows: changes go through the rollout page (and its services), never the change form."""

    list_display = ["product", "production_model", "canary_model", "canary_share", "started_at", "changed_at", "changed_by", "rollout_link"]
    list_filter = ["changed_at"]
    search_fields = ["product", "canary_model__name", "production_model__name"]
    list_select_related = ["production_model", "canary_model", "changed_by"]
    readonly_fields = [
        "product", "production_model", "canary_model", "canary_basis_points", "started_at", "step_started_at", "auto_promote",
        "updated_at", "changed_by", "changed_at", "change_reason",
    ]  # fmt: skip
    history_list_display = ["canary_basis_points", "auto_promote", "change_reason"]

    def can_manage(self, request) -> bool:
        return request.user.has_perm(MANAGE_PERMISSION)

    @admin.display(description="canary share", ordering="canary_basis_points")
    def canary_share(self, obj):
        return f"{obj.canary_percent:g}%" if obj.canary_model_id else "-"

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("rollout/", wrap(self.rollout_index_view), name="mlops_rollout_index"),
            path("rollout/<slug:product>/", wrap(self.rollout_view), name="mlops_rollout"),
            path("rollout/<slug:product>/stats/", wrap(self.rollout_stats_view), name="mlops_rollout_stats"),
            path("rollout/<slug:product>/<slug:action>/", wrap(self.rollout_action_view), name="mlops_rollout_action"),
            *super().get_urls(),
        ]

    def _check_view(self, request, product: str | None = None) -> None:
        if not self.has_view_permission(request):
            raise PermissionDenied
        if product is not None and not selectors.product_exists(product=product):
            raise Http404(f"unknown product {product!r}")

    def rollout_index_view(self, request):
        self._check_view(request)
        return TemplateResponse(
            request,
            "admin/mlops/canaryconfig/rollout_index.html",
            {
                **self.admin_site.each_context(request),
                "title": "Rollouts",
                "opts": self.model._meta,
                "products": selectors.rollout_products(),
            },
        )

    def rollout_view(self, request, product: str):
        self._check_view(request, product)
        overview = selectors.rollout_overview(product=product)
        can_manage = self.can_manage(request)
        ladder = canary_ladder()
        next_rung = next((rung for rung in ladder if rung > overview.canary_basis_points), None)
        forms_by_action = {action: _form_for(action, product) for action in ACTIONS} if can_manage else {}
        if "auto_promote" in forms_by_action and overview.config is not None:
            forms_by_action["auto_promote"].initial = {"enabled": not overview.config.auto_promote}
        context = {
            **self.admin_site.each_context(request),
            "title": f"Rollout of {product}",
            "opts": self.model._meta,
            "product": product,
            "overview": overview,
            "can_manage": can_manage,
            "forms": forms_by_action,
            "next_percent": next_rung / 100 if next_rung else None,
            "ladder": [rung / 100 for rung in ladder],
            "history": selectors.rollout_history(product=product),
            "stats_url": reverse("admin:mlops_rollout_stats", args=[product]),
            "stats_minutes": _stats_minutes(),
            "stats": _stats(product),
            "model_admin_url": "admin:mlops_modelversion_change",
        }
        return TemplateResponse(request, "admin/mlops/canaryconfig/rollout.html", context)

    def rollout_stats_view(self, request, product: str):
        self._check_view(request, product)
        response = JsonResponse(_stats(product))
        add_never_cache_headers(response)
        return response

    def rollout_action_view(self, request, product: str, action: str):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        self._check_view(request, product)
        if not self.can_manage(request):
            raise PermissionDenied
        if action not in ACTIONS:
            raise Http404(f"unknown rollout action {action!r}")
        form = _form_for(action, product, request.POST)
        page = HttpResponseRedirect(reverse("admin:mlops_rollout", args=[product]))
        if not form.is_valid():
            problems = "; ".join(f"{name}: {' '.join(errors)}" for name, errors in form.errors.items())
            messages.error(request, f"Nothing changed ({problems}).")
            return page
        _, service, done = ACTIONS[action]
        call_service_and_report(
            request,
            partial(service, product=product, user=request.user, **form.service_kwargs()),
            success=lambda _: f"{done}. {_traffic_split_text(product)}",
            refused_prefix="Nothing changed: ",
        )
        cache.delete(_stats_key(product))
        return page


def _traffic_split_text(product: str) -> str:
    overview = selectors.rollout_overview(product=product, rollbacks=0)
    return f"Canary {overview.canary_percent:g}%, production {overview.production_percent:g}%."


def _stats_minutes() -> int:
    return settings.ROLLOUT_STATS_MINUTES


def _stats_key(product: str) -> str:
    return f"rollout-stats:{product}"


def _stats(product: str) -> dict:
    """Counters per role over the last minutes, cached for a couple of seconds in the shared cache."""
    return cached_briefly(_stats_key(product), STATS_CACHE_SECONDS, partial(_fresh_stats, product), what=f"rollout stats of {product}")


def _fresh_stats(product: str) -> dict:
    stats = hooks.role_stats(product=product, minutes=_stats_minutes())  # from the prediction log (audit)
    overview = selectors.rollout_overview(product=product, rollbacks=0)
    stats["split"] = {"production_percent": overview.production_percent, "canary_percent": overview.canary_percent}
    stats["workers"] = _workers(product)
    stats["guard"] = hooks.rollout_guard_status(product=product)  # what the rollout guard waits for (audit)
    return stats


def _workers(product: str) -> dict:
    """The live serving workers of the product (`selectors.serving_workers`) as JSON, with a summary line."""
    workers = asdict(selectors.serving_workers(product=product))
    live, current = workers["live"], workers["current"]
    if live:
        noun, verb = ("worker", "serves") if live == 1 else ("workers", "serve")
        workers["summary"] = f"{current} of {live} {noun} {verb} the current configuration (generation {workers['generation']})."
    else:
        workers["summary"] = f"No serving worker has reported in the last {workers['stale_seconds']} s."
    return workers


# --- Read-only records ------------------------------------------------------------------------


@admin.register(RollbackEvent)
class RollbackEventAdmin(RolloutLinkMixin, ReadOnlyAdmin):
    list_display = ["created_at", "product", "reason", "model_version", "canary_share", "message", "created_by", "rollout_link"]
    list_filter = ["reason", "product", "created_at"]
    search_fields = ["product", "message", "model_version__name", "model_version__version"]
    list_select_related = ["model_version", "production_model", "created_by"]
    date_hierarchy = "created_at"

    @admin.display(description="canary share", ordering="canary_basis_points")
    def canary_share(self, obj):
        return f"{obj.canary_basis_points / 100:g}%"


@admin.register(ShadowOverride)
class ShadowOverrideAdmin(RolloutLinkMixin, SimpleHistoryAdmin, ReadOnlyAdmin):
    """Read-only list: shadows change on the rollout page, through the services."""

    list_display = ["product", "enabled", "shadow_model", "sample_share", "changed_at", "changed_by", "change_reason", "rollout_link"]
    list_filter = ["enabled", "changed_at"]
    search_fields = ["product", "shadow_model__name"]
    list_select_related = ["shadow_model", "changed_by"]
    history_list_display = ["enabled", "sample_basis_points", "change_reason"]

    @admin.display(description="sample", ordering="sample_basis_points")
    def sample_share(self, obj):
        return f"{obj.sample_basis_points / 100:g}%"


@admin.register(ServingWorker)
class ServingWorkerAdmin(ReadOnlyAdmin):
    """What each serving process last reported it serves (operational state; the rollout pages show it per product)."""

    list_display = ["worker", "hostname", "pid", "generation", "seen_at", "started_at"]
    list_filter = ["hostname", "seen_at"]
    search_fields = ["worker", "hostname"]
    ordering = ["-seen_at"]
