"""Rate limits: per client, per group, headers on every limited response, 429 body, fail open."""

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import PermissionDenied
from django.test import Client
from django_ratelimit.exceptions import Ratelimited

from mlops.api.errors import exception_handler
from mlops.choices import ApiCapability
from mlops.security import ratelimits
from mlops.security.authentication import verify_api_key
from mlops.security.ratelimits import limiter

from .conftest import bearer, create_key, make_jwt

pytestmark = pytest.mark.django_db
PREDICT = "/v1/_probe/predict"


@pytest.fixture
def limits(settings):
    settings.RATELIMIT_ENABLE = True
    # Windows long enough that a slow machine never crosses one mid-test.
    settings.RATELIMIT_PREDICT = "4/m"
    settings.RATELIMIT_PREDICT_BURST = ""
    settings.RATELIMIT_AUDIT = "3/m"
    settings.RATELIMIT_AUDIT_BURST = ""
    settings.RATELIMIT_ADMIN = "2/m"
    return settings


def hammer(path: str, headers: dict, times: int, **extra):
    client = Client()
    return [client.get(path, headers=headers, **extra) for _ in range(times)]


def test_every_limited_response_carries_limit_and_remaining(limits):
    responses = hammer(PREDICT, bearer(create_key("inference_client")), 4)
    assert [r.status_code for r in responses] == [200] * 4
    assert [r.headers["X-RateLimit-Limit"] for r in responses] == ["4"] * 4
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["3", "2", "1", "0"]


def test_over_the_limit_answers_429_with_the_json_body_and_retry_after(limits):
    *_, over = hammer(PREDICT, bearer(create_key("inference_client")), 5)
    assert over.status_code == 429
    assert over.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(over.headers["Retry-After"]) <= 60
    assert (over.headers["X-RateLimit-Limit"], over.headers["X-RateLimit-Remaining"]) == ("4", "0")


def test_the_burst_window_refuses_a_quick_sixth_request(limits):
    limits.RATELIMIT_PREDICT = "30/m"
    limits.RATELIMIT_PREDICT_BURST = "5/m"  # the default 5/s, stretched so the test cannot cross a window
    responses = hammer(PREDICT, bearer(create_key("inference_client")), 6)
    assert [r.status_code for r in responses] == [200] * 5 + [429]
    assert responses[0].headers["X-RateLimit-Limit"] == "30"  # the main window is reported
    assert responses[4].headers["X-RateLimit-Remaining"] == "0"  # the tightest window's remainder


def test_audit_reads_have_a_burst_window_too(limits):
    limits.RATELIMIT_AUDIT = "120/m"
    limits.RATELIMIT_AUDIT_BURST = "15/m"  # the default 15/s, stretched so the test cannot cross a window
    responses = hammer("/v1/_probe/read_audit", bearer(create_key("auditor")), 16)
    assert [r.status_code for r in responses] == [200] * 15 + [429]
    assert responses[0].headers["X-RateLimit-Limit"] == "120"


def test_the_default_audit_limit_is_120_a_minute_with_a_burst_of_15_a_second():
    from mlops import settings as defaults

    assert (defaults.RATELIMIT_AUDIT, defaults.RATELIMIT_AUDIT_BURST) == ("120/m", "15/s")


def test_clients_are_counted_separately(limits):
    assert hammer(PREDICT, bearer(create_key("inference_client", client="a")), 5)[-1].status_code == 429
    assert hammer(PREDICT, bearer(create_key("inference_client", client="b")), 1)[0].status_code == 200
    assert hammer(PREDICT, bearer(make_jwt(sub="jwt-client")), 4)[-1].status_code == 200


def test_groups_follow_the_capability_of_the_endpoint(limits):
    headers = bearer(create_key("auditor"))
    assert [r.status_code for r in hammer("/v1/_probe/read_audit", headers, 4)] == [200, 200, 200, 429]
    headers = bearer(create_key("ml_ops"))
    assert hammer("/v1/_probe/read_models", headers, 1)[0].headers["X-RateLimit-Limit"] == "2"


def test_internal_services_are_exempt(limits):
    responses = hammer(PREDICT, bearer(create_key("internal_service")), 8)
    assert {r.status_code for r in responses} == {200}
    assert "X-RateLimit-Limit" not in responses[-1].headers


def test_callers_without_credentials_are_limited_by_ip(limits):
    responses = hammer(PREDICT, {}, 5, REMOTE_ADDR="203.0.113.9")
    assert [r.status_code for r in responses] == [401] * 4 + [429]
    assert hammer(PREDICT, {}, 1, REMOTE_ADDR="203.0.113.10")[0].status_code == 401


def test_the_forwarded_header_counts_only_when_configured(limits):
    # Not configured: a client cannot escape its limit by inventing X-Forwarded-For values.
    client = Client()
    codes = [client.get(PREDICT, headers={"X-Forwarded-For": f"10.0.0.{n}"}, REMOTE_ADDR="198.51.100.1").status_code for n in range(5)]
    assert codes[-1] == 429
    # Configured: the right-most entry (added by our proxy) is the client.
    limits.CLIENT_IP_HEADER = "X-Forwarded-For"
    codes = [
        client.get(PREDICT, headers={"X-Forwarded-For": f"6.6.6.6, 192.0.2.{n}"}, REMOTE_ADDR="198.51.100.1").status_code for n in range(5)
    ]
    assert codes == [401] * 5


def test_public_endpoints_are_not_limited(limits):
    assert {r.status_code for r in hammer("/v1/_probe/public", {}, 10)} == {200}


def test_limits_can_be_switched_off(limits):
    limits.RATELIMIT_ENABLE = False
    responses = hammer(PREDICT, bearer(create_key("inference_client")), 6)
    assert {r.status_code for r in responses} == {200}
    assert "X-RateLimit-Limit" not in responses[0].headers


def test_django_ratelimits_own_exception_is_a_429_not_a_403():
    assert issubclass(Ratelimited, PermissionDenied)  # the trap this guards against
    response = exception_handler(Ratelimited(), {"view": None})
    assert response.status_code == 429 and response.data["error"]["code"] == "rate_limited"
    assert "Retry-After" in response.headers


def test_a_local_memory_cache_leaves_the_counts_to_this_process(limits):
    # The embedded default has no Redis: one process, whose own counts are the counts.
    limits.CACHES = {**django_settings.CACHES, "local": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    limits.RATELIMIT_USE_CACHE = "local"
    headers = bearer(create_key("inference_client"))
    responses = hammer(PREDICT, headers, 3)
    limiter.sync()  # nothing to reconcile with: the counts stay
    responses += hammer(PREDICT, headers, 2)
    assert [r.status_code for r in responses] == [200] * 4 + [429]
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["3", "2", "1", "0", "0"]


def test_the_client_ip_rule_for_callers_outside_django(limits):
    assert ratelimits.client_ip_header() is None
    assert ratelimits.client_ip_of("198.51.100.1", "6.6.6.6") == "198.51.100.1"  # an unconfigured header is the client's
    limits.CLIENT_IP_HEADER = "X-Forwarded-For"
    assert ratelimits.client_ip_header() == "x-forwarded-for"
    assert ratelimits.client_ip_of("198.51.100.1", "6.6.6.6, 192.0.2.7") == "192.0.2.7"
    assert ratelimits.client_ip_of("198.51.100.1", None) == "198.51.100.1"
    assert ratelimits.client_ip_of("", None) == "unknown"


def test_check_caller_gives_a_refusal_its_headers(limits):
    principal = verify_api_key(create_key("inference_client"))
    usages = [ratelimits.check_caller(capability=ApiCapability.PREDICT, principal=principal, ip="") for _ in range(4)]
    assert [ratelimits.header_items(usage) for usage in usages[-1:]] == [[("X-RateLimit-Limit", "4"), ("X-RateLimit-Remaining", "0")]]
    with pytest.raises(ratelimits.RateLimited) as refused:
        ratelimits.check_caller(capability=ApiCapability.PREDICT, principal=principal, ip="")
    assert refused.value.usage == ratelimits.Usage(limit=4, remaining=0)
    assert 1 <= refused.value.wait <= 60
    assert ratelimits.check_caller(capability=ApiCapability.PREDICT, principal=None, ip="203.0.113.9").remaining == 3  # by IP
