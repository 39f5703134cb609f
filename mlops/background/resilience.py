"""Retries and circuit breakers for the platform's dependencies, off the request path.

A `Dependency` is one thing that fails as a whole: the database, or one S3 endpoint. A call to it
is retried on transient failures only (the dependency's ``transient`` predicate: a dropped
connection, a timeout, a 5xx; never a refused credential or a constraint violation) with
exponential backoff and jitter (tenacity), inside the dependency's circuit breaker (pybreaker):
after ``fail_max`` failed calls in a row the breaker opens and calls fail at once with
`DependencyUnavailable` for ``reset_seconds``, then one trial call decides. Non-transient errors
pass through and never trip it. Each process has its own breakers.

A caller with a fallback of its own (the prediction log spills to disk) takes a `circuit`: it
opens on the first failure and lets one trial call through every probe interval plus jitter,
without retries. A caller that must wait rather than give up (the stream recorder) takes a
`retrying` policy alone, without a breaker. Every tenacity policy of the platform is built here.

Metrics: ``mlops_circuit_state{dependency}`` (0 closed, 1 half-open, 2 open),
``mlops_dependency_calls_total{dependency,operation,outcome}`` (ok, error after retries,
rejected while open) and ``mlops_dependency_retries_total{dependency,operation}``.

The request path holds what it needs in process and calls through here only for the shared
prediction-cache tier (`inference.cache`): a `circuit`, which never retries and, open, refuses at once.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import pybreaker
import tenacity
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections
from prometheus_client import Counter, Gauge

CIRCUIT_STATE = Gauge(
    "mlops_circuit_state",
    "Circuit breaker per dependency (database, s3:<endpoint>, redis:prediction-cache, ...): 0 closed, 1 half-open, 2 open.",
    ["dependency"],
    multiprocess_mode="livemax",
)
CALLS = Counter(
    "mlops_dependency_calls",
    "Calls to a dependency by outcome: ok, error (after retries), rejected (circuit open).",
    ["dependency", "operation", "outcome"],
)
RETRIES = Counter("mlops_dependency_retries", "Attempts retried after a transient failure.", ["dependency", "operation"])

_STATE_VALUES = {pybreaker.STATE_CLOSED: 0, pybreaker.STATE_HALF_OPEN: 1, pybreaker.STATE_OPEN: 2}
_T = TypeVar("_T")


class DependencyUnavailable(Exception):
    """The dependency's circuit is open: the call was not tried."""


@dataclass(frozen=True)
class Policy:
    attempts: int  # per call, the first included
    initial_seconds: float  # first wait; each next one doubles, plus up to `jitter_seconds`
    max_seconds: float  # cap of one wait
    fail_max: int = 1  # failed calls in a row that open the circuit
    reset_seconds: float = 0.0  # how long it stays open before a trial call
    jitter_seconds: float | None = None  # added at random to each wait; None: initial_seconds
    reset_jitter_seconds: float = 0.0  # added at random to each opening, so that processes do not probe in step


def retrying(
    policy: Policy, *, transient: Callable[[BaseException], bool], before_sleep: Callable[[tenacity.RetryCallState], None] | None = None
) -> tenacity.Retrying:
    """Tenacity's retry loop for ``policy``: transient failures only, exponential backoff with
    jitter, the last failure raised as itself."""
    jitter = policy.initial_seconds if policy.jitter_seconds is None else policy.jitter_seconds
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(transient),
        stop=tenacity.stop_after_attempt(max(1, policy.attempts)),
        wait=tenacity.wait_exponential_jitter(multiplier=policy.initial_seconds, jitter=jitter, max=policy.max_seconds),
        before_sleep=before_sleep,
        reraise=True,
    )


class _Listener(pybreaker.CircuitBreakerListener):
    def __init__(self, dependency: Dependency):
        self.dependency = dependency

    def state_change(self, cb, old_state, new_state):
        CIRCUIT_STATE.labels(self.dependency.name).set(_STATE_VALUES.get(new_state.name, 0))
        if new_state.name == pybreaker.STATE_OPEN:
            self.dependency._opened()


class Dependency:
    def __init__(self, name: str, policy: Callable[[], Policy], transient: Callable[[BaseException], bool]):
        self.name = name
        self._policy = policy  # read per call: settings may change (tests, an operator's shell)
        self._transient = transient
        self._reset_jitter = 0.0  # drawn each time the circuit opens
        initial = policy()
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=initial.fail_max,
            reset_timeout=initial.reset_seconds,
            exclude=[lambda exc: not transient(exc)],  # a bad request says nothing about the dependency's health
            listeners=[_Listener(self)],
            name=name,
            throw_new_error_on_trip=False,  # the failure that trips it is reported as itself
        )
        CIRCUIT_STATE.labels(name).set(0)

    @property
    def is_open(self) -> bool:
        return self.breaker.current_state == pybreaker.STATE_OPEN

    def call(self, operation: str, fn: Callable[[], _T], *, retry: bool = True, before_retry: Callable[[], None] | None = None) -> _T:
        """``fn()`` with retries inside the breaker; raises `DependencyUnavailable` when open,
        else ``fn``'s own exception after the last attempt. ``retry=False``: one attempt, for
        work that someone is waiting on (the breaker still makes an outage fail fast)."""
        policy = self._policy()

        def before_sleep(retry_state: tenacity.RetryCallState) -> None:
            RETRIES.labels(self.name, operation).inc()
            if before_retry is not None:
                before_retry()

        # One attempt needs no retry loop: a circuit on the request path (the shared cache tier) saves its cost.
        once = not retry or policy.attempts <= 1
        attempts = fn if once else retrying(policy, transient=self._transient, before_sleep=before_sleep)
        self.breaker.fail_max = policy.fail_max
        self.breaker.reset_timeout = policy.reset_seconds + self._reset_jitter
        try:
            result = self.breaker.call(attempts) if once else self.breaker.call(attempts, fn)
        except pybreaker.CircuitBreakerError:
            CALLS.labels(self.name, operation, "rejected").inc()
            raise DependencyUnavailable(f"{self.name} is failing: circuit open, not tried (retry later)") from None
        except Exception:
            CALLS.labels(self.name, operation, "error").inc()
            raise
        CALLS.labels(self.name, operation, "ok").inc()
        return result

    def trip(self) -> None:
        """Open the circuit after a failure seen outside `call` (the caller knows the dependency failed)."""
        self.breaker.open()

    def reset(self) -> None:
        self.breaker.close()
        CIRCUIT_STATE.labels(self.name).set(0)

    def _opened(self) -> None:
        jitter = self._policy().reset_jitter_seconds
        self._reset_jitter = random.uniform(0, jitter) if jitter else 0.0


_dependencies: dict[str, Dependency] = {}
_lock = threading.Lock()


def dependency(name: str, policy: Callable[[], Policy], transient: Callable[[BaseException], bool]) -> Dependency:
    """The process's `Dependency` called ``name``, made on first use."""
    with _lock:
        found = _dependencies.get(name)
        if found is None:
            found = _dependencies[name] = Dependency(name, policy, transient)
        return found


def circuit(name: str, *, probe_seconds: float) -> Dependency:
    """A breaker of its own for a caller that has a fallback (the prediction log's spill file).

    It opens on the first failure; while open, calls are refused (`DependencyUnavailable`) and the
    caller falls back; a trial call goes through ``probe_seconds`` plus up to as much jitter after
    each opening. No retries: the fallback is cheaper than waiting. Not registered: every caller
    owns its own (two writers in one process do not share their state), under the metric label ``name``.
    """
    policy = Policy(attempts=1, initial_seconds=0.0, max_seconds=0.0, reset_seconds=probe_seconds, reset_jitter_seconds=probe_seconds)
    return Dependency(name, lambda: policy, transient=lambda exc: True)


def reset() -> None:
    """Close and forget every breaker (tests; an operator's shell after fixing a dependency)."""
    with _lock:
        for found in _dependencies.values():
            found.reset()
        _dependencies.clear()


# --- The database ---------------------------------------------------------------------------


def _database_policy() -> Policy:
    return Policy(
        attempts=settings.DB_RETRY_ATTEMPTS,
        initial_seconds=settings.DB_RETRY_INITIAL_SECONDS,
        max_seconds=settings.DB_RETRY_MAX_SECONDS,
        fail_max=settings.DB_BREAKER_FAIL_MAX,
        reset_seconds=settings.DB_BREAKER_RESET_SECONDS,
    )


def _database_transient(exc: BaseException) -> bool:
    # OperationalError: the server went away, refused, timed out; InterfaceError: the connection
    # is closed. IntegrityError, DataError and ProgrammingError are the request's fault.
    return isinstance(exc, OperationalError | InterfaceError)


def database_call(operation: str, fn: Callable[[], _T], *, retry: bool = True) -> _T:
    """Database work off the request path (not inside a transaction: it may run more than once).

    Between attempts this thread's broken connections are dropped, so the next attempt connects again.
    """
    return dependency("database", _database_policy, _database_transient).call(
        operation, fn, retry=retry, before_retry=close_old_connections
    )


def background_turn(operation: str, fn: Callable[[], _T], *, log: logging.Logger, failed: str) -> _T | None:
    """One turn of a background loop's database work (`database_call`): its result, or None when it
    did not run or failed. An open circuit is skipped (its metric says so; the next turn tries again)
    and any other failure is logged with ``failed``, so that the loop goes on either way."""
    try:
        return database_call(operation, fn)
    except DependencyUnavailable:
        return None
    except Exception:
        log.exception(failed)
        return None
