"""The prediction log summary of ``GET /v1/audit/summary``: counts per version, role and decision,
and the answers' latency, cache, shadow and outcome figures, by the definitions of
`audit.selectors.health` (answering rows: roles production and canary, failovers included, since a
client got each of them).
"""

from datetime import datetime

from django.utils import timezone

from audit.evidence.proportions import rate
from audit.rollups.figures import DECISIONS, total
from audit.rollups.histograms import percentiles
from audit.rollups.selectors import window_figures
from audit.selectors.health import outcome_counts, shadow_counts, version_names
from mlops.choices import ModelRole

ANSWERING_ROLES = (ModelRole.PRODUCTION, ModelRole.CANARY)


def prediction_log_summary(*, product: str | None, since: datetime, until: datetime | None = None) -> dict:
    """Counts, latency, cache, shadow and outcome figures of the log over ``[since, until)`` (until: now)."""
    figures = window_figures(product, since, until or timezone.now())
    answering = total(value for key, value in figures.items() if key.role in ANSWERING_ROLES)
    names = {item["id"]: item["model"] for item in version_names({key.model_version_id for key in figures})}
    per_cell: dict[tuple, int] = {}
    for key, value in figures.items():
        for decision in DECISIONS:
            if value.get(decision):
                cell = (names[key.model_version_id], key.model_version_id, key.role, decision)
                per_cell[cell] = per_cell.get(cell, 0) + int(value.get(decision))
    counts = [
        {"model_version": version, "model": model, "role": role, "decision": decision, "count": count}
        for (model, version, role, decision), count in sorted(per_cell.items())
    ]
    answers = int(answering.get("rows"))
    return {
        "product": product,
        "since": since,
        "until": until,
        "total_rows": sum(item["count"] for item in counts),
        "answers": answers,
        "counts": counts,
        "latency_ms": percentiles(answering.latency),
        "cache_hit_rate": rate(int(answering.get("cached")), answers),
        "shadow": shadow_counts(total(value for key, value in figures.items() if key.role == ModelRole.SHADOW)),
        "outcomes": outcome_counts(answering),
    }
