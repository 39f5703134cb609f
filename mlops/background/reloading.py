"""Process-local tables read from the database and kept fresh off the request path.

A table (the API keys, the dual-model routes) is loaded on first use, and that first caller
waits: there is nothing to answer from before. After that a background thread reloads it when the
shared configuration generation (`mlops.background.config_generation`, read at most once per
``check_interval``) moves, when it is older than ``max_age``, and every ``fallback_reload``
seconds while the shared cache cannot be read; callers go on with the loaded table meanwhile, so
a slow or unreachable database never stalls a request. Loads go through the database's circuit
breaker (`mlops.background.resilience`); a failed reload keeps the table it had.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from django.db import DatabaseError, connections

from mlops.background import clock, config_generation, resilience

logger = logging.getLogger(__name__)

T = TypeVar("T")


class WouldWait(Exception):
    """Raised instead of waiting, for a caller that must not block (an event loop): it asks again
    from a thread that may wait."""


class ReloadedTable(Generic[T]):
    def __init__(
        self,
        name: str,
        load: Callable[[T | None], T],
        *,
        check_interval: float = 1.0,
        max_age: float = 300.0,
        fallback_reload: float = 5.0,
    ):
        self.name = name  # in logs and in mlops_dependency_calls_total{operation}
        self._load_fn = load  # given the current table (None at first), returns the new one
        self.check_interval = check_interval
        self.max_age = max_age
        self.fallback_reload = fallback_reload
        self._value: T | None = None
        self._generation: int | None = None
        self._loaded_at = float("-inf")
        self._next_check = 0.0
        self._next_miss_check = 0.0
        self._lock = threading.Lock()
        self._reloader: threading.Thread | None = None

    def current(self) -> T | None:
        """The table (None if it has never loaded); loads it first if it never has."""
        now = clock.monotonic()
        if now >= self._next_check or self._value is None:
            self._check(now)
        return self._value

    def loaded(self) -> bool:
        """Whether a first load has succeeded (`current` no longer waits for one)."""
        return self._value is not None

    def reloading(self) -> bool:
        """Whether a background reload is under way."""
        reloader = self._reloader
        return reloader is not None and reloader.is_alive()

    def after_reload(self, timeout: float) -> T | None:
        """The table once a reload under way has finished (at most ``timeout`` s): for a caller
        that did not find what it looked for, which may be what the reload brings."""
        reloader = self._reloader
        if reloader is not None and reloader.is_alive():
            reloader.join(timeout)
        return self._value

    def miss_check_due(self) -> bool:
        """Whether `after_miss` would read the generation afresh (or a reload is under way): for a
        caller that must not block, to know whether a miss is worth a thread that may wait."""
        return self.reloading() or clock.monotonic() >= self._next_miss_check

    def after_miss(self, timeout: float) -> T | None:
        """The table for a caller that did not find what it looked for, which a change of a moment ago
        may bring (an API key created just now): the generation is read afresh, at most once per
        ``check_interval`` for all such callers (so unknown names cannot flood the shared store),
        and the reload it calls for, or one under way, is waited for up to ``timeout`` s."""
        now = clock.monotonic()
        with self._lock:
            if now >= self._next_miss_check and self._value is not None and not self.reloading():
                self._next_miss_check = now + self.check_interval
                generation = config_generation.current()
                if generation != -1 and generation != self._generation:
                    self._start_reload(generation, now)
        return self.after_reload(timeout)

    def refresh(self) -> None:
        """Reload now, on the calling thread, if the table is stale (background callers, tests)."""
        with self._lock:
            generation = self._stale_generation(clock.monotonic())
            if generation is not None:
                self._reload(generation, clock.monotonic(), retry=True)

    def invalidate(self) -> None:
        """Forget the table: the next caller loads it and waits (tests, after a local change)."""
        with self._lock:
            self._value, self._generation, self._next_check = None, None, 0.0

    def join(self, timeout: float = 10.0) -> None:
        """Wait for a background reload under way (tests, shutdown)."""
        reloader = self._reloader
        if reloader is not None:
            reloader.join(timeout)

    def _check(self, now: float) -> None:
        with self._lock:
            # Until a first load succeeds every caller waits here for it (concurrent first
            # requests of a fresh worker must not see "not loaded" while another thread loads).
            if now < self._next_check and self._value is not None:
                return
            self._next_check = now + self.check_interval
            generation = self._stale_generation(now)
            if generation is None:
                return
            if self._value is None:
                self._reload(generation, now, retry=False)  # a request is waiting: one attempt
            else:
                self._start_reload(generation, now)

    def _start_reload(self, generation: int, now: float) -> None:
        """A background reload to ``generation``, unless one is under way (the caller holds the lock)."""
        if self._reloader is None or not self._reloader.is_alive():
            self._reloader = threading.Thread(
                target=self._reload_in_background, args=(generation, now), name=f"reload-{self.name}", daemon=True
            )
            self._reloader.start()

    def _stale_generation(self, now: float) -> int | None:
        """The generation to load if the table is stale, else None."""
        # Read the generation before the rows: a change committed in between is seen as a newer
        # generation at the next check and loaded then.
        generation = config_generation.recent(self.check_interval)
        age = now - self._loaded_at
        unreachable = generation == -1  # the shared cache is down: reload on a timer
        stale = age >= self.fallback_reload if unreachable else (generation != self._generation or age >= self.max_age)
        return generation if stale or self._value is None else None

    def _reload_in_background(self, generation: int, started: float) -> None:
        try:
            value = self._load(retry=True)  # nobody waits for it: retries are free
        finally:
            connections.close_all()  # this thread's connections, back to the pool
        if value is not None:
            with self._lock:
                self._install(value, generation, started)

    def _reload(self, generation: int, started: float, *, retry: bool) -> None:
        value = self._load(retry=retry)
        if value is not None:
            self._install(value, generation, started)

    def _load(self, *, retry: bool) -> T | None:
        try:
            return resilience.database_call(self.name, lambda: self._load_fn(self._value), retry=retry)
        except resilience.DependencyUnavailable:  # the database's circuit is open (its metric says so)
            return None
        except DatabaseError:
            logger.warning("could not reload %s; keeping the loaded one", self.name, exc_info=True)
            return None
        except Exception:
            logger.exception("reloading %s failed; keeping the loaded one", self.name)
            return None

    def _install(self, value: T, generation: int, started: float) -> None:
        self._value = value  # one reference assignment: readers see the old table or the new one
        self._generation = generation
        self._loaded_at = started
