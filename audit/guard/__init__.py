"""The rollout guard: stops a canary shown to misbehave, and (opt-in) moves a canary shown to be
as good as production up the ladder, from what the prediction log already records.

How it decides. For each active canary it reads the one definition of model health
(`audit.selectors.health.model_health`, through `audit.selectors.rollout.rollout_observations`)
over *all* of the canary's traffic since it started (``CanaryConfig.started_at``; no sliding
window: a window would forget evidence and break the sequential test's validity), and tests four
Bernoulli rates, each with the mixture SPRT of `audit.evidence.sequential` (an exact Beta mixture
of likelihood ratios; by Ville's inequality "shown above the limit" is a one-sided 2.5% decision
however often the guard looks, every few seconds for hours):

1. error rate: canary attempts that failed over to production over all canary attempts, vs
   ``ROLLOUT_GUARD_MAX_ERROR_RATE``;
2. latency: the share of canary answers slower than L = max(``ROLLOUT_GUARD_LATENCY_RATIO`` x
   production's p95, production's p95 + ``ROLLOUT_GUARD_LATENCY_MIN_DELTA_MS``), production's p95
   over the same period, vs 5% ("the canary's p95 is above L" is "more than 5% are slower than L");
3. false-positive rate: among canary answers whose outcome (the one outcome rule) is negative,
   the share it blocked, vs ``ROLLOUT_GUARD_MAX_FP_RATE``;
4. shadow differences: the share of the canary model's shadow runs that differ significantly
   from production, vs ``ROLLOUT_GUARD_MAX_SIGNIFICANT_DIFF_RATE``.

A metric is not judged below a small floor (``ROLLOUT_GUARD_MIN_REQUESTS``, ``_MIN_OUTCOMES``)
against start-up noise; the test needs none for validity. The first rate shown above its limit
stops the canary and records a `RollbackEvent` (`mlops.services.canary_auto_rollback`) with the
statistic (count, total, estimate), its 95% confidence sequence, the always-valid p-value, the
limit and the sample sizes of both sides; it logs a warning and counts
``mlops_rollout_rollbacks_total``.

Automatic promotion (``CanaryConfig.auto_promote``, off by default; the rollout page and
``POST /v1/canary`` switch it). After ``ROLLOUT_PROMOTE_MIN_REQUESTS`` requests and
``ROLLOUT_PROMOTE_MIN_OUTCOMES`` outcomes at the current step (since ``step_started_at``), when
every metric is shown non-inferior at the step (error rate below ``ROLLOUT_PROMOTE_MAX_ERROR_RATE``;
fewer than 5% of answers slower than production's p95 x (1 + ``ROLLOUT_PROMOTE_LATENCY_MARGIN``);
the canary's FP upper confidence bound at most production's lower bound + ``ROLLOUT_PROMOTE_FP_MARGIN``;
significant shadow differences below ``ROLLOUT_PROMOTE_MAX_SIGNIFICANT_DIFF_RATE`` when the canary
runs as a shadow), the guard calls `canary_step` (at the last rung `canary_promote`) with no user
and a reason beginning ``[rollout guard]`` that carries the figures; the history names the guard.
It counts ``mlops_rollout_promotions_total``.

One job per module:

- `audit.selectors.rollout`: what the log says about a canary (on `model_health`);
- `judge`: each metric's test, the first breach, non-inferiority and what the guard waits for,
  pure (no database);
- `services`: one evaluation of every active canary, acting through the mlops rollout services,
  and the status the rollout page shows (`rollout_guard_status`, a `mlops.hooks` provider);
- `runner`: the loop, the cross-process turn lock and the in-process thread;
- `metrics`: its Prometheus counters.

Where it runs: ``manage.py rollout_guard`` in production (one process); in the embedded
default a daemon thread of each server process when ``ROLLOUT_GUARD_IN_PROCESS`` is on, started
by the server entry points (`mlops.hooks.serving_started`), never by a management command. A
lock in the shared cache lets only one process evaluate per interval.
"""
