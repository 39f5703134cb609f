"""The dual-model routes of a stream process: loaded once, then kept fresh off the stream path."""

import time

import pytest

from inference.streams.dual_models import DualModels, dual_models
from mlops.background import clock, config_generation
from mlops.demo import PRODUCT
from tests.faults import database_down

pytestmark = pytest.mark.django_db


@pytest.mark.usefixtures("postgresql")  # the outage is made by the PostgreSQL server
def test_once_loaded_a_stream_never_waits_for_the_database(dual, settings, monkeypatch):
    settings.DB_RETRY_ATTEMPTS = 1
    dual("logreg", "gbdt")
    route, _ = dual_models.route(PRODUCT)
    assert route is not None
    with database_down():
        config_generation.bump()  # a reload is due: it runs in the background and fails
        later = time.monotonic() + DualModels.CHECK_INTERVAL  # the next check of the generation
        monkeypatch.setattr(clock, "monotonic", lambda: later)
        started = time.perf_counter()
        again, _ = dual_models.route(PRODUCT)
        assert time.perf_counter() - started < 0.5
        assert again is route  # the loaded models keep streaming
