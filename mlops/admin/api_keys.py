"""API keys in the admin: create (the key is shown once), list, search, filter, revoke.

Keys are records: never edited or deleted, only revoked (with a confirmation page). Creating
and revoking go through ``mlops.services`` so that every worker drops a revoked key within
about a second.
"""

from django import forms
from django.contrib import admin, messages
from django.db.models import Q
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html

from mlops import services
from mlops.models import ApiKey


class ApiKeyCreateForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["client", "role", "label", "expires_at"]

    def clean_expires_at(self):
        expires_at = self.cleaned_data.get("expires_at")
        if expires_at is not None and expires_at <= timezone.now():
            raise forms.ValidationError("The expiry must be in the future.")
        return expires_at


class ApiKeyStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("expired", "Expired"), ("revoked", "Revoked")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "active":
            return queryset.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now), revoked_at__isnull=True)
        if self.value() == "expired":
            return queryset.filter(expires_at__lte=now, revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


def key_status(api_key: ApiKey) -> str:
    if api_key.revoked_at is not None:
        return "revoked"
    if api_key.expires_at is not None and api_key.expires_at <= timezone.now():
        return "expired"
    return "active"


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["key_prefix", "client", "role", "label", "status_badge", "created_at", "expires_at", "created_by", "revoked_at"]
    list_filter = [ApiKeyStatusFilter, "role", "created_at"]
    search_fields = ["client", "label", "prefix"]
    list_select_related = ["created_by", "revoked_by"]
    ordering = ["client", "-created_at"]
    actions = ["revoke"]
    readonly_fields = [
        "key_prefix", "client", "role", "label", "created_at", "created_by", "expires_at", "revoked_at", "revoked_by",
    ]  # fmt: skip

    @admin.display(description="key", ordering="prefix")
    def key_prefix(self, api_key: ApiKey) -> str:
        return f"mlk_{api_key.prefix}…" if api_key.prefix else "-"

    @admin.display(description="status")
    def status_badge(self, api_key: ApiKey) -> str:
        status = key_status(api_key)
        colour = {"active": "#1a7f37", "expired": "#9a6700", "revoked": "#cf222e"}[status]
        return format_html('<strong style="color: {}">{}</strong>', colour, status)

    # Keys are immutable records: created through the form, never changed or deleted.
    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ApiKeyCreateForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.readonly_fields

    def get_fields(self, request, obj=None):
        return ApiKeyCreateForm.Meta.fields if obj is None else self.readonly_fields

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_revoke_permission(self, request):
        return request.user.has_perm("mlops.revoke_apikey")

    def save_model(self, request, obj, form, change):
        if change:  # pragma: no cover - has_change_permission is False
            raise PermissionError("API keys cannot be edited")
        try:
            api_key, plaintext = services.api_key_create(
                client=form.cleaned_data["client"],
                role=form.cleaned_data["role"],
                label=form.cleaned_data.get("label", ""),
                expires_at=form.cleaned_data.get("expires_at"),
                created_by=request.user,
            )
        except services.ApiKeyError as exc:
            # The form validated the same rules; reaching here means a race, shown as an error.
            messages.error(request, str(exc))
            raise
        # The admin's add view goes on with ``obj`` (history entry, redirect): make it the new row.
        obj.pk = api_key.pk
        obj.prefix = api_key.prefix
        obj.created_at = api_key.created_at
        obj.created_by = api_key.created_by
        obj._state.adding = False
        messages.warning(
            request,
            format_html(
                "The new API key for {} is <code>{}</code>. Copy it now: it is not stored and will not be shown again.",
                api_key.client,
                plaintext,
            ),
        )

    @admin.action(description="Revoke selected API keys", permissions=["revoke"])
    def revoke(self, request, queryset):
        if request.POST.get("confirm") != "yes":
            return TemplateResponse(
                request,
                "admin/mlops/apikey/revoke_confirmation.html",
                {
                    **self.admin_site.each_context(request),
                    "title": "Revoke API keys",
                    "queryset": queryset,
                    "opts": self.model._meta,
                    "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
                },
            )
        revoked = 0
        for api_key in queryset:
            if api_key.revoked_at is None:
                services.api_key_revoke(api_key_id=api_key.pk, user=request.user)
                revoked += 1
        messages.success(request, f"Revoked {revoked} API key{'s' if revoked != 1 else ''}; clients are refused within ~2 s.")
        return None
