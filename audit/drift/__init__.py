"""Drift: per-feature population stability of the logged inputs against each model version's baseline.

No extra service: the prediction log already holds every input, so the job reads it in the
process that runs the rollout guard. One job per module:

- `psi`: bin edges, bin counts and the PSI of two histograms (pure; the formula is there);
- `baseline`: a baseline from rows of features and scores, and which features cannot be watched (pure);
- `services`: building a version's baseline from the best source, and the incremental window job;
- `selectors`: what the API, the admin page and the model list read;
- `runner`: the loop, its turn lock and the in-process thread; `metrics`: the PSI gauges.
"""
