"""Audit review in the admin: the prediction log and outcomes, read-only for everyone.

Everything here needs ``audit.view_predictionlog`` (the auditor role); nobody can add, change
or delete a log row through the admin (the database refuses it anyway). Extra pages: the
canary-vs-production comparison and streamed NDJSON/CSV exports of the filtered changelist.
"""

import uuid

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.http import Http404, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from audit import admin_backtests, charts, exports, selectors  # noqa: F401 - admin_backtests registers the Backtest admin
from audit.drift import admin as drift_admin  # noqa: F401 - registers the DriftWindow admin and the drift page
from audit.models import DualRunRecord, Outcome, PredictionLog
from audit.selectors import pages
from mlops.admin.base import ReadOnlyAdmin
from mlops.choices import ModelRole

CURSOR_PARAMS = ("older", "newer")
# The prediction log's changelist filters (see PredictionLogAdmin.list_filter for why only these).
FILTERED_FIELDS = ("product", "model_version", "role", "created_at")
COMPARE_WINDOWS = [("1h", "last hour"), ("6h", "last 6 hours"), ("24h", "last 24 hours"), ("7d", "last 7 days"), ("30d", "last 30 days")]


class ProductFilter(admin.SimpleListFilter):
    """Products from the registry (cheap) rather than a DISTINCT over the whole log."""

    title = "product"
    parameter_name = "product"

    def lookups(self, request, model_admin):
        return [(product, product) for product in selectors.known_products()]

    def queryset(self, request, queryset):
        return queryset.filter(product=self.value()) if self.value() else queryset


class KeysetChangeList(ChangeList):
    """The log's changelist without OFFSET or COUNT(*): "newer" and "older" pages by keyset
    (``?older=`` / ``?newer=`` cursors, `audit.selectors.pages`) and the planner's estimate of how
    many rows match. Page n costs what page 1 does, at any depth."""

    def get_queryset(self, request, exclude_parameters=None):
        # The cursors are positions, not filters: links to filters and exports start over.
        for name in CURSOR_PARAMS:
            self.params.pop(name, None)
            self.filter_params.pop(name, None)
        return super().get_queryset(request, exclude_parameters)

    def get_results(self, request):
        try:
            cursors = {name: pages.Cursor.parse(request.GET[name]) for name in CURSOR_PARAMS if name in request.GET}
        except ValueError:
            raise IncorrectLookupParameters from None  # the admin's answer to a bad parameter: start over
        self.page = pages.page(self.queryset, size=self.list_per_page, **cursors)
        self.result_list = self.page.rows
        self.result_count = pages.estimated_count(self.queryset)
        self.full_result_count = None
        self.show_full_result_count = False
        self.show_admin_actions = True
        self.can_show_all = False
        self.multi_page = self.page.newer is not None or self.page.older is not None

    def cursor_link(self, name: str) -> str | None:
        cursor = getattr(self.page, name)
        return None if cursor is None else self.get_query_string({name: cursor.token()})

    def newer_link(self) -> str | None:
        return self.cursor_link("newer")

    def older_link(self) -> str | None:
        return self.cursor_link("older")


def _stream(queryset, fmt: str, name: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(exports.iter_export(queryset, fmt), content_type=exports.CONTENT_TYPES[fmt])
    stamp = timezone.now().strftime("%Y%m%dT%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="{name}-{stamp}.{fmt}"'
    return response


@admin.register(PredictionLog)
class PredictionLogAdmin(ReadOnlyAdmin):
    # The model version names the product, and four decimals of a score are plenty in a list: so it fits a laptop.
    list_display = (
        "prediction_id",
        "created_at",
        "model_version",
        "role",
        "decision",
        "score_shown",
        "latency_ms",
        "cached",
        "diff_class",
    )
    # Only what an index or partition pruning serves: product and model version lead an index
    # with created_at, created_at prunes partitions, and every role is common enough that the
    # newest-first walk fills a page at once. (Decision, diff class and "cached" would scan when
    # the value is rare; filter an export for them.)
    list_filter = (ProductFilter, *FILTERED_FIELDS[1:])
    list_select_related = ("model_version",)
    search_fields = ("=event_id",)
    search_help_text = "A prediction id or an event id (exact)."
    show_full_result_count = False  # no COUNT(*) over the whole log on every page
    sortable_by = ()  # newest first only: the keyset pages walk (created_at, prediction_id)
    list_per_page = 50
    actions = ["export_ndjson", "export_csv"]
    fieldsets = (
        (None, {"fields": ("prediction_id", "created_at", "product", "event_id", "request_id")}),
        ("Answer", {"fields": ("model_version", "role", "score", "decision", "threshold", "latency_ms", "cached")}),
        ("Canary failover", {"fields": ("fallback_from", "fallback_reason")}),
        ("Shadow comparison", {"fields": ("shadow_comparison",)}),
        ("Input and explanation", {"fields": ("features", "explain_summary")}),
    )
    readonly_fields = (
        "prediction_id",
        "created_at",
        "product",
        "event_id",
        "request_id",
        "model_version",
        "role",
        "score",
        "decision",
        "threshold",
        "latency_ms",
        "cached",
        "fallback_from",
        "fallback_reason",
        "shadow_comparison",
        "features",
        "explain_summary",
    )

    def get_object(self, request, object_id, from_field=None):
        # By the id's own time, as GET /v1/infer/{id}: one or two partitions rather than all of them.
        try:
            prediction_id = uuid.UUID(object_id)
        except ValueError:
            return None
        return pages.by_prediction_id(self.get_queryset(request), prediction_id).first()

    def lookup_allowed(self, lookup, value, request):
        # A filter typed into the URL is held to the sidebar's: no scan of the log by hand-made query.
        return lookup.split("__", 1)[0] in FILTERED_FIELDS and super().lookup_allowed(lookup, value, request)

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        try:
            prediction_id = uuid.UUID(term)
        except ValueError:
            return super().get_search_results(request, queryset, search_term)
        return pages.by_prediction_id(queryset, prediction_id), False

    @admin.display(description="score", ordering="score")
    def score_shown(self, obj):
        return f"{obj.score:.4f}"

    @admin.display(description="Shadow comparison")
    def shadow_comparison(self, obj):
        others = selectors.shadow_comparison_rows(obj)
        if obj.role == ModelRole.SHADOW:
            heading = format_html(
                "Shadow of {} (score difference {}, {}, decisions {}).",
                obj.primary_prediction_id,
                "–" if obj.score_diff is None else f"{obj.score_diff:.4f}",
                obj.diff_class or "unclassified",
                {True: "agree", False: "differ", None: "not compared"}[obj.decision_agrees],
            )
        else:
            heading = format_html("{} shadow run(s) of this prediction.", len(others))
        if not others:
            return heading
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    reverse("admin:audit_predictionlog_change", args=[row.pk]),
                    row.pk,
                    row.role,
                    row.model_version,
                    f"{row.score:.4f}",
                    row.decision,
                    "–" if row.score_diff is None else f"{row.score_diff:.4f}",
                    row.diff_class or "–",
                    {True: "yes", False: "no", None: "–"}[row.decision_agrees],
                )
                for row in others
            ),
        )
        return format_html(
            "{}<table><thead><tr><th>prediction</th><th>role</th><th>model</th><th>score</th><th>decision</th>"
            "<th>|diff|</th><th>diff class</th><th>agrees</th></tr></thead><tbody>{}</tbody></table>",
            heading,
            rows,
        )

    # --- exports ---------------------------------------------------------------------------
    @admin.action(description="Export selected rows as NDJSON", permissions=["view"])
    def export_ndjson(self, request, queryset):
        return _stream(queryset, "ndjson", "predictions")

    @admin.action(description="Export selected rows as CSV", permissions=["view"])
    def export_csv(self, request, queryset):
        return _stream(queryset, "csv", "predictions")

    def export_view(self, request, fmt: str):
        """The changelist's current filters and search, exported (links on the changelist page)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        if fmt not in exports.CONTENT_TYPES:
            raise Http404(f"no export format {fmt!r}")
        changelist = self.get_changelist_instance(request)
        return _stream(changelist.get_queryset(request), fmt, "predictions")

    # --- comparison page -----------------------------------------------------------------------
    def compare_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        products = selectors.known_products()
        product = request.GET.get("product") or (products[0] if products else "")
        window_text = request.GET.get("window", "24h")
        if window_text not in dict(COMPARE_WINDOWS):
            window_text = "24h"
        comparison = selectors.canary_comparison(product=product, window=selectors.parse_duration(window_text)) if product else None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Canary vs production",
            "is_nav_sidebar_enabled": False,  # the tables need the width at 1366 px
            "products": products,
            "product": product,
            "windows": COMPARE_WINDOWS,
            "window": window_text,
            "comparison": comparison,
            "detectable_points": comparison and comparison["detectable_difference"] * 100,
            **(charts.comparison_figures(comparison) if comparison else {}),
        }
        return TemplateResponse(request, "admin/audit/predictionlog/compare.html", context)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("compare/", wrap(self.compare_view), name="audit_predictionlog_compare"),
            path("export/<str:fmt>/", wrap(self.export_view), name="audit_predictionlog_export"),
            *super().get_urls(),
        ]

    def get_changelist(self, request, **kwargs):
        return KeysetChangeList

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "export_formats": ["ndjson", "csv"]}
        return super().changelist_view(request, extra_context)


@admin.register(Outcome)
class OutcomeAdmin(ReadOnlyAdmin):
    list_display = ("event_id", "product", "label", "observed_at", "source", "prediction_id", "created_at")
    list_filter = ("product", "label", "source", "observed_at")
    search_fields = ("=event_id",)
    search_help_text = "An event id or prediction id (exact)."
    show_full_result_count = False

    def get_search_results(self, request, queryset, search_term):
        try:
            prediction_id = uuid.UUID(search_term.strip())
        except ValueError:
            return super().get_search_results(request, queryset, search_term)
        return queryset.filter(prediction_id=prediction_id), False


@admin.register(DualRunRecord)
class DualRunRecordAdmin(ReadOnlyAdmin):
    """Runs of the dual-model stream: what each model answered, how fast, and what failed."""

    list_display = (
        "run_id",
        "product",
        "event_id",
        "fast_model",
        "fast_latency_ms",
        "full_model",
        "full_latency_ms",
        "outcome",
        "created_at",
    )
    list_filter = ("product", "disconnected", "created_at")
    list_select_related = ("fast_model", "full_model")
    search_fields = ("=run_id", "=event_id")
    search_help_text = "A run id or event id (exact)."
    show_full_result_count = False

    @admin.display(description="outcome")
    def outcome(self, obj):
        if obj.disconnected:
            return "client disconnected"
        if obj.errors:
            return ", ".join(f"{error.get('model')}: {error.get('code')}" for error in obj.errors)
        return "both answered"
