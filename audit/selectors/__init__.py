"""Audit reads. One module a subject:

- `log`: the prediction log itself (summary, recent rows, a prediction's shadow comparison,
  windows and durations);
- `health`: the one definition of a model's health over a window (`model_health`), which every
  judgement below reads;
- the canary comparison and the rollout page's figures, built on `health`.
"""

from audit.selectors.health import Side, model_health, outcome_label, samples, slower_than  # noqa: F401
from audit.selectors.log import (  # noqa: F401
    MAX_WINDOW,
    canary_comparison,
    canary_measure,
    known_products,
    parse_duration,
    prediction_log_recent,
    prediction_log_summary,
    role_stats,
    rows_in_window,
    shadow_comparison_rows,
)
