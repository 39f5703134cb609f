"""Audit reads. One module a subject:

- `log`: the prediction log itself (summary, recent rows, a prediction's shadow comparison,
  windows and durations);
- `health`: the one definition of a model's health over a window (`model_health`), which every
  judgement below reads;
- `rollout`: what the rollout guard tests (`rollout_observations`) and the rollout page's
  counters (`role_stats`), built on `health`;
- the canary comparison, built on `health`.
"""

from audit.selectors.health import Side, model_health, outcome_label, samples, slower_than  # noqa: F401
from audit.selectors.log import (  # noqa: F401
    MAX_WINDOW,
    canary_comparison,
    known_products,
    parse_duration,
    prediction_log_recent,
    prediction_log_summary,
    rows_in_window,
    shadow_comparison_rows,
)
from audit.selectors.rollout import role_stats, rollout_observations  # noqa: F401
