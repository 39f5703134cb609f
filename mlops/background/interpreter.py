"""The interpreter settings of a serving process, applied once per worker before it serves.

**Garbage collection.** A serving process keeps many long-lived objects (loaded models, the
prediction cache, the log writer's read-back window of recent records) and makes many
short-lived ones per request. With CPython's default thresholds (700, 10, 10) the collector
runs full collections over that whole heap every few seconds under load: measured on the hot
lane at concurrency 1, the p99 was 60–110 ms with the defaults against 5–6 ms with these
(bench/README.md, "Garbage collection"). So each worker freezes what it holds at start (the
modules, settings and sessions are never garbage: the collector stops scanning them) and
collects the young generation after ``SERVER_GC_THRESHOLDS[0]`` allocations instead of 700;
cycles are still collected, only less often. Turning the collector off was no faster than this
and would let cyclic garbage (tracebacks, for one) grow without bound.

**GIL switch interval.** ``SERVER_SWITCH_INTERVAL`` (seconds, unset: Python's 5 ms) bounds how
long a thread that wants the GIL (a request thread back from onnxruntime) waits for another
that holds it (the log writer, the shadow pool). Measured within this machine's noise: off by
default.
"""

import gc
import sys

from django.conf import settings


def tune_for_serving() -> None:
    """Apply the settings above in this process (a server's worker, once, before it serves)."""
    gc.collect()
    gc.freeze()
    thresholds = settings.SERVER_GC_THRESHOLDS
    if thresholds:
        gc.set_threshold(*thresholds)
    if settings.SERVER_SWITCH_INTERVAL:
        sys.setswitchinterval(settings.SERVER_SWITCH_INTERVAL)
