"""Running the drift job beside the rollout guard: the same process, its own loop, interval and turn lock.

Wherever the guard runs, drift runs: a daemon thread of each server process when
``ROLLOUT_GUARD_IN_PROCESS`` is on (started by `mlops.hooks.serving_started`, as the guard's
thread is), or a second thread of ``manage.py rollout_guard``. ``DRIFT_ENABLED`` off stops it.
Every turn takes a lock in the shared cache first, so several processes evaluate once per
``DRIFT_INTERVAL_SECONDS`` between them; a slow evaluation never delays the guard's turns.
"""

import logging
import os
import threading
import time
import uuid

from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections

from audit.drift.services import drift_evaluate
from mlops.background import resilience
from mlops.background.process import ProcessLocal

logger = logging.getLogger(__name__)

LOCK_KEY = "drift-lock"
STARTING, EVALUATING, IDLE = "starting", "evaluating", "idle"


def acquire_turn(interval: float) -> bool:
    """True for one caller per ``interval`` across every process sharing the cache."""
    try:
        return cache.add(LOCK_KEY, f"{os.getpid()}:{uuid.uuid4().hex[:8]}", timeout=max(1, int(interval * 0.9)))
    except Exception:
        logger.warning("drift job could not reach the shared cache; skipping this turn", exc_info=True)
        return False


def run_forever(*, interval: float, stop: threading.Event, use_lock: bool = True, set_state=lambda state: None) -> None:
    """Evaluate every ``interval`` seconds until ``stop`` is set."""
    while not stop.is_set():
        started = time.monotonic()
        if not use_lock or acquire_turn(interval):
            set_state(EVALUATING)
            close_old_connections()
            resilience.background_turn("drift", drift_evaluate, log=logger, failed="drift evaluation failed")
            close_old_connections()
        set_state(IDLE)
        stop.wait(max(0.1, interval - (time.monotonic() - started)))


_stop = threading.Event()
_thread: threading.Thread | None = None


def start_thread(stop: threading.Event | None = None) -> threading.Thread:
    """A daemon thread running the loop every ``DRIFT_INTERVAL_SECONDS`` (``manage.py rollout_guard`` passes its stop event)."""
    interval = settings.DRIFT_INTERVAL_SECONDS
    thread = threading.Thread(
        target=run_forever,
        kwargs={"interval": interval, "stop": stop or _stop, "set_state": drift.set_state},
        name="drift",
        daemon=True,
    )
    thread.start()
    logger.info("drift job running in this process every %gs", interval)
    return thread


def _start() -> None:
    global _thread
    _stop.clear()
    drift.set_state(STARTING)
    _thread = start_thread()


def _forget_thread() -> None:
    global _thread, _stop
    _thread, _stop = None, threading.Event()


drift = ProcessLocal("drift", start=_start, after_fork=_forget_thread)


def start_in_process(**signal) -> None:
    """The receiver of `mlops.hooks.serving_started`: start the thread where the guard's thread runs."""
    if settings.ROLLOUT_GUARD_IN_PROCESS and settings.DRIFT_ENABLED:
        drift.ensure_started()


def stop_in_process(timeout: float = 5.0) -> None:
    _stop.set()
    if _thread is not None:
        _thread.join(timeout)
    drift.forget()
