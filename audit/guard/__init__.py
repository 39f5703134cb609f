"""The rollout guard: stops a canary that misbehaves, from what the prediction log already records.

For each active canary it reads the product's `PredictionLog` (and `Outcome`) rows over a
sliding window (``ROLLOUT_GUARD_WINDOW_SECONDS``, never earlier than the canary's start) and
compares, in this order:

1. error rate: canary attempts that failed over to production (rows with ``fallback_from`` =
   the canary) over all canary attempts, vs ``ROLLOUT_GUARD_MAX_ERROR_RATE``;
2. latency: the canary's p95 vs ``ROLLOUT_GUARD_LATENCY_RATIO`` x production's p95 over the
   same window (and at least ``ROLLOUT_GUARD_LATENCY_MIN_DELTA_MS`` above it);
3. false-positive rate: among canary answers whose outcome turned out negative, the share it
   blocked, vs ``ROLLOUT_GUARD_MAX_FP_RATE`` (only once ``ROLLOUT_GUARD_MIN_OUTCOMES`` exist);
4. shadow differences: the share of the canary model's shadow runs that differ significantly
   from production, vs ``ROLLOUT_GUARD_MAX_SIGNIFICANT_DIFF_RATE``.

Nothing is judged below ``ROLLOUT_GUARD_MIN_REQUESTS`` in the window. The first breach stops
the canary and records a `RollbackEvent` (`mlops.services.canary_auto_rollback`), logs a
warning and counts ``mlops_rollout_rollbacks_total``.

One job per module:

- `audit.selectors` (``canary_measure``): what the log says about a canary;
- `judge`: the thresholds and the verdict, pure (no database);
- `services`: one evaluation of every active canary, acting through the mlops rollout services;
- `runner`: the loop, the cross-process turn lock and the in-process thread;
- `metrics`: its Prometheus counters.

Where it runs: ``manage.py rollout_guard`` in production (one process); in the embedded
default a daemon thread of each server process when ``ROLLOUT_GUARD_IN_PROCESS`` is on, started
by the server entry points (`mlops.hooks.serving_started`), never by a management command. A
lock in the shared cache lets only one process evaluate per interval.
"""
