"""manage.py demo_traffic: its answers to bad input, and a key whose limits fit the rate."""

import pytest
from django.core.management import CommandError, call_command

from mlops.models import ApiKey
from mlops.services.demo import demo_traffic_key_create

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--url", "ftp://127.0.0.1:8000"], "--url: the URL must be http:// or https:// with a host"),
        (["--url", "127.0.0.1:8000"], "--url: the URL must be http:// or https:// with a host"),
        (["--rate", "0"], "--rate must be above 0 and at most 200 requests a second, not 0"),
        (["--rate", "500"], "--rate must be above 0 and at most 200 requests a second, not 500"),
        (["--duration", "-1"], "--duration must not be negative, not -1"),
        (["--outcome-delay", "-2"], "--outcome-delay must not be negative, not -2"),
    ],
)
def test_bad_input_is_one_readable_line(arguments, message):
    with pytest.raises(CommandError) as raised:
        call_command("demo_traffic", *arguments)
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)
    assert not ApiKey.objects.exists()  # nothing was created for a run that never started


def test_no_server_is_one_readable_line_and_leaves_no_live_key(settings):
    with pytest.raises(CommandError, match=r"^http://127.0.0.1:9/readyz did not answer 200 within 0 s: is the platform running there\?$"):
        call_command("demo_traffic", "--url", "http://127.0.0.1:9", "--wait", "0")
    [key] = ApiKey.objects.all()
    assert key.revoked_at is not None


def test_a_rate_within_the_demo_clients_limits_gets_a_demo_clients_key(settings):
    settings.RATELIMIT_PREDICT, settings.RATELIMIT_PREDICT_BURST = "30/m", "5/s"
    key, _ = demo_traffic_key_create(rate=0.5, outcome_batches_per_second=1)
    assert key.role == "inference_client"


def test_a_few_requests_a_second_get_a_key_no_limit_applies_to(settings):
    # 30 a minute would refuse half of 1 request a second: the 32 of 61 answered 429.
    settings.RATELIMIT_PREDICT, settings.RATELIMIT_PREDICT_BURST = "30/m", "5/s"
    key, _ = demo_traffic_key_create(rate=4, outcome_batches_per_second=1)
    assert key.role == "internal_service" and key.expires_at is not None
