"""Rollout reads: what the rollout guard tests and what the rollout page shows, both on `model_health`.

- `rollout_observations`: the canary and production side over one period (the canary's whole run
  for rollback, its current step for promotion) reduced to the counts the guard's sequential
  tests take (`audit.guard.judge`);
- `role_stats`: requests, errors and p95 per role over the last minutes, for the rollout page,
  by the same definitions (so the page and the guard agree on the same window).
"""

from collections.abc import Callable
from datetime import datetime, timedelta

from django.utils import timezone

from audit.rollups.histograms import count_above
from audit.rollups.selectors import minute_counts, minute_floor, window_figures
from audit.selectors.health import Side, answered_figures, health_of
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
    figures = window_figures(product, since, until)  # read once: every count below is of the same rows
    canary_side = Side(product, ModelRole.CANARY, canary_model_id)
    canary = _counts(health_of(canary_side, figures))
    production = _counts(health_of(Side(product, ModelRole.PRODUCTION, production_model_id), figures))
    canary_latency = answered_figures(canary_side, figures).latency
    observations = {"since": since.isoformat(), "until": until.isoformat(), "canary": canary, "production": production}
    for name, bound_of in bounds.items():
        bound = bound_of(production["p95_ms"])
        suffix = "" if name == "latency_bound" else f"_{name.removesuffix('_latency_bound')}"
        observations[f"{name}_ms"] = bound
        observations[f"canary_slower{suffix}"] = 0 if bound is None else count_above(canary_latency, bound)
    return observations


def role_stats(*, product: str, minutes: int, now: datetime | None = None) -> dict:
    """Requests, errors and p95 per role over the last ``minutes`` (`model_health`), and per-minute request counts for a chart."""
    now = now or timezone.now()
    start = minute_floor(now - timedelta(minutes=minutes))
    figures = window_figures(product, start, now)
    roles = {}
    for role in ModelRole.values:
        health = health_of(Side(product, role), figures)
        roles[role] = {"requests": health["requests"], "errors": health["failovers"], "p95_ms": health["latency_ms"]["p95"]}
        if role == ModelRole.SHADOW:
            roles[role]["significant_diffs"] = health["shadow"]["significant_rate"]["count"]
    labels = [start + timedelta(minutes=i) for i in range(minutes + 1)]
    series = {role: [0] * len(labels) for role in [*ModelRole.values, "errors"]}
    for minute, key, counted in minute_counts(product, start, now):
        index = int((minute - start).total_seconds() // 60)
        if 0 <= index < len(labels):
            series[key.role][index] += int(counted.get("rows"))
            if key.fallback_from_id is not None:
                series["errors"][index] += int(counted.get("rows"))
    return {
        "product": product,
        "minutes": minutes,
        "generated_at": now.isoformat(),
        "roles": roles,
        "chart": {"labels": [label.strftime("%H:%M") for label in labels], "series": series},
    }
