"""Model versions in the admin: read-only records whose lifecycle moves through actions.

Each action asks for a reason on an intermediate page, then calls the lifecycle service; the
service's own error message is shown when a transition is not allowed.
"""

from functools import partial

from django import forms
from django.contrib import admin
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from mlops import hooks, services
from mlops.admin.base import call_service_and_report
from mlops.choices import ModelStatus
from mlops.models import ModelVersion


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=500, widget=forms.TextInput(attrs={"size": 80}), help_text="Recorded in the history.")


def _with_reason(request, queryset, *, title: str, action: str, apply):
    """Show the reason form; once submitted, apply ``apply(model_version, user, reason)`` to each row."""
    form = ReasonForm(request.POST if "apply" in request.POST else None)
    if form.is_valid():
        for model_version in queryset:
            call_service_and_report(
                request,
                partial(apply, model_version, request.user, form.cleaned_data["reason"]),
                success=lambda result: f"{title}: {result}",
            )
        return None
    return TemplateResponse(
        request,
        "admin/mlops/modelversion/action_reason.html",
        {
            **admin.site.each_context(request),
            "title": title,
            "action": action,
            "queryset": queryset,
            "form": form,
            "opts": ModelVersion._meta,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        },
    )


def _by_id(service):
    """``apply`` for a lifecycle service that takes the selected version's id."""
    return lambda model_version, user, reason: service(model_version_id=model_version.pk, user=user, reason=reason)


def _queued(started: list, model_version, backtest) -> str:
    started.append(backtest)
    return f"Backtest of {model_version} on logged traffic queued ({backtest.pk})"


@admin.register(ModelVersion)
class ModelVersionAdmin(SimpleHistoryAdmin):
    # "product/name@version" says all three: separate columns for them made the list wider than a laptop.
    list_display = [
        "__str__",
        "status_badge",
        "threshold",
        "created_at",
        "changed_by",
        "rollout_link",
        "drift",
    ]
    list_filter = ["product", "status", "created_at"]
    search_fields = ["product", "name", "version", "sha256", "id"]
    list_select_related = ["changed_by"]
    ordering = ["product", "-created_at"]
    actions = ["validate", "promote", "rollback", "archive", "backtest"]
    readonly_fields = [
        "id", "product", "name", "version", "status", "artifact_uri", "sha256", "size_bytes", "threshold", "input_schema",
        "output_schema", "description", "created_at", "loaded_at", "promoted_at", "rolled_back_at", "changed_by", "changed_at",
        "change_reason",
    ]  # fmt: skip
    history_list_display = ["status", "change_reason"]

    def has_add_permission(self, request):
        return False  # versions come from the store: `manage.py push_model` / `sync_models`

    def has_delete_permission(self, request, obj=None):
        return False  # predictions refer to them; archive instead

    def has_lifecycle_permission(self, request):
        return request.user.has_perm("mlops.manage_lifecycle")

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        colours = {"production": "#2e7d32", "canary": "#ef6c00", "validated": "#1565c0", "candidate": "#616161", "archived": "#9e9e9e"}
        return format_html('<strong style="color:{}">{}</strong>', colours.get(obj.status, "#000"), obj.get_status_display())

    @admin.display(description="rollout")
    def rollout_link(self, obj):
        try:
            url = reverse("admin:mlops_rollout", args=[obj.product])
        except NoReverseMatch:
            return "-"
        return format_html('<a href="{}">rollout page</a>', url)

    # --- Drift of the versions in service: the audit app measures it (mlops.hooks.drift_summary) ---
    @admin.display(description="drift (max PSI)")
    def drift(self, obj):
        if obj.status not in (ModelStatus.PRODUCTION, ModelStatus.CANARY):
            return "-"  # only the versions in service are watched
        summary = hooks.drift_summary(model_version_ids=[obj.pk]).get(obj.pk)
        if summary is None or summary["max_psi"] is None:
            return "not evaluated"
        colours = {"significant": "#c62828", "moderate": "#ef6c00", "stable": "#2e7d32"}
        text = format_html(
            '<span style="color:{}">{} {}</span> ({})',
            colours.get(summary["level"], "#000"),
            f"{summary['max_psi']:.3f}",
            summary["level"],
            summary["feature"],
        )
        try:
            return format_html('<a href="{}?model={}">{}</a>', reverse("admin:audit_drift", args=[obj.product]), obj.pk, text)
        except NoReverseMatch:
            return text

    @admin.action(description="Validate selected candidates", permissions=["lifecycle"])
    def validate(self, request, queryset):
        return _with_reason(request, queryset, title="Validate", action="validate", apply=_by_id(services.model_version_validate))

    @admin.action(description="Promote selected version to production", permissions=["lifecycle"])
    def promote(self, request, queryset):
        return _with_reason(request, queryset, title="Promote", action="promote", apply=_by_id(services.model_version_promote))

    @admin.action(description="Roll back the product of the selected version to its last good production", permissions=["lifecycle"])
    def rollback(self, request, queryset):
        products = queryset.order_by().values_list("product", flat=True).distinct()
        first_per_product = ModelVersion.objects.filter(pk__in=[queryset.filter(product=p).first().pk for p in products])
        return _with_reason(
            request, first_per_product, title="Roll back", action="rollback",
            apply=lambda mv, user, reason: services.production_rollback(product=mv.product, user=user, reason=reason).production_model,
        )  # fmt: skip

    @admin.action(description="Archive selected versions", permissions=["lifecycle"])
    def archive(self, request, queryset):
        return _with_reason(request, queryset, title="Archive", action="archive", apply=_by_id(services.model_version_archive))

    # --- Backtest on logged traffic: the audit and inference apps run it (mlops.hooks.backtest_start) ---
    def has_backtest_permission(self, request):
        return request.user.has_perm("audit.add_backtest")

    @admin.action(description="Backtest on logged traffic", permissions=["backtest"])
    def backtest(self, request, queryset):
        """Queue a backtest of each selected version on its product's newest logged production rows (off the request
        path); one selected version lands on its report page, which follows the run."""
        started = []
        for model_version in queryset:
            call_service_and_report(
                request,
                partial(hooks.backtest_start, model_version_id=model_version.pk, user=request.user),
                success=partial(_queued, started, model_version),
                refused_prefix="Backtest not started: ",
            )
        if len(started) == 1:
            return HttpResponseRedirect(reverse("admin:audit_backtest_report", args=[started[0].pk]))
        return None
