"""The backtest through each way in: the API (202, then done), the command (--json), the admin
action and its report page, and the validation gate that can require a passing backtest."""

import io
import time
import uuid

import orjson
import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from audit.models import Backtest, BacktestStatus
from inference.backtests import backtest_create, backtest_run, wait_for_background
from mlops import services
from mlops.services import LifecycleError
from tests.backtests.conftest import ROWS
from tests.mlops.security.conftest import bearer, create_key, staff_client

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def roles(transactional_db):
    """The role groups (a transactional test starts from an emptied database)."""
    services.roles_sync()


def post(client, body, **headers):
    return client.post("/v1/backtests", orjson.dumps(body), content_type="application/json", headers=headers)


def wait_done(client, location: str, *, timeout: float = 30.0) -> dict:
    """GET the backtest until it is done or failed (the run is on a background thread), within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(location).json()
        if body["status"] in (BacktestStatus.DONE, BacktestStatus.FAILED) or time.monotonic() > deadline:
            return body
        wait_for_background(0.2)


# --- API ---------------------------------------------------------------------------------------


def test_post_answers_202_at_once_and_the_get_reports_the_finished_backtest(api, logged, push_copy):
    candidate = push_copy("copy")
    response = post(api, {"model_version_id": str(candidate.pk), "last": 150})

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] in ("queued", "running", "done") and body["model_version_id"] == str(candidate.pk)
    assert response.headers["Location"] == f"/v1/backtests/{body['id']}"
    done = wait_done(api, response.headers["Location"])
    assert done["status"] == "done", done["error"]
    assert done["rows_done"] == done["rows_total"] == 150
    assert done["report"]["rows"]["scored"] == 150
    assert done["report"]["decisions"]["agreement"]["value"] == 1.0


def test_an_unknown_model_is_a_404_naming_the_field(api, serving):
    response = post(api, {"model_version_id": str(uuid.uuid4())})
    assert response.status_code == 404
    assert "model_version_id" in response.json()["error"]["fields"]


@pytest.mark.parametrize(
    ("body", "field"),
    [({"model_version_id": "x"}, "model_version_id"), ({"last": 0}, "last"), ({"since": "yesterday"}, "since"), ({"last": "5"}, "last")],
)
def test_a_bad_field_is_a_400_naming_it(api, serving, body, field):
    response = post(api, {"model_version_id": str(serving.pk), **body})
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_an_unknown_backtest_is_a_404(api, db):
    assert api.get(f"/v1/backtests/{uuid.uuid4()}").status_code == 404


def test_a_role_without_manage_models_may_read_but_not_start_a_backtest(serving, credential_settings):
    viewer = bearer(create_key("viewer", client="a-viewer"))
    client = Client()
    assert post(client, {"model_version_id": str(serving.pk)}, **viewer).status_code == 403
    backtest = backtest_create(model_version_id=serving.pk, last=10)
    assert client.get(f"/v1/backtests/{backtest.pk}", headers=viewer).status_code == 200
    inference_client = bearer(create_key("inference_client", client="a-client"))
    assert client.get(f"/v1/backtests/{backtest.pk}", headers=inference_client).status_code == 403


def test_a_product_without_production_traffic_reports_zero_rows_not_an_error(api, serving, push_copy):
    response = post(api, {"model_version_id": str(push_copy("copy").pk)})
    done = wait_done(api, response.headers["Location"])
    assert done["status"] == "done" and done["report"]["rows"]["scored"] == 0


# --- Command -----------------------------------------------------------------------------------


def test_the_command_prints_one_json_object_and_a_progress_bar_on_stderr(logged, push_copy):
    out, err = io.StringIO(), io.StringIO()
    candidate = push_copy("copy")
    call_command("backtest", "--model", str(candidate.pk), "--last", "120", "--json", stdout=out, stderr=err)

    body = orjson.loads(out.getvalue())
    assert body["status"] == "done" and body["report"]["rows"]["scored"] == 120
    assert "backtest" in err.getvalue() and "120" in err.getvalue()
    assert Backtest.objects.get(pk=body["id"]).status == BacktestStatus.DONE


def test_the_command_prints_one_readable_line(logged, push_copy):
    out = io.StringIO()
    call_command("backtest", "--model", str(push_copy("copy").pk), stdout=out, stderr=io.StringIO())
    line = out.getvalue().strip()
    assert "\n" not in line and f"{ROWS} rows scored, 0 skipped" in line and "decisions agree on 100.0%" in line


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--model", "nope"], "not a model version id"),
        (["--model", str(uuid.UUID(int=1))], "does not exist"),
        (["--model", str(uuid.UUID(int=1)), "--last", "-3"], "--last"),
        (["--model", str(uuid.UUID(int=1)), "--since", "soon"], "--since"),
    ],
)
def test_bad_input_is_one_line_and_a_failure(db, arguments, message):
    with pytest.raises(CommandError, match=message):
        call_command("backtest", *arguments, stdout=io.StringIO(), stderr=io.StringIO())


# --- Admin -------------------------------------------------------------------------------------


def test_the_admin_action_queues_a_backtest_and_the_report_page_shows_it(logged, push_copy):
    candidate = push_copy("copy")
    client = staff_client("ml_ops")
    response = client.post("/admin/mlops/modelversion/", {"action": "backtest", "_selected_action": [str(candidate.pk)]}, follow=False)
    backtest = Backtest.objects.get(model_version=candidate)
    assert response.status_code == 302 and response.headers["Location"] == f"/admin/audit/backtest/{backtest.pk}/report/"
    assert wait_for_background(30)

    page = client.get(response.headers["Location"])
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="confusion"' in html and 'id="outcomes"' in html
    assert "Does not pass" in html and "BACKTEST_MIN_ROWS" in html  # 200 rows, fewer than the default 1000
    assert "95% interval" in html and "Agreement: 100.0%" in html
    assert "reloads every 2 seconds" not in html  # done: no more reloading


def test_the_report_page_lists_the_skipped_rows_with_why(logged, push_copy, settings, writer_factory):
    from audit.redaction import Redactor
    from tests.audit.conftest import make_record

    feature = next(iter(logged[0].features))
    hashing = writer_factory(redactor=Redactor(hash_keys=[feature], hash_key="k"))
    hashing.submit(make_record(logged[0].model_version, features=dict(logged[0].features)))
    assert hashing.flush(10)
    backtest = backtest_run(backtest_id=backtest_create(model_version_id=push_copy("copy").pk).pk)

    html = staff_client("viewer").get(f"/admin/audit/backtest/{backtest.pk}/report/").content.decode()
    assert 'id="skipped"' in html and "hashed by redaction" in html and feature in html


def test_a_viewer_cannot_run_the_admin_action(serving):
    client = staff_client("viewer")
    response = client.post("/admin/mlops/modelversion/", {"action": "backtest", "_selected_action": [str(serving.pk)]})
    assert not Backtest.objects.exists()
    assert response.status_code in (200, 302)


# --- Validation gate ---------------------------------------------------------------------------


@pytest.fixture
def gate(settings, serving):
    """The gate on, once the product has its production version (a first version is not held to it)."""
    settings.BACKTEST_REQUIRED_FOR_VALIDATION = True
    settings.BACKTEST_MIN_ROWS = 100
    settings.BACKTEST_MIN_AGREEMENT = 0.9
    settings.BACKTEST_MAX_FP_RATE_INCREASE = 0.0
    return settings


def test_validation_is_refused_without_a_backtest_and_allowed_after_a_passing_one(gate, logged, push_copy):
    candidate = push_copy("copy")
    with pytest.raises(LifecycleError, match="no finished backtest"):
        services.model_version_validate(model_version_id=candidate.pk, user=None, reason="checks")

    backtest_run(backtest_id=backtest_create(model_version_id=candidate.pk).pk)
    validated = services.model_version_validate(model_version_id=candidate.pk, user=None, reason="checks")
    assert validated.status == "validated"


def test_validation_is_refused_after_a_failing_backtest_saying_why(gate, logged, push_copy, serving):
    lowered = push_copy("lowered", threshold=serving.threshold / 4)
    gate.BACKTEST_MIN_AGREEMENT = 0.999
    report = backtest_run(backtest_id=backtest_create(model_version_id=lowered.pk).pk).report
    assert report["decisions"]["agreement"]["value"] < 0.999
    with pytest.raises(LifecycleError, match="BACKTEST_MIN_AGREEMENT"):
        services.model_version_validate(model_version_id=lowered.pk, user=None, reason="checks")


def test_a_first_version_of_a_product_is_not_held_to_the_gate(settings, push_copy):
    settings.BACKTEST_REQUIRED_FOR_VALIDATION = True
    first = push_copy("first")
    assert services.model_version_validate(model_version_id=first.pk, user=None, reason="checks").status == "validated"


def test_the_api_answers_a_refused_validation_409(gate, api, push_copy):
    candidate = push_copy("copy")
    response = api.post(f"/v1/models/{candidate.pk}/promote", orjson.dumps({"target": "validated"}), content_type="application/json")
    assert response.status_code == 409
    assert "backtest" in response.json()["error"]["message"]
