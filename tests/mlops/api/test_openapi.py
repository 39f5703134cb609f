"""The OpenAPI document: auth schemes, the shared error body on every operation, Swagger UI without a CDN."""

import pytest
import yaml
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(settings) -> dict:
    settings.API_DOCS_PUBLIC = True
    response = Client().get("/api/schema/")
    assert response.status_code == 200
    return yaml.safe_load(response.content)


def _operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield path, method, operation


def test_the_three_credentials_and_the_staff_session_are_security_schemes(schema):
    schemes = schema["components"]["securitySchemes"]
    assert schemes["ApiKeyBearer"] == {**schemes["ApiKeyBearer"], "type": "http", "scheme": "bearer"}
    assert schemes["ApiKeyHeader"] == {**schemes["ApiKeyHeader"], "type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["JWT"]["bearerFormat"] == "JWT"
    assert schemes["StaffSession"]["in"] == "cookie"
    assert not any("dev" in name.lower() for name in schemes)  # the development bypass is not a credential


def test_the_error_body_is_one_reusable_component(schema):
    error = schema["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    detail = schema["components"]["schemas"][error["properties"]["error"]["$ref"].rsplit("/", 1)[-1]]
    assert set(detail["properties"]) == {"code", "message", "fields"}
    assert set(detail["required"]) == {"code", "message"}


def test_every_protected_operation_documents_its_credentials_and_error_answers(schema):
    checked = 0
    for path, method, operation in _operations(schema):
        if path in ("/healthz", "/readyz"):
            continue
        checked += 1
        assert {"ApiKeyBearer": []} in operation["security"] and {} not in operation["security"], (method, path)
        for code in ("401", "403", "429"):
            assert operation["responses"][code]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}, (
                method,
                path,
                code,
            )
        if method in ("post", "put", "patch"):
            assert "400" in operation["responses"] and "413" in operation["responses"], (method, path)
        if "{" in path:
            assert "404" in operation["responses"], (method, path)
        assert "Requires the capability" in operation.get("description", ""), (method, path)
    assert checked >= 15


def test_the_health_probes_are_documented_as_public(schema):
    for path in ("/healthz", "/readyz"):
        assert schema["paths"][path]["get"]["security"] == [{}]


def test_swagger_ui_is_served_from_our_static_files_not_a_cdn(settings):
    settings.API_DOCS_PUBLIC = True
    html = Client().get("/api/docs/").content.decode()
    assert "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn." not in html and "unpkg" not in html


def test_the_schema_validates_without_warnings(tmp_path):
    """What CI runs: ``manage.py spectacular --validate --fail-on-warn`` (every endpoint has its shapes)."""
    from django.core.management import call_command

    target = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    schema = yaml.safe_load(target.read_text())
    for path, method, operation in _operations(schema):
        assert any(code.startswith("2") for code in operation["responses"]), (method, path)
        assert all(code != "default" for code in operation["responses"]), (method, path)
