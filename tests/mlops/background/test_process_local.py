"""`ProcessLocal`: a background component starts once per process, again in a forked child."""

import json
import os
import threading

import pytest

from mlops.background.process import STOPPED, ProcessLocal


class Component:
    def __init__(self, fail_first: int = 0):
        self.starts = 0
        self.forks = 0
        self.fail_first = fail_first
        self.process = ProcessLocal("component", self.start, after_fork=self.after_fork)

    def start(self) -> None:
        self.starts += 1
        if self.starts <= self.fail_first:
            raise RuntimeError("not yet")
        self.process.set_state("running")

    def after_fork(self) -> None:
        self.forks += 1


def test_it_starts_once_however_many_threads_ask():
    component = Component()
    threads = [threading.Thread(target=component.process.ensure_started) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    component.process.ensure_started()
    assert component.starts == 1
    assert component.process.started and component.process.state == "running"


def test_a_forked_child_forgets_the_parents_start_and_starts_its_own():
    component = Component()
    component.process.ensure_started()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what it sees, then leave without running the parent's atexit
        try:
            seen = {"started": component.process.started, "state": component.process.state, "forks": component.forks}
            component.process.ensure_started()
            seen.update(starts=component.starts, started_after=component.process.started)
            os.write(write_end, json.dumps(seen).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        seen = json.loads(pipe.read())
    os.waitpid(pid, 0)
    assert seen == {"started": False, "state": STOPPED, "forks": 1, "starts": 2, "started_after": True}
    assert component.starts == 1 and component.forks == 0  # the parent keeps its own start
    assert component.process.started


def test_a_start_that_raises_is_tried_again_on_the_next_call():
    component = Component(fail_first=1)
    with pytest.raises(RuntimeError):
        component.process.ensure_started()
    assert not component.process.started
    component.process.ensure_started()
    assert component.starts == 2 and component.process.started


def test_forget_makes_the_next_call_start_again():
    component = Component()
    component.process.ensure_started()
    component.process.forget()
    assert component.process.state == STOPPED and not component.process.started
    component.process.ensure_started()
    assert component.starts == 2


def test_wait_for_returns_when_another_thread_sets_the_state():
    component = Component()
    waiting = threading.Event()

    def later():
        waiting.wait(5)
        component.process.set_state("flushed")

    setter = threading.Thread(target=later)
    setter.start()
    waiting.set()
    assert component.process.wait_for("flushed", timeout=10)
    setter.join()


def test_wait_for_is_false_when_the_state_never_comes():
    component = Component()
    assert component.process.wait_for("flushed", timeout=0.05) is False


def test_wait_until_checks_its_condition_again_on_every_state_change():
    component = Component()
    items: list[int] = []

    def produce():
        for n in range(3):
            items.append(n)
            component.process.set_state("running")  # the same state: waiters still wake

    producer = threading.Thread(target=produce)
    producer.start()
    assert component.process.wait_until(lambda: len(items) == 3, timeout=10)
    producer.join()
