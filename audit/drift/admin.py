"""The drift page in the admin: per product, features by PSI, the selected feature's histograms, PSI over time.

Registered on `DriftWindow` (read-only, as every audit record): its changelist lists the stored
windows, and ``product/<product>/`` is the page (``?model=<id>&feature=<name>``; the score is
``feature=__score__``). The model list's drift column links here.
"""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from audit.charts import histogram_chart
from audit.drift import selectors
from audit.drift.charts import psi_line_chart
from audit.models import DriftWindow
from mlops import selectors as registry
from mlops.admin.base import ReadOnlyAdmin

SCORE_PARAM = "__score__"


@admin.register(DriftWindow)
class DriftWindowAdmin(ReadOnlyAdmin):
    list_display = ["window_end", "product", "model_version", "rows", "max_psi", "rows_read", "incremental", "duration_ms"]
    list_filter = ["product", "incremental"]
    search_fields = ["product", "model_version__name"]
    list_select_related = ["model_version"]
    date_hierarchy = "window_end"

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("product/", wrap(self.drift_index), name="audit_drift_index"),
            path("product/<slug:product>/", wrap(self.drift_view), name="audit_drift"),
            *super().get_urls(),
        ]

    def drift_index(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        products = registry.rollout_products()
        return redirect(reverse("admin:audit_drift", args=[products[0]])) if products else redirect("admin:audit_driftwindow_changelist")

    def drift_view(self, request, product: str):
        if not self.has_view_permission(request):
            raise PermissionDenied
        drift = selectors.product_drift(product=product)
        if drift is None:
            raise Http404(f"unknown product {product!r}")
        models = drift["models"]
        chosen = next((m for m in models if str(m["model_id"]) == request.GET.get("model")), models[0] if models else None)
        selected = histograms = chart = history_chart = None
        if chosen is not None:
            monitored = [f["name"] for f in chosen["features"] if f["monitored"]]
            wanted = request.GET.get("feature") or (monitored[0] if monitored else None)
            if wanted == SCORE_PARAM or wanted in monitored:
                selected = wanted
                is_score = wanted == SCORE_PARAM
                name = "" if is_score else wanted
                histograms = selectors.feature_histograms(model_version_id=chosen["model_id"], feature=name, is_score=is_score)
                if histograms:
                    # The overflow bins are drawn as the two outer bars, their edges open.
                    edges = [float("-inf"), *histograms["edges"], float("inf")]
                    chart = histogram_chart({"baseline": histograms["baseline"], "live": histograms["live"]}, edges)
                history = selectors.feature_history(model_version_id=chosen["model_id"], feature=name, is_score=is_score)
                history_chart = psi_line_chart(history, drift["thresholds"]) if history else None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Drift of {product}",
            "products": registry.rollout_products(),
            "product": product,
            "drift": drift,
            "chosen": chosen,
            "selected": selected,
            "score_param": SCORE_PARAM,
            "chart": chart,
            "history_chart": history_chart,
        }
        return TemplateResponse(request, "admin/audit/driftwindow/drift.html", context)
