"""A fuzz pass over every endpoint's JSON input and path parameters: never a 5xx, always the
JSON error body. Endpoints are found by walking the resolver; bodies mix arbitrary JSON
(huge integers, NaN, deep nesting, wrong types) with objects built from the field names the
endpoints use, so that validation is reached and not only parsing.
"""

import json
import re
from urllib.parse import quote

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops.api.base import iter_api_endpoints
from mlops.demo import PRODUCT
from tests.mlops.security.conftest import (  # noqa: F401  security_settings: autouse, the probe URLs and a clean auth state
    bearer,
    create_key,
    security_settings,
)

from .test_matrix import URLCONF, concrete_path

pytestmark = pytest.mark.django_db

FIELDS = [
    "product", "event_id", "features", "items", "reason", "percent", "basis_points", "canary_model_id", "canary_percent",
    "model_version_id", "shadow_model_id", "sample_percent", "enabled", "label", "observed_at", "prediction_id", "source",
    "threshold", "since", "until", "limit", "role", "version", "name",
]  # fmt: skip
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from([PRODUCT, "", "0", "-1", "1e309", "2026-01-01T00:00:00Z", "00000000-0000-4000-8000-000000000000"])
)
json_values = st.recursive(
    scalars, lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4), max_leaves=12
)
shaped = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6)
bodies = st.one_of(
    json_values.map(lambda value: json.dumps(value).encode()),
    shaped.map(lambda value: json.dumps(value).encode()),
    st.fixed_dictionaries({"product": st.just(PRODUCT), "event_id": st.text(max_size=20)}, optional={"features": json_values}).map(
        lambda value: json.dumps(value).encode()
    ),
    st.binary(max_size=64),
)

ENDPOINTS = sorted((route, view_class) for route, view_class in iter_api_endpoints(URLCONF) if not route.startswith("v1/_probe/fail"))
HAS_BODY = [(route, view) for route, view in ENDPOINTS if any(hasattr(view, m) for m in ("post", "put", "patch"))]
HAS_PARAMS = [(route, view) for route, view in ENDPOINTS if "<" in route and hasattr(view, "get")]
FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def assert_no_server_error(response, what: str):
    assert response.status_code < 500, f"{what}: {response.status_code} {response.content[:300]!r}"
    if response.status_code >= 400:
        body = response.json()
        assert set(body["error"]) >= {"code", "message"}, f"{what}: {body}"


@pytest.fixture
def internal_key():
    """All capabilities and no rate limit: every request reaches the endpoint's own code."""
    return create_key("internal_service", client="fuzzer")


@pytest.mark.parametrize(("route", "view"), HAS_BODY, ids=[route for route, _ in HAS_BODY])
@FUZZ
@given(body=bodies)
def test_json_bodies_never_cause_a_server_error(route, view, body, internal_key):
    client = Client(raise_request_exception=False)
    path = concrete_path(route)
    for method in ("post", "put", "patch"):
        if hasattr(view, method):
            response = getattr(client, method)(path, data=body, content_type="application/json", headers=bearer(internal_key))
            assert_no_server_error(response, f"{method.upper()} {path} {body[:200]!r}")


@pytest.mark.parametrize(("route", "view"), HAS_PARAMS, ids=[route for route, _ in HAS_PARAMS])
@FUZZ
@given(value=st.text(min_size=1, max_size=40))
def test_path_parameters_never_cause_a_server_error(route, view, value, internal_key):
    path = "/" + re.sub(r"<(?:\w+:)?\w+>", quote(value, safe=""), route).lstrip("/")
    response = Client(raise_request_exception=False).get(path, headers=bearer(internal_key))
    if response.status_code == 404 and not response["Content-Type"].startswith("application/json"):
        return  # the value did not match the route's converter: Django's own 404 outside DRF
    assert_no_server_error(response, f"GET {path}")


credentials = st.one_of(
    st.text(max_size=80),
    st.text(max_size=60).map(lambda text: "mlk_" + text),
    st.tuples(st.text(max_size=20), st.text(max_size=20), st.text(max_size=20)).map(".".join),
    st.sampled_from(["eyJhbGciOiJub25lIn0.e30.", "mlk_.", "mlk_a.", "Bearer", "eyJ.eyJ.sig"]),
)


@FUZZ
@given(scheme=st.sampled_from(["Bearer ", "bearer ", "Basic ", "", "Bearer  "]), credential=credentials, as_header=st.booleans())
def test_garbage_credentials_are_a_401_never_a_server_error(scheme, credential, as_header):
    credential = credential.replace("\r", "").replace("\n", "")
    headers = {"Authorization": scheme + credential} if as_header else {"X-API-Key": credential}
    response = Client(raise_request_exception=False).get("/v1/_probe/read_models", headers=headers)
    assert response.status_code == 401, response.content
    assert response.json()["error"]["code"] in ("not_authenticated", "invalid_api_key", "invalid_token", "authentication_failed")
