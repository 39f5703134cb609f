"""The role x endpoint matrix: every BaseAPIView endpoint answers each kind of caller as its
``api_permission`` and the role table say (401 without credentials, 403 without the
capability, anything else with it). Endpoints are found by walking the URL resolver, so the
ones other apps add are covered without editing this file.
"""

import re

import pytest
from django.test import Client

from mlops.api.base import UNSET, iter_api_endpoints
from mlops.api.permissions import capability_needed
from mlops.security.roles import ROLE_CAPABILITIES, Role
from tests.mlops.security.conftest import (  # noqa: F401  security_settings: autouse, the probe URLs and a clean auth state
    bearer,
    create_key,
    make_jwt,
    security_settings,
    staff_client,
)

pytestmark = pytest.mark.django_db

URLCONF = "tests.probe_urls"
# The only endpoints anyone may call without credentials (issue 6), plus the test's own probes.
PUBLIC_ALLOWED = {"healthz", "readyz", "v1/_probe/public", "v1/_probe/fail"}
SAMPLE = {"int": "1", "uuid": "00000000-0000-4000-8000-000000000000", "path": "x/y"}
METHODS = ("get", "post", "put", "patch", "delete")


def concrete_path(route: str) -> str:
    """A request path for a route: converters and regex groups replaced by sample values."""
    path = re.sub(r"<(?:(\w+):)?\w+>", lambda m: SAMPLE.get(m.group(1) or "str", "fraud_score"), route)
    path = re.sub(r"\(\?P<\w+>[^)]*\)", "1", path).replace("^", "").replace("$", "").replace("\\", "")
    return "/" + path.lstrip("/")


def endpoints():
    found = []
    for route, view_class in iter_api_endpoints(URLCONF):
        methods = [method for method in METHODS if hasattr(view_class, method)]
        found.append((route, concrete_path(route), view_class, methods))
    return found


def expected(view_class, method: str, capabilities: frozenset | None) -> str:
    """'401', '403' or 'ok' (anything but 401/403)."""
    needed = capability_needed(view_class, method)
    if needed is None:
        return "ok"
    if capabilities is None:
        return "401"
    if needed is UNSET:
        return "403"
    return "ok" if needed in capabilities else "403"


def call(client: Client, method: str, path: str, headers: dict):
    if method in ("post", "put", "patch"):
        return getattr(client, method)(path, data=b"{}", content_type="application/json", headers=headers)
    return getattr(client, method)(path, headers=headers)


def caller(kind: str, role: str | None):
    """(client, headers) for one kind of caller with one role."""
    if kind == "anonymous":
        return Client(), {}
    if kind == "api_key":
        return Client(), bearer(create_key(role, client=f"matrix-{role}"))
    if kind == "x_api_key":
        return Client(), {"X-API-Key": create_key(role, client=f"matrix-{role}")}
    if kind == "jwt":
        return Client(), bearer(make_jwt([role], sub=f"matrix-{role}"))
    return staff_client(role), {}


CALLERS = (
    [("anonymous", None)] + [(kind, role) for role in Role.values for kind in ("api_key", "jwt", "session")] + [("x_api_key", "viewer")]
)


def test_the_resolver_walk_finds_the_probe_endpoints():
    routes = {route for route, *_ in endpoints()}
    assert {f"v1/_probe/{capability}" for capability in ROLE_CAPABILITIES["internal_service"]} <= routes


@pytest.mark.parametrize(("kind", "role"), CALLERS, ids=[f"{kind}-{role}" for kind, role in CALLERS])
def test_each_endpoint_answers_each_caller_as_the_role_table_says(kind, role):
    client, headers = caller(kind, role)
    capabilities = None if kind == "anonymous" else ROLE_CAPABILITIES[role]
    wrong = []
    for _route, path, view_class, methods in endpoints():
        for method in methods:
            want = expected(view_class, method, capabilities)
            response = call(client, method, path, headers)
            got = str(response.status_code)
            if (want == "ok" and got in ("401", "403")) or (want != "ok" and got != want):
                needed = capability_needed(view_class, method)
                wrong.append(f"{method.upper()} {path} ({view_class.__name__}, needs {needed}): want {want}, got {got}")
            if got in ("401", "403"):
                body = response.json()
                assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
            if got == "401":
                assert response.headers.get("WWW-Authenticate", "").startswith("Bearer")
    assert not wrong, "\n".join(wrong)


def test_only_health_probes_are_public():
    public = sorted(route for route, _, view_class, _ in endpoints() if view_class.api_permission is None)
    assert set(public) <= PUBLIC_ALLOWED, f"public endpoints beyond the allowed ones: {set(public) - PUBLIC_ALLOWED}"


def test_every_endpoint_declares_its_capability():
    undeclared = sorted(
        f"{view_class.__module__}.{view_class.__qualname__} ({route})"
        for route, _, view_class, _ in endpoints()
        if view_class.api_permission is UNSET and route != "v1/_probe/undeclared"
    )
    assert not undeclared, "endpoints without api_permission (they refuse every caller): " + ", ".join(undeclared)


def test_a_staff_member_without_a_role_gets_403_and_a_superuser_gets_everything(django_user_model):
    nobody = staff_client(None, username="staff-nobody")
    assert nobody.get("/v1/_probe/read_models").status_code == 403
    superuser = django_user_model.objects.create_superuser("root", password="pw")
    client = Client()
    client.force_login(superuser)
    for capability in ROLE_CAPABILITIES["internal_service"]:
        assert client.get(f"/v1/_probe/{capability}").status_code == 200


def test_a_signed_in_non_staff_user_is_not_an_api_caller(django_user_model):
    user = django_user_model.objects.create_user("plain", password="pw")
    client = Client()
    client.force_login(user)
    assert client.get("/v1/_probe/read_models").status_code == 401


def test_session_callers_need_a_csrf_token_for_unsafe_methods():
    client = staff_client("ml_ops")
    client.handler.enforce_csrf_checks = True
    refused = client.post("/v1/_probe/manage_rollout", data=b"{}", content_type="application/json")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
    assert client.get("/v1/_probe/read_models").status_code == 200  # safe methods need no token
