"""A drift baseline from rows of features and their scores. Pure: no database, no files.

The service (`audit.drift.services`) finds the rows (a reference file, a backtest's rows or the
first predictions) and hands them here as a matrix; this module decides which features can be
watched and makes their histograms (`audit.drift.psi`).
"""

from collections.abc import Iterable

import numpy as np

from audit.drift.psi import bin_counts, quantile_edges

DROPPED = "dropped by redaction (AUDIT_REDACT_DROP): the log does not keep it"
HASHED = "hashed by redaction (AUDIT_REDACT_HASH): the log keeps no number"
NO_NUMBERS = "no numeric value in the baseline rows"


def redacted(names: Iterable[str], *, drop: Iterable[str], hashed: Iterable[str]) -> dict[str, str]:
    """The features of ``names`` the log redacts, each with why it cannot be monitored."""
    drop, hashed = set(drop), set(hashed)
    return {name: DROPPED if name in drop else HASHED for name in names if name in drop or name in hashed}


_NUMERIC_TYPES = frozenset({int, float, type(None)})


def _number(value) -> float:
    # bool is an int to Python, not a measurement; hashed values are strings
    return float(value) if type(value) in (int, float) else np.nan


def feature_matrix(rows: Iterable, names: list[str]) -> np.ndarray:
    """Logged feature dicts as a float64 matrix in ``names`` order (NaN where a value is missing or not a number).

    Column by column: numpy converts a column of numbers (None as NaN) in C, and only a column with
    something else in it (a hashed string, a bool) goes value by value: half the time of a
    value-by-value matrix (7 against 14 µs per 30-feature row, measured side by side).
    """
    rows = [features if isinstance(features, dict) else {} for features in rows]
    matrix = np.full((len(rows), len(names)), np.nan)
    for index, name in enumerate(names):
        column = [features.get(name) for features in rows]
        if _NUMERIC_TYPES.issuperset(map(type, column)):  # a C loop over the column
            matrix[:, index] = np.array(column, dtype=np.float64)
        else:
            matrix[:, index] = [_number(value) for value in column]
    return matrix


def histogram(values: np.ndarray, bins: int) -> dict | None:
    """``{"edges", "counts"}`` of the finite ``values``, or None when there are none."""
    edges = quantile_edges(np.asarray(values, dtype=np.float64), bins)
    if not edges:
        return None
    return {"edges": edges, "counts": bin_counts(np.asarray(values, dtype=np.float64), edges)}


def build_baseline(*, names: list[str], matrix: np.ndarray, scores: np.ndarray | None, bins: int, not_monitored: dict[str, str]) -> dict:
    """``{"features", "score", "not_monitored", "rows"}`` of a baseline: one histogram per monitored feature."""
    features, skipped = {}, dict(not_monitored)
    for index, name in enumerate(names):
        if name in skipped:
            continue
        made = histogram(matrix[:, index], bins)
        if made is None:
            skipped[name] = NO_NUMBERS
        else:
            features[name] = made
    score = histogram(scores, bins) if scores is not None and len(scores) else None
    return {"features": features, "score": score, "not_monitored": skipped, "rows": int(matrix.shape[0])}
