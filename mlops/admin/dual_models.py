"""Dual-model configurations in the admin: the fast and full model of each product's stream.

Edits go through `mlops.services.dual_model_set` (validation, who/when/why, history, the
configuration generation bump), never through ``save()``; the form asks for a reason.
"""

from django import forms
from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from mlops import services
from mlops.models import DualModelConfig, ModelVersion
from mlops.services.dual_models import dual_model_check
from mlops.services.lifecycle import LifecycleError


class DualModelConfigForm(forms.ModelForm):
    reason = forms.CharField(max_length=500, strip=True, help_text="Why (recorded in the history).")

    class Meta:
        model = DualModelConfig
        fields = ["product", "fast_model", "full_model", "fast_timeout_ms", "full_timeout_ms"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        queryset = ModelVersion.objects.exclude(status="archived").order_by("product", "name", "-created_at")
        self.fields["fast_model"].queryset = queryset
        self.fields["full_model"].queryset = queryset
        if self.instance.pk:
            self.fields["product"].disabled = True

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        try:
            dual_model_check(
                product=data["product"],
                fast_model_id=data["fast_model"].pk,
                full_model_id=data["full_model"].pk,
                fast_timeout_ms=data["fast_timeout_ms"],
                full_timeout_ms=data["full_timeout_ms"],
            )
        except LifecycleError as exc:
            raise forms.ValidationError(str(exc)) from None
        return data


@admin.register(DualModelConfig)
class DualModelConfigAdmin(SimpleHistoryAdmin):
    form = DualModelConfigForm
    list_display = ["product", "fast_model", "fast_timeout_ms", "full_model", "full_timeout_ms", "changed_at", "changed_by", "live_link"]
    list_filter = ["changed_at"]
    search_fields = ["product", "fast_model__name", "full_model__name"]
    list_select_related = ["fast_model", "full_model", "changed_by"]
    readonly_fields = ["changed_by", "changed_at", "change_reason"]
    history_list_display = ["fast_model", "full_model", "fast_timeout_ms", "full_timeout_ms", "change_reason"]

    def has_add_permission(self, request):
        return request.user.has_perm("mlops.add_dualmodelconfig")

    def has_delete_permission(self, request, obj=None):
        return False  # cleared by `mlops.services.dual_model_clear`, with a reason

    @admin.display(description="live")
    def live_link(self, obj):
        return format_html('<a href="{}">live predictions</a>', reverse("live-product", args=[obj.product]))

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        try:
            saved = services.dual_model_set(
                product=obj.product,
                fast_model_id=data["fast_model"].pk,
                full_model_id=data["full_model"].pk,
                fast_timeout_ms=data["fast_timeout_ms"],
                full_timeout_ms=data["full_timeout_ms"],
                user=request.user,
                reason=data["reason"],
            )
        except LifecycleError as exc:  # changed between the form's check and the save
            messages.error(request, str(exc))
            return
        obj.pk = saved.pk

    def save_related(self, request, form, formsets, change):
        pass  # no relations of its own; the service saved everything
