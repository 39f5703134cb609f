"""The fixed buckets the rollups count latencies and scores in, and what is read back from them.

Percentiles of a window come from its summed histogram, never from its rows, so that the cost of a
p95 over a day is the day's minutes and not its millions of answers (`audit.rollups`).

- **Latency**: bucket 0 holds answers under ``LATENCY_FLOOR_MS``; bucket ``i >= 1`` holds
  ``[FLOOR * STEP**(i-1), FLOOR * STEP**i)`` with ``STEP = 2**(1/8)`` (each bucket 9% wide, so a
  percentile read back is within 9% of the exact one); the last bucket is open above (~2 minutes).
- **Score**: ``SCORE_BINS`` equal bins of [0, 1], a score of 1 in the last (the comparison page's bins).

A percentile places each answer inside its bucket (spread evenly) and interpolates linearly
between the two ranks around ``p * (n - 1)``, as PostgreSQL's ``percentile_cont`` does between
values; `count_above` counts a straddling bucket in proportion. Both are functions of the histogram
alone: the same rows give the same figures whether they were summed by the writer, by a rebuild or
straight from the raw rows.
"""

import math

import numpy as np

LATENCY_FLOOR_MS = 0.01
_PER_OCTAVE = 8
STEP = 2 ** (1 / _PER_OCTAVE)
LATENCY_BUCKETS = 1 + _PER_OCTAVE * 24  # the last lower edge: 0.01 ms * 2**23.875, about 2.5 minutes
SCORE_BINS = 10


def latency_buckets(ms: np.ndarray) -> np.ndarray:
    """The bucket of each latency (ms; NaN and anything under the floor in bucket 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        above = 1 + np.floor(_PER_OCTAVE * np.log2(ms / LATENCY_FLOOR_MS))
    return np.where(ms >= LATENCY_FLOOR_MS, np.minimum(above, LATENCY_BUCKETS - 1), 0).astype(np.intp)


def latency_edges(bucket: int) -> tuple[float, float]:
    """``[low, high)`` of a latency bucket (the open last one is given one step of width)."""
    if bucket == 0:
        return 0.0, LATENCY_FLOOR_MS
    return LATENCY_FLOOR_MS * STEP ** (bucket - 1), LATENCY_FLOOR_MS * STEP**bucket


def score_bins(scores: np.ndarray) -> np.ndarray:
    """The bin of each score in [0, 1] (a score of 1 in the last)."""
    return np.clip(np.floor(scores * SCORE_BINS), 0, SCORE_BINS - 1).astype(np.intp)


def _ordered(histogram: dict[int, int]) -> list[tuple[int, int]]:
    return sorted((bucket, count) for bucket, count in histogram.items() if count > 0)


def _ranked(buckets: list[tuple[int, int]], rank: int) -> float:
    """The latency of the ``rank``-th answer (from 0), its bucket's answers taken as spread evenly:
    the k-th of n sits at (k + 0.5) / n of the bucket's width."""
    below = 0
    for bucket, count in buckets:
        if rank < below + count:
            low, high = latency_edges(bucket)
            return low + (high - low) * (rank - below + 0.5) / count
        below += count
    raise IndexError(rank)


def percentile(histogram: dict[int, int], p: float) -> float | None:
    """The ``p`` quantile (0..1) of the latencies counted in ``histogram`` (bucket -> count); None when empty.

    ``percentile_cont`` over the answers' places in their buckets: linear between the two ranks around ``p * (n - 1)``.
    """
    buckets = _ordered(histogram)
    total = sum(count for _, count in buckets)
    if total == 0:
        return None
    position = p * (total - 1)
    low, high = math.floor(position), math.ceil(position)
    at_low = _ranked(buckets, low)
    return at_low + (_ranked(buckets, high) - at_low) * (position - low)


def percentiles(histogram: dict[int, int], points=(0.5, 0.95, 0.99)) -> dict[str, float | None]:
    return {f"p{round(p * 100)}": percentile(histogram, p) for p in points}


def count_above(histogram: dict[int, int], ms: float) -> int:
    """How many of the latencies are above ``ms``: the buckets above it, and a straddling bucket in proportion."""
    above = 0.0
    for bucket, count in histogram.items():
        low, high = latency_edges(bucket)
        if low >= ms:
            above += count
        elif high > ms:
            above += count * (high - ms) / (high - low)
    return math.floor(above)
