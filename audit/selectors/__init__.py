"""Audit reads. One module a subject:

- `log`: the prediction log itself (recent rows, a prediction's shadow comparison, windows and
  durations);
- `health`: the one definition of a model's health over a window (`model_health`), which every
  judgement below reads;
- `rollout`: what the rollout guard tests (`rollout_observations`) and the rollout page's
  counters (`role_stats`), built on `health`;
- `comparison`: the canary against production, with the evidence on every difference and per
  segment (`canary_comparison`), built on `health`;
- `summary`: the log summary of the audit API, on `health`'s outcome and shadow counts.
"""

from audit.rollups.selectors import outcome_label  # noqa: F401
from audit.selectors.comparison import canary_comparison, comparison_sides  # noqa: F401
from audit.selectors.health import Side, model_health, samples, slower_than  # noqa: F401
from audit.selectors.log import (  # noqa: F401
    MAX_WINDOW,
    known_products,
    parse_duration,
    prediction_log_recent,
    rows_in_window,
    shadow_comparison_rows,
)
from audit.selectors.rollout import role_stats, rollout_observations  # noqa: F401
from audit.selectors.summary import prediction_log_summary  # noqa: F401
