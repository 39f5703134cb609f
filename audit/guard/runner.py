"""Running the rollout guard: every interval, in one process at a time across the deployment.

Two ways to run it, one loop (`run_forever`):

- ``manage.py rollout_guard``: its own process, the production way;
- the embedded default: a daemon thread of each server process, when ``ROLLOUT_GUARD_IN_PROCESS``
  is on. The server entry points send `mlops.hooks.serving_started` and `start_in_process`
  receives it (connected in `audit.apps`), so a management command, a migration or a test run
  never starts the thread. `guard` is its `ProcessLocal`: started once per process, forgotten in
  a forked child, and its ``state`` says what the thread is doing.

Every turn first takes a lock in the shared cache (`acquire_turn`), so several processes running
the guard evaluate once per interval between them. The turn also creates the prediction log's
partitions ahead (`audit.services.prediction_log_partitions_ensure`: a catalog read when they exist).
"""

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections

from audit.guard.judge import Verdict
from audit.guard.services import rollout_guard_evaluate
from audit.services import prediction_log_partitions_ensure
from mlops.background import resilience
from mlops.background.process import ProcessLocal

logger = logging.getLogger(__name__)

LOCK_KEY = "rollout-guard-lock"

# The in-process thread's states, besides ProcessLocal's "stopped".
STARTING = "starting"
EVALUATING = "evaluating"
IDLE = "idle"  # between turns: the last turn (its own or another process's) is over


def acquire_turn(interval: float) -> bool:
    """True for one caller per ``interval`` across every process sharing the cache."""
    try:
        return cache.add(LOCK_KEY, f"{os.getpid()}:{uuid.uuid4().hex[:8]}", timeout=max(1, int(interval * 0.9)))
    except Exception:
        logger.warning("rollout guard could not reach the shared cache; skipping this turn", exc_info=True)
        return False


def _partitions_ahead() -> list[str]:
    return prediction_log_partitions_ensure(ahead_days=settings.AUDIT_PARTITIONS_AHEAD, days=settings.AUDIT_PARTITION_DAYS)


def run_forever(
    *,
    interval: float,
    stop: threading.Event,
    use_lock: bool = True,
    report: Callable[[Verdict], None] | None = None,
    set_state: Callable[[str], None] = lambda state: None,
) -> None:
    """Evaluate every ``interval`` seconds until ``stop`` is set."""
    while not stop.is_set():
        started = time.monotonic()
        if not use_lock or acquire_turn(interval):
            set_state(EVALUATING)
            close_old_connections()
            try:  # not `background_turn`: a report that fails is logged as a failed evaluation is
                for verdict in resilience.database_call("rollout_guard", rollout_guard_evaluate):
                    if report is not None:
                        report(verdict)
            except resilience.DependencyUnavailable:  # an open circuit has its metric; next turn tries again
                pass
            except Exception:
                logger.exception("rollout guard evaluation failed")
            # The guard process is the one that always runs: it keeps the log's days ahead.
            resilience.background_turn(
                "audit_partitions", _partitions_ahead, log=logger, failed="creating the prediction log's partitions ahead failed"
            )
            close_old_connections()
        set_state(IDLE)
        stop.wait(max(0.1, interval - (time.monotonic() - started)))


# --- The in-process thread --------------------------------------------------------------------

_stop = threading.Event()
_thread: threading.Thread | None = None


def _start_thread() -> None:
    global _thread
    _stop.clear()
    interval = settings.ROLLOUT_GUARD_INTERVAL_SECONDS
    guard.set_state(STARTING)
    _thread = threading.Thread(
        target=run_forever,
        kwargs={"interval": interval, "stop": _stop, "set_state": guard.set_state},
        name="rollout-guard",
        daemon=True,
    )
    _thread.start()
    logger.info("rollout guard running in this process every %gs", interval)


def _forget_thread() -> None:
    # A forked child has no copy of the parent's thread; a fresh event keeps the parent's stop apart.
    global _thread, _stop
    _thread, _stop = None, threading.Event()


guard = ProcessLocal("rollout-guard", start=_start_thread, after_fork=_forget_thread)


def start_in_process(**signal) -> None:
    """Start this server process's guard thread when ``ROLLOUT_GUARD_IN_PROCESS`` is on.

    The receiver of `mlops.hooks.serving_started` (hence ``**signal``: its sender and arguments).
    """
    if settings.ROLLOUT_GUARD_IN_PROCESS:
        guard.ensure_started()


def stop_in_process(timeout: float = 5.0) -> None:
    """Stop this process's guard thread (and let a later `start_in_process` start a new one)."""
    _stop.set()
    if _thread is not None:
        _thread.join(timeout)
    guard.forget()
