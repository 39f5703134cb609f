"""The one way a background component starts: once per process, and again in a forked child.

gunicorn forks its workers from a master that may already have imported (and, with
``preload_app``, started) the platform. A thread, an event loop, a connection or a session
inherited across ``fork`` belongs to the parent: the child must drop it and start its own.
`ProcessLocal` does that for every component (the serving refresher, the run watchdog, the
prediction log writer, the shadow pool, the rollout guard, the stream recorder, the live
publisher), so none of them compares pids by hand:

- ``ensure_started()`` runs the component's ``start`` once per process (cheap after the first
  call: one attribute read and one ``os.getpid()``); a start that raises is tried again on the
  next call;
- after a fork the child forgets the parent's start (``os.register_at_fork``) and calls the
  component's ``after_fork`` hook at once, so inherited objects are dropped before anything
  in the child can use them;
- ``state`` is what the component says it is doing (``"loaded"``, ``"idle"``, ``"flushed"``,
  ...): tests and readiness checks wait on it with ``wait_for`` instead of sleeping, or, for a
  fact the component changes together with its state (a new snapshot, an emptied queue), with
  ``wait_until``: every ``set_state`` wakes the waiters, even when the state stays the same.
"""

import os
import threading
import time
import weakref
from collections.abc import Callable

STOPPED = "stopped"

_instances: "weakref.WeakSet[ProcessLocal]" = weakref.WeakSet()


class ProcessLocal:
    """A component started at most once per process; see the module docstring."""

    def __init__(self, name: str, start: Callable[[], None], *, after_fork: Callable[[], None] | None = None):
        self.name = name
        self._start = start
        self._after_fork = after_fork
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        self._state = STOPPED
        _instances.add(self)

    @property
    def started(self) -> bool:
        """Whether ``start`` has run in this process."""
        return self._pid == os.getpid()

    def ensure_started(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._start()
            self._pid = os.getpid()

    def forget(self) -> None:
        """Make the next ``ensure_started`` start again (after the component stopped itself, or in tests)."""
        with self._lock:
            self._pid = None
        self.set_state(STOPPED)

    @property
    def state(self) -> str:
        return self._state

    def set_state(self, state: str) -> None:
        with self._changed:
            self._state = state
            self._changed.notify_all()

    def wait_for(self, *states: str, timeout: float) -> bool:
        """Block until the component is in one of ``states`` (True) or ``timeout`` seconds passed (False)."""
        return self.wait_until(lambda: self._state in states, timeout=timeout)

    def wait_until(self, condition: Callable[[], bool], *, timeout: float) -> bool:
        """Block until ``condition()`` holds (True) or ``timeout`` seconds passed (False);
        ``condition`` is checked now and after every ``set_state``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    def _reset_in_child(self) -> None:
        # Locks held by a parent thread at fork time stay held forever in the child: new ones.
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        self._pid = None
        self._state = STOPPED
        if self._after_fork is not None:
            self._after_fork()


def _after_fork_in_child() -> None:
    for component in list(_instances):
        component._reset_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
