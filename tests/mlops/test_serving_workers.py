"""Serving workers: each serving process reports what it serves, and the rollout page tells which
ones have picked up the current configuration."""

import logging
import os
import socket
import threading
import time
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connections
from django.urls import reverse
from django.utils import timezone

from inference.runtime import runtime
from mlops import selectors, services
from mlops.background import resilience
from mlops.models import ServingWorker
from tests.conftest import free_port
from tests.faults import database_down

PRODUCT = "fraud_score"
THIS_WORKER = f"{socket.gethostname()}:{os.getpid()}"
LOGREG_ONLY = {"production": "logreg@1", "canary": None, "canary_percent": 0.0, "shadow": None}


@pytest.fixture
def served(inference_state, production_model):
    """``fraud_score`` with ``logreg`` in production, loaded into this process (no background refresher)."""
    runtime.refresh()
    return production_model


def this_worker(**kwargs) -> selectors.ServingWorkerState | None:
    report = selectors.serving_workers(product=PRODUCT, **kwargs)
    return next((worker for worker in report.workers if worker.worker == THIS_WORKER), None)


def set_canary(candidate, django_capture_on_commit_callbacks, percent=10):
    with django_capture_on_commit_callbacks(execute=True):  # the generation is bumped after commit
        services.canary_set(product=PRODUCT, canary_model_id=candidate.pk, canary_percent=percent, user=None, reason="start")


@pytest.mark.django_db
def test_a_worker_that_reported_is_listed_as_serving_the_current_configuration(served):
    assert runtime.report_worker()

    report = selectors.serving_workers(product=PRODUCT)
    worker = this_worker()
    assert (report.live, report.current) == (1, 1)
    assert worker.current and worker.hostname == socket.gethostname() and worker.pid == os.getpid()
    assert worker.route == LOGREG_ONLY
    assert worker.seen_seconds_ago < 5


@pytest.mark.django_db
def test_after_a_rollout_change_the_worker_is_not_current_until_it_reloads_and_reports(
    served, candidate, django_capture_on_commit_callbacks
):
    runtime.report_worker()
    set_canary(candidate, django_capture_on_commit_callbacks)

    assert this_worker().current is False
    runtime.report_worker()  # reporting again without reloading does not make it current
    worker = this_worker()
    assert worker.current is False and worker.route == LOGREG_ONLY
    assert selectors.serving_workers(product=PRODUCT).current == 0

    runtime.refresh()
    runtime.report_worker()
    worker = this_worker()
    assert worker.current is True
    assert worker.route == {"production": "logreg@1", "canary": "gbdt@1", "canary_percent": 10.0, "shadow": None}


@pytest.mark.django_db
def test_a_worker_silent_longer_than_the_stale_window_is_not_listed(served, settings):
    settings.SERVING_WORKER_STALE_SECONDS = 30
    runtime.report_worker()

    assert this_worker(now=timezone.now() + timedelta(seconds=25)) is not None
    later = selectors.serving_workers(product=PRODUCT, now=timezone.now() + timedelta(seconds=31))
    assert later.workers == [] and (later.live, later.current) == (0, 0)


@pytest.mark.django_db
def test_a_worker_silent_longer_than_the_forget_window_is_deleted_by_the_next_report(served, settings):
    settings.SERVING_WORKER_FORGET_SECONDS = 3600
    for name, age in (("gone", 3700), ("quiet", 3500)):
        seen = timezone.now() - timedelta(seconds=age)
        ServingWorker.objects.create(worker=f"{name}:1", hostname=name, pid=1, started_at=seen, seen_at=seen, generation=0, routes={})

    runtime.report_worker()

    assert set(ServingWorker.objects.values_list("worker", flat=True)) == {"quiet:1", THIS_WORKER}


@pytest.mark.django_db
def test_with_the_shared_cache_down_the_newest_reported_generation_counts_as_current(served, settings):
    runtime.report_worker()
    reported = this_worker().generation
    services.serving_worker_report(
        worker="other:7", hostname="other", pid=7, started_at=timezone.now(), generation=reported - 1, routes={PRODUCT: LOGREG_ONLY}
    )
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        }
    }

    report = selectors.serving_workers(product=PRODUCT)
    assert report.generation == reported
    assert {worker.worker: worker.current for worker in report.workers} == {THIS_WORKER: True, "other:7": False}


@pytest.mark.django_db
@pytest.mark.usefixtures("postgresql")  # the outage is made by the PostgreSQL server
def test_a_failed_report_is_logged_once_and_serving_goes_on(served, caplog, settings):
    settings.DB_BREAKER_FAIL_MAX = 1  # the first failure opens the circuit: the second report is refused at once
    outcomes = []

    def report_twice():  # on its own thread and connection, as the refresher reports
        try:
            outcomes.extend([runtime.report_worker(), runtime.report_worker()])
        finally:
            connections.close_all()

    resilience.reset()
    try:
        with caplog.at_level(logging.DEBUG, logger="inference.runtime"), database_down():
            thread = threading.Thread(target=report_twice)
            thread.start()
            thread.join(30)
    finally:
        resilience.reset()

    assert outcomes == [False, False]
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING and "report" in record.getMessage()]
    assert len(warnings) == 1
    assert runtime.snapshot().routes[PRODUCT].production.label == "logreg@1"


@pytest.mark.django_db(transaction=True)
def test_the_background_refresher_reports_after_it_picks_up_a_change(inference_state, production_model, candidate, settings):
    settings.INFERENCE_BACKGROUND_REFRESH = True
    settings.INFERENCE_GENERATION_POLL_SECONDS = 0.05
    runtime.ensure_started()

    def wait_for(condition):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            worker = this_worker()
            if worker is not None and condition(worker):
                return worker
            time.sleep(0.05)
        pytest.fail(f"the worker did not report as expected; last seen: {this_worker()}")

    assert wait_for(lambda worker: worker.current).route == LOGREG_ONLY
    services.canary_set(product=PRODUCT, canary_model_id=candidate.pk, canary_percent=25, user=None, reason="start")
    assert wait_for(lambda worker: worker.current and worker.route["canary"]).route["canary"] == "gbdt@1"


# --- The rollout page -------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_rollout_page_lists_the_serving_workers_and_how_many_are_current(client, viewer_user, served, canary):
    runtime.refresh()
    runtime.report_worker()
    services.serving_worker_report(
        worker="old:9", hostname="old", pid=9, started_at=timezone.now(), generation=-5, routes={PRODUCT: LOGREG_ONLY}
    )
    cache.delete(f"rollout-stats:{PRODUCT}")  # the page caches its numbers for 2 s
    client.force_login(viewer_user)

    html = client.get(reverse("admin:mlops_rollout", args=[PRODUCT])).content.decode()

    assert '<p id="workers-summary">1 of 2 workers serve the current configuration' in html
    assert f'<tr data-worker="{THIS_WORKER}" data-current="true">' in html
    assert '<tr data-worker="old:9" data-current="false">' in html
    assert "gbdt@1 (10%)" in html
    assert "✓ current" in html and "✗ not current" in html


@pytest.mark.django_db
def test_the_polled_stats_include_the_workers_beside_the_counters(client, viewer_user, served, canary):
    runtime.refresh()
    runtime.report_worker()
    cache.delete(f"rollout-stats:{PRODUCT}")
    client.force_login(viewer_user)

    stats = client.get(reverse("admin:mlops_rollout_stats", args=[PRODUCT])).json()

    assert {"product", "minutes", "generated_at", "roles", "chart", "split"} <= stats.keys()
    workers = stats["workers"]
    assert (workers["live"], workers["current"]) == (1, 1)
    assert workers["summary"].startswith("1 of 1 worker serves the current configuration")
    [worker] = workers["workers"]
    assert worker["worker"] == THIS_WORKER and worker["current"] is True
    assert worker["route"] == {"production": "logreg@1", "canary": "gbdt@1", "canary_percent": 10.0, "shadow": None}


@pytest.mark.django_db
def test_without_reports_the_page_says_no_worker_has_reported(client, viewer_user, canary):
    ServingWorker.objects.all().delete()  # reports committed by a refresher an earlier test started
    cache.delete(f"rollout-stats:{PRODUCT}")
    client.force_login(viewer_user)
    html = client.get(reverse("admin:mlops_rollout", args=[PRODUCT])).content.decode()
    assert '<p id="workers-summary">No serving worker has reported in the last 30 s.</p>' in html
