"""The bounded pool shadow runs go to, off the request path.

``INFERENCE_SHADOW_WORKERS`` threads and at most ``INFERENCE_SHADOW_QUEUE`` jobs waiting; a
job offered when the pool is full is refused at once (the caller counts the skip). Nothing
ever waits for a shadow run: the response is computed before the job is offered, and offering
is a non-blocking semaphore acquire plus a queue put.
"""

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings

logger = logging.getLogger(__name__)


class ShadowPool:
    def __init__(self, *, workers: int, queue: int):
        self._executor = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="inference-shadow")
        self._slots = threading.BoundedSemaphore(max(1, workers) + max(0, queue))

    def offer(self, job: Callable[[], None]) -> bool:
        """Run ``job`` in the background if there is room; False (and nothing done) if not."""
        if not self._slots.acquire(blocking=False):
            return False
        try:
            self._executor.submit(self._run, job)
        except RuntimeError:  # interpreter shutting down
            self._slots.release()
            return False
        return True

    def _run(self, job: Callable[[], None]) -> None:
        try:
            job()
        except Exception:
            logger.exception("shadow run failed")
        finally:
            self._slots.release()

    def shutdown(self, wait: bool = True) -> None:
        self._executor.shutdown(wait=wait)


_pool: ShadowPool | None = None
_pid: int | None = None
_lock = threading.Lock()


def pool() -> ShadowPool:
    """The process's shadow pool (a forked worker builds its own)."""
    global _pool, _pid
    if _pid != os.getpid():
        with _lock:
            if _pid != os.getpid():
                _pool = ShadowPool(workers=settings.INFERENCE_SHADOW_WORKERS, queue=settings.INFERENCE_SHADOW_QUEUE)
                _pid = os.getpid()
    return _pool


def reset(wait: bool = True) -> None:
    """Finish the running shadow jobs and drop the pool (tests)."""
    global _pool, _pid
    with _lock:
        if _pool is not None and _pid == os.getpid():
            _pool.shutdown(wait=wait)
        _pool, _pid = None, None
