"""Backtests in the admin: the records (read-only) and each one's report page, readably.

Backtests are started by the registry's "Backtest on logged traffic" action (`mlops.admin`, through
`mlops.hooks.backtest_start`), by ``POST /v1/backtests`` or ``manage.py backtest``; the action lands
on the report page here, which reloads itself until the run is done. Registered from `audit.admin`.
"""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from audit.backtests import DECISIONS, Thresholds, backtest_get, backtest_verdict
from audit.charts import segment_tables
from audit.models import Backtest, BacktestStatus
from audit.templatetags.evidence import interval, rate
from mlops.admin.base import ReadOnlyAdmin

SEGMENT_RATES = ("false_positive_rate", "true_positive_rate")  # per segment bin, drawn as the comparison page draws its own
SEGMENT_LEAD = (
    ["Rows", "Agreement"],
    lambda segment: [(segment["rows"], ""), (rate(segment["agreement"]), interval(segment["agreement"]))],
)


def rate_text(figure: dict | None) -> str:
    """A rate as people read it: ``12.0% (6 of 50; 95% interval 5.6–23.8%)``."""
    if not figure or figure.get("value") is None:
        return f"– ({figure['count']} of {figure['total']})" if figure else "–"
    return f"{figure['value']:.1%} ({figure['count']} of {figure['total']}; 95% interval {figure['low']:.1%}–{figure['high']:.1%})"


def difference_text(figure: dict) -> str:
    if figure.get("difference") is None:
        return "– (no outcomes on one side)"
    return f"{figure['difference']:+.2%} (95% interval {figure['low']:+.2%} to {figure['high']:+.2%}; Fisher p = {figure['p_value']:.3g})"


def ms_text(figure: dict) -> str:
    if not figure or figure.get("n", 0) == 0:
        return "–"
    return f"p50 {figure['p50']:.3f} ms, p95 {figure['p95']:.3f} ms, max {figure['max']:.3f} ms (n = {figure['n']})"


def report_context(report: dict) -> dict:
    """The report's figures as the page shows them (the page itself only lays them out)."""
    decisions = report["decisions"]
    counts = decisions["confusion"]["counts"]
    outcomes = report["outcomes"]
    latency = report["latency_ms"]
    return {
        "decisions": DECISIONS,
        "confusion": [(p, [(c, counts[p][c], c == p) for c in DECISIONS], sum(counts[p].values())) for p in DECISIONS],
        "candidate_totals": [sum(counts[p][c] for p in DECISIONS) for c in DECISIONS],
        "agreement": rate_text(decisions["agreement"]),
        "stricter": decisions["stricter"],
        "more_lenient": decisions["more_lenient"],
        "diff_classes": [(name, rate_text(figure)) for name, figure in report["score_diff"]["classes"].items()],
        "score_diff": report["score_diff"],
        "outcome_rows": [
            (
                "False-positive rate (blocked negatives)",
                rate_text(outcomes["production"]["false_positive_rate"]),
                rate_text(outcomes["candidate"]["false_positive_rate"]),
                difference_text(outcomes["false_positive_rate_difference"]),
            ),
            (
                "True-positive rate (blocked positives)",
                rate_text(outcomes["production"]["true_positive_rate"]),
                rate_text(outcomes["candidate"]["true_positive_rate"]),
                difference_text(outcomes["true_positive_rate_difference"]),
            ),
        ],
        "labelled": outcomes["production"]["labelled"],
        "latency_rows": [
            ("Candidate, one row a run", ms_text(latency["candidate_single_row_ms"])),
            ("Candidate, batched runs (per run)", ms_text(latency["batch_run_ms"])),
            ("Production, as logged", ms_text(latency["production_logged_ms"])),
        ],
        "latency": latency,
        # A report stored before segments were counted has none.
        "segments": segment_tables(report.get("segments", []), SEGMENT_RATES, subject="candidate", lead=SEGMENT_LEAD),
    }


@admin.register(Backtest)
class BacktestAdmin(ReadOnlyAdmin):
    list_display = ("id", "created_at", "product", "model_version", "status", "progress", "verdict", "report_link")
    list_filter = ("status", "product", "created_at")
    list_select_related = ("model_version", "created_by")
    search_fields = ("=id", "=model_version__id", "model_version__name")
    readonly_fields = (
        "id", "model_version", "product", "last", "since", "status", "rows_total", "rows_done", "error", "created_by",
        "created_at", "started_at", "finished_at", "report_link", "report",
    )  # fmt: skip

    @admin.display(description="progress")
    def progress(self, obj):
        return f"{obj.rows_done} of {obj.rows_total}" if obj.rows_total else "–"

    @admin.display(description="verdict")
    def verdict(self, obj):
        if obj.status != BacktestStatus.DONE or not obj.report:
            return "–"
        return "passes" if backtest_verdict(obj.report, Thresholds.from_settings())["passed"] else "does not pass"

    @admin.display(description="report")
    def report_link(self, obj):
        return format_html('<a href="{}">report</a>', reverse("admin:audit_backtest_report", args=[obj.pk]))

    def report_view(self, request, backtest_id):
        if not self.has_view_permission(request):
            raise PermissionDenied
        backtest = backtest_get(backtest_id=backtest_id)
        if backtest is None:
            raise Http404(f"no backtest {backtest_id}")
        done = backtest.status == BacktestStatus.DONE and backtest.report
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Backtest of {backtest.product}/{backtest.model_version.name}@{backtest.model_version.version}",
            "backtest": backtest,
            "pending": backtest.status in (BacktestStatus.QUEUED, BacktestStatus.RUNNING),
            "report": backtest.report if done else None,
            "verdict": backtest_verdict(backtest.report, Thresholds.from_settings()) if done else None,
            **(report_context(backtest.report) if done else {}),
        }
        return TemplateResponse(request, "admin/audit/backtest/report.html", context)

    def get_urls(self):
        return [
            path("<uuid:backtest_id>/report/", self.admin_site.admin_view(self.report_view), name="audit_backtest_report"),
            *super().get_urls(),
        ]
