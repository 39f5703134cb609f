"""How /readyz's answers are logged: not being ready yet is expected while the models load."""

import logging

import pytest
from django.test import Client

from inference.runtime import runtime
from tests.conftest import infer

pytestmark = pytest.mark.django_db


def test_readyz_while_loading_logs_one_info_line_and_no_error(production_model, caplog):
    with caplog.at_level(logging.INFO, logger="django.request"):
        assert Client().get("/readyz").status_code == 503
    records = [r for r in caplog.records if r.name == "django.request"]
    assert [(r.levelname, r.getMessage()) for r in records] == [("INFO", "Not ready yet (loading): the models")]


def test_readyz_once_ready_logs_nothing(production_model, caplog):
    runtime.refresh()
    with caplog.at_level(logging.INFO, logger="django.request"):
        assert Client().get("/readyz").status_code == 200
    assert not [r for r in caplog.records if r.name == "django.request"]


def test_a_503_of_the_api_while_loading_is_still_an_error(production_model, api, caplog):
    # Only the probe expects to be unready; a prediction refused meanwhile stays an ERROR line.
    with caplog.at_level(logging.INFO, logger="django.request"):
        assert infer(api, {"mean_radius": 1.0}).status_code == 503
    assert [r.levelname for r in caplog.records if r.name == "django.request"] == ["ERROR"]
