"""The shadow pool: bounded, never blocking the caller, batching what waits."""

import threading
import time

from inference.shadow import ShadowPool


def test_jobs_that_wait_are_run_together_and_the_bound_holds():
    release, busy = threading.Event(), threading.Event()
    batches: list[list[int]] = []

    def run_batch(batch):
        batches.append(batch)
        if batch == [0]:
            busy.set()
            release.wait(5)

    pool = ShadowPool(workers=1, queue=5, run_batch=run_batch)
    assert pool.offer(0)
    assert busy.wait(5)  # the worker took job 0 and is busy with it
    started = time.perf_counter()
    accepted = [pool.offer(n) for n in range(1, 9)]
    assert time.perf_counter() - started < 0.1  # offering never waits for the busy worker
    assert accepted == [True] * 5 + [False] * 3  # 1 running + 5 waiting, the rest refused
    release.set()
    pool.shutdown(wait=True)
    assert batches == [[0], [1, 2, 3, 4, 5]]


def test_a_failing_batch_does_not_stop_the_pool():
    seen = []
    failing = threading.Event()

    def run_batch(batch):
        seen.extend(batch)
        if batch[0] == "boom":
            failing.set()
            raise RuntimeError("shadow model failed")

    pool = ShadowPool(workers=1, queue=4, run_batch=run_batch)
    assert pool.offer("boom")
    assert failing.wait(5)  # "after" comes in a batch of its own, after the failure
    assert pool.offer("after")
    pool.shutdown(wait=True)
    assert seen == ["boom", "after"]
