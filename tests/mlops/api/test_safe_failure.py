"""Failures answer with the JSON error body: no traceback, no internal names, also with DEBUG off."""

import io

import pytest
from django.core import checks
from django.test import Client, override_settings

from mlops.api.content import OrjsonParser, PayloadTooLarge
from tests.mlops.security.conftest import (  # noqa: F401  security_settings: autouse, the probe URLs and a clean auth state
    bearer,
    create_key,
    security_settings,
)

pytestmark = pytest.mark.django_db
SECRET_NAME = b"secret_internal_name_in_traceback"


def assert_error_body(response, status: int, code: str):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["error"]["code"] == code and body["error"]["message"]
    for leak in (b"Traceback", SECRET_NAME, b"RuntimeError", b'File "', b"mlops."):
        assert leak not in response.content


@override_settings(DEBUG=False)
def test_an_unhandled_error_in_an_endpoint_is_a_json_500():
    client = Client(raise_request_exception=False)
    assert_error_body(client.get("/v1/_probe/fail"), 500, "internal_error")


@pytest.mark.parametrize("debug", [True, False])
def test_an_unhandled_error_in_an_endpoint_never_shows_a_traceback(settings, debug):
    settings.DEBUG = debug
    assert_error_body(Client(raise_request_exception=False).get("/v1/_probe/fail"), 500, "internal_error")


@override_settings(DEBUG=False)
def test_django_404_and_500_under_v1_are_json():
    client = Client(raise_request_exception=False)
    assert_error_body(client.get("/v1/no/such/endpoint"), 404, "not_found")
    assert_error_body(client.get("/v1/_plain/fail"), 500, "internal_error")


@override_settings(DEBUG=False)
def test_pages_outside_the_api_keep_django_error_pages():
    client = Client(raise_request_exception=False)
    assert not client.get("/no/such/page")["Content-Type"].startswith("application/json")
    failed = client.get("/_plain/fail")
    assert failed.status_code == 500 and SECRET_NAME not in failed.content


@override_settings(DEBUG=False, API_MAX_BODY_BYTES=1000)
def test_an_oversized_body_is_refused_before_it_is_read():
    headers = bearer(create_key("internal_service"))
    big = b'{"x": "' + b"a" * 2000 + b'"}'
    response = Client().post("/v1/_probe/predict", data=big, content_type="application/json", headers=headers)
    assert_error_body(response, 413, "payload_too_large")
    # Also before authentication: no credential is needed to be refused.
    response = Client().post("/v1/_probe/predict", data=big, content_type="application/json")
    assert_error_body(response, 413, "payload_too_large")


def test_the_parser_bounds_bodies_that_have_no_content_length(settings):
    settings.API_MAX_BODY_BYTES = 10
    with pytest.raises(PayloadTooLarge):
        OrjsonParser().parse(io.BytesIO(b'{"a": "0123456789"}'))


@override_settings(DEBUG=False)
def test_malformed_json_and_wrong_methods_are_json_errors():
    headers = bearer(create_key("internal_service"))
    client = Client()
    malformed = client.post("/v1/_probe/predict", data=b"{not json", content_type="application/json", headers=headers)
    assert_error_body(malformed, 400, "parse_error")
    assert_error_body(client.delete("/v1/_probe/predict", headers=headers), 405, "method_not_allowed")


def test_an_endpoint_without_api_permission_refuses_everyone():
    assert Client().get("/v1/_probe/undeclared").status_code == 401
    assert Client().get("/v1/_probe/undeclared", headers=bearer(create_key("internal_service"))).status_code == 403


def test_the_development_bypass_needs_debug_and_the_setting(settings):
    settings.API_AUTH_DEV_BYPASS = True
    settings.DEBUG = False
    assert Client().get("/v1/_probe/manage_models").status_code == 401
    settings.DEBUG = True
    assert Client().get("/v1/_probe/manage_models").status_code == 200
    # bad credentials still fail with the bypass on
    assert Client().get("/v1/_probe/manage_models", headers=bearer("mlk_bad.key")).status_code == 401


def test_a_system_check_warns_loudly_while_the_bypass_is_on(settings):
    settings.API_AUTH_DEV_BYPASS = True
    settings.DEBUG = True
    ids = {message.id for message in checks.run_checks(tags=[checks.Tags.security])}
    assert "mlops.security.W001" in ids
    settings.API_AUTH_DEV_BYPASS = False
    assert "mlops.security.W001" not in {message.id for message in checks.run_checks(tags=[checks.Tags.security])}


def test_a_bad_rate_setting_fails_the_system_check(settings):
    settings.RATELIMIT_PREDICT = "thirty per minute"
    assert "mlops.security.E001" in {message.id for message in checks.run_checks(tags=[checks.Tags.security])}


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/"])
def test_the_schema_and_docs_need_credentials_unless_a_setting_opens_them(settings, path):
    settings.API_DOCS_PUBLIC = False
    assert Client().get(path).status_code == 401
    assert Client().get(path, headers=bearer(create_key("viewer"))).status_code == 200
    settings.API_DOCS_PUBLIC = True
    assert Client().get(path).status_code == 200
