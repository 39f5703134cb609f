"""The drift job runs where the rollout guard runs: a server process's thread, one process per turn."""

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from audit.drift import runner
from audit.guard import runner as guard_runner
from audit.models import DriftWindow
from mlops import hooks
from tests.drift.conftest import log, traffic


@pytest.fixture
def in_process(settings):
    settings.ROLLOUT_GUARD_IN_PROCESS = True
    settings.DRIFT_ENABLED = True
    settings.ROLLOUT_GUARD_INTERVAL_SECONDS = settings.DRIFT_INTERVAL_SECONDS = 60  # one turn within the test
    settings.DRIFT_LAG_SECONDS = 0
    cache.delete(runner.LOCK_KEY)
    cache.delete(guard_runner.LOCK_KEY)
    yield runner.drift
    runner.stop_in_process()
    guard_runner.stop_in_process()
    cache.delete(runner.LOCK_KEY)
    cache.delete(guard_runner.LOCK_KEY)


@pytest.mark.django_db(transaction=True)  # the thread reads the rows on its own connection
def test_a_server_process_runs_the_drift_job_beside_the_guard(watched, reference_data, in_process):
    log(watched, traffic(reference_data, 300), at=timezone.now() - timedelta(seconds=1))

    hooks.serving_started.send(sender="test")

    assert in_process.wait_for(runner.IDLE, timeout=30)
    assert guard_runner.guard.started
    window = DriftWindow.objects.get()
    assert window.rows == 300 and window.max_psi is not None


@pytest.mark.django_db
def test_the_drift_thread_stays_off_with_the_setting(in_process, settings):
    settings.DRIFT_ENABLED = False
    hooks.serving_started.send(sender="test")
    assert not in_process.started


def test_only_one_process_gets_each_turn():
    cache.delete(runner.LOCK_KEY)
    assert runner.acquire_turn(5) is True and runner.acquire_turn(5) is False
    cache.delete(runner.LOCK_KEY)
