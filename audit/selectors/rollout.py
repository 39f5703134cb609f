"""Rollout reads: what the rollout guard tests and what the rollout page shows, both on `model_health`.

- `rollout_observations`: the canary and production side over one period (the canary's whole run
  for rollback, its current step for promotion) reduced to the counts the guard's sequential
  tests take (`audit.guard.judge`);
- `role_stats`: requests, errors and p95 per role over the last minutes, for the rollout page,
  by the same definitions (so the page and the guard agree on the same window).
"""

from collections.abc import Callable
from datetime import datetime, timedelta

from django.db.models import Count, Q
from django.db.models.functions import TruncMinute
from django.utils import timezone

from audit.selectors.health import Side, model_health, slower_than, window_rows
from mlops.choices import ModelRole


def _counts(health: dict) -> dict:
    outcomes, shadow = health["outcomes"], health["shadow"]["significant_rate"]
    return {
        "requests": health["requests"],
        "answered": health["answered"],
        "failovers": health["failovers"] or 0,
        "p95_ms": health["latency_ms"]["p95"],
        "negatives": outcomes["negatives"],
        "false_positives": outcomes["false_positives"],
        "shadow_classified": shadow["total"],
        "shadow_significant": shadow["count"],
    }


def rollout_observations(
    *,
    product: str,
    canary_model_id,
    production_model_id,
    since: datetime,
    until: datetime,
    bounds: dict[str, Callable[[float | None], float | None]],
) -> dict:
    """The canary's and production's counts over ``[since, until)``, and how many canary answers
    were slower than each latency bound: ``bounds`` maps a name to a function of production's p95
    (e.g. the guard's L), and the result has ``<name>_ms`` and ``canary_slower[_<name>]`` for each.
    """
    canary_side = Side(product, ModelRole.CANARY, canary_model_id)
    canary = _counts(model_health(canary_side, since=since, until=until))
    production = _counts(model_health(Side(product, ModelRole.PRODUCTION, production_model_id), since=since, until=until))
    observations = {"since": since.isoformat(), "until": until.isoformat(), "canary": canary, "production": production}
    for name, bound_of in bounds.items():
        bound = bound_of(production["p95_ms"])
        suffix = "" if name == "latency_bound" else f"_{name.removesuffix('_latency_bound')}"
        observations[f"{name}_ms"] = bound
        observations[f"canary_slower{suffix}"] = 0 if bound is None else slower_than(canary_side, since=since, until=until, ms=bound)
    return observations


def role_stats(*, product: str, minutes: int, now: datetime | None = None) -> dict:
    """Requests, errors and p95 per role over the last ``minutes`` (`model_health`), and per-minute request counts for a chart."""
    now = now or timezone.now()
    start = now - timedelta(minutes=minutes)
    roles = {}
    for role in ModelRole.values:
        health = model_health(Side(product, role), since=start, until=now)
        roles[role] = {"requests": health["requests"], "errors": health["failovers"], "p95_ms": health["latency_ms"]["p95"]}
        if role == ModelRole.SHADOW:
            roles[role]["significant_diffs"] = health["shadow"]["significant_rate"]["count"]
    per_minute = (
        window_rows(product, start, now)
        .annotate(minute=TruncMinute("created_at"))
        .values("minute", "role")
        .annotate(n=Count("pk"), errors=Count("pk", filter=Q(fallback_from__isnull=False)))
        .order_by("minute")
    )
    first_minute = start.replace(second=0, microsecond=0)
    labels = [first_minute + timedelta(minutes=i) for i in range(minutes + 1)]
    series = {role: [0] * len(labels) for role in [*ModelRole.values, "errors"]}
    for row in per_minute:
        index = int((row["minute"] - first_minute).total_seconds() // 60)
        if 0 <= index < len(labels):
            series[row["role"]][index] += row["n"]
            series["errors"][index] += row["errors"]
    return {
        "product": product,
        "minutes": minutes,
        "generated_at": now.isoformat(),
        "roles": roles,
        "chart": {"labels": [label.strftime("%H:%M") for label in labels], "series": series},
    }
