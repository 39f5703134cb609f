"""The prediction log summary of ``GET /v1/audit/summary``: counts per version, role and decision,
and the answers' latency, cache, shadow and outcome figures, by the definitions of
`audit.selectors.health` (answering rows: roles production and canary, failovers included, since a
client got each of them).
"""

from datetime import datetime

from django.db.models import Count, Q

from audit.evidence.proportions import rate
from audit.selectors.health import outcome_counts, shadow_counts
from audit.selectors.log import latency_percentiles, rows_in_window
from mlops.choices import ModelRole

ANSWERING_ROLES = (ModelRole.PRODUCTION, ModelRole.CANARY)


def prediction_log_summary(*, product: str | None, since: datetime, until: datetime | None = None) -> dict:
    """Counts, latency, cache, shadow and outcome figures of the log over ``[since, until)``."""
    rows = rows_in_window(product=product, since=since, until=until)
    answering = rows.filter(role__in=ANSWERING_ROLES)
    counts = list(
        rows.order_by("model_version__name", "model_version__version", "role", "decision")
        .values("model_version_id", "model_version__name", "model_version__version", "role", "decision")
        .annotate(count=Count("pk"))
    )
    totals = answering.order_by().aggregate(answers=Count("pk"), cached=Count("pk", filter=Q(cached=True)))
    return {
        "product": product,
        "since": since,
        "until": until,
        "total_rows": sum(item["count"] for item in counts),
        "answers": totals["answers"],
        "counts": [
            {
                "model_version": str(item["model_version_id"]),
                "model": f"{item['model_version__name']}@{item['model_version__version']}",
                "role": item["role"],
                "decision": item["decision"],
                "count": item["count"],
            }
            for item in counts
        ],
        "latency_ms": latency_percentiles(answering),
        "cache_hit_rate": rate(totals["cached"], totals["answers"]),
        "shadow": shadow_counts(rows.filter(role=ModelRole.SHADOW)),
        "outcomes": outcome_counts(answering),
    }
