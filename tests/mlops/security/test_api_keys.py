"""API keys: how they are sent, stored, expired and revoked; the admin and the command."""

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from mlops import services
from mlops.models import ApiKey

from .conftest import bearer, create_key

pytestmark = pytest.mark.django_db
PROBE = "/v1/_probe/predict"


def test_a_key_works_as_bearer_and_as_x_api_key():
    key = create_key("inference_client")
    assert Client().get(PROBE, headers=bearer(key)).json()["name"] == "client-a"
    assert Client().get(PROBE, headers={"X-API-Key": key}).status_code == 200


def test_only_the_hash_of_the_secret_is_stored():
    key = create_key("inference_client")
    row = ApiKey.objects.get()
    assert key.split(".", 1)[1] not in str(ApiKey.objects.values().get())
    assert key.startswith(f"mlk_{row.prefix}.") and len(row.secret_sha256) == 64


@pytest.mark.parametrize(
    "credential",
    ["mlk_nothere.secret", "mlk_", "mlk_abc", "mlk_.x", "not-a-key-or-jwt", "a.b.c"],
)
def test_unknown_or_malformed_credentials_answer_401(credential):
    response = Client().get(PROBE, headers=bearer(credential))
    assert response.status_code == 401
    assert response.json()["error"]["code"] in ("invalid_api_key", "invalid_token")


def test_a_right_prefix_with_a_wrong_secret_is_refused():
    key = create_key("inference_client")
    response = Client().get(PROBE, headers=bearer(key[:-2] + "zz"))
    assert (response.status_code, response.json()["error"]["code"]) == (401, "invalid_api_key")


def test_an_expired_key_is_refused():
    key = create_key("inference_client", expires_in_days=1)
    ApiKey.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    from mlops.security.authentication import api_keys

    api_keys.invalidate()
    response = Client().get(PROBE, headers=bearer(key))
    assert (response.status_code, response.json()["error"]["code"]) == (401, "api_key_expired")


def test_a_revoked_key_is_refused_and_revoking_twice_keeps_the_first_revocation():
    key = create_key("inference_client")
    api_key = ApiKey.objects.get()
    first = services.api_key_revoke(api_key_id=api_key.pk).revoked_at
    assert services.api_key_revoke(api_key_id=api_key.pk).revoked_at == first
    from mlops.security.authentication import api_keys

    api_keys.invalidate()
    assert Client().get(PROBE, headers=bearer(key)).status_code == 401


def test_a_client_may_hold_several_keys_and_revoking_one_keeps_the_others():
    first, second = create_key("inference_client"), create_key("inference_client")
    services.api_key_revoke(api_key_id=ApiKey.objects.get(prefix=first[4:].split(".")[0]).pk)
    from mlops.security.authentication import api_keys

    api_keys.invalidate()
    assert Client().get(PROBE, headers=bearer(first)).status_code == 401
    assert Client().get(PROBE, headers=bearer(second)).status_code == 200


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"client": "", "role": "viewer"}, "client must be"),
        ({"client": "x", "role": "root"}, "role 'root'"),
        ({"client": "x", "role": "viewer", "expires_in_days": 0}, "must be positive"),
        ({"client": "x", "role": "viewer", "expires_at": timezone.now() - timedelta(days=1)}, "in the future"),
    ],
)
def test_create_refuses_bad_input_with_a_readable_message(kwargs, message):
    with pytest.raises(services.ApiKeyError, match=message):
        services.api_key_create(**kwargs)


def test_the_command_prints_the_key_once_on_one_line():
    out = StringIO()
    call_command("create_api_key", "--client", "checkout", "--role", "inference_client", "--expires-days", "30", stdout=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlk_")
    api_key = ApiKey.objects.get()
    assert (api_key.client, api_key.role) == ("checkout", "inference_client")
    assert timedelta(days=29) < api_key.expires_at - timezone.now() <= timedelta(days=30)


def test_the_command_fails_readably_on_bad_input():
    with pytest.raises(CommandError, match="positive"):
        call_command("create_api_key", "--client", "checkout", "--role", "viewer", "--expires-days", "-1")
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("create_api_key", "--client", "checkout", "--role", "root")


# --- admin -----------------------------------------------------------------------------------

CHANGELIST = reverse("admin:mlops_apikey_changelist")
ADD = reverse("admin:mlops_apikey_add")


def admin_client(django_user_model, *codenames):
    user = django_user_model.objects.create_user("keeper", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="mlops", codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def test_the_admin_creates_a_key_and_shows_it_once(django_user_model):
    client = admin_client(django_user_model, "add_apikey", "view_apikey")
    page = client.post(ADD, {"client": "partner-x", "role": "viewer", "label": "reports"}, follow=True)
    assert page.status_code == 200
    api_key = ApiKey.objects.get()
    assert f"mlk_{api_key.prefix}.".encode() in page.content
    assert api_key.created_by.username == "keeper"
    again = client.get(reverse("admin:mlops_apikey_change", args=[api_key.pk]))
    assert again.status_code == 200 and f"mlk_{api_key.prefix}.".encode() not in again.content


def test_the_admin_lists_searches_and_filters(django_user_model):
    create_key("viewer", client="alpha")
    create_key("auditor", client="beta")
    client = admin_client(django_user_model, "view_apikey")
    assert b"alpha" in client.get(CHANGELIST).content
    found = client.get(CHANGELIST, {"q": "beta"}).content
    assert b"beta" in found and b"alpha" not in found
    assert b"alpha" in client.get(CHANGELIST, {"status": "active", "role": "viewer"}).content


def test_revoking_in_the_admin_asks_for_confirmation_first(django_user_model):
    create_key("viewer")
    api_key = ApiKey.objects.get()
    client = admin_client(django_user_model, "view_apikey", "revoke_apikey")
    confirm = client.post(CHANGELIST, {"action": "revoke", "_selected_action": [api_key.pk]})
    assert confirm.status_code == 200 and b"Yes, revoke" in confirm.content
    api_key.refresh_from_db()
    assert api_key.revoked_at is None
    client.post(CHANGELIST, {"action": "revoke", "_selected_action": [api_key.pk], "confirm": "yes"})
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None and api_key.revoked_by.username == "keeper"


def test_revoking_needs_the_revoke_permission(django_user_model):
    create_key("viewer")
    api_key = ApiKey.objects.get()
    client = admin_client(django_user_model, "view_apikey")
    client.post(CHANGELIST, {"action": "revoke", "_selected_action": [api_key.pk], "confirm": "yes"})
    api_key.refresh_from_db()
    assert api_key.revoked_at is None
    assert b'value="revoke"' not in client.get(CHANGELIST).content


def test_keys_cannot_be_edited_or_deleted_in_the_admin(django_user_model):
    create_key("viewer")
    api_key = ApiKey.objects.get()
    client = admin_client(django_user_model, "view_apikey", "change_apikey", "delete_apikey")
    client.post(reverse("admin:mlops_apikey_change", args=[api_key.pk]), {"client": "evil", "role": "internal_service"})
    assert client.post(reverse("admin:mlops_apikey_delete", args=[api_key.pk]), {"post": "yes"}).status_code == 403
    api_key.refresh_from_db()
    assert (api_key.client, api_key.role) == ("client-a", "viewer")


def test_the_admin_is_for_staff_only(django_user_model):
    user = django_user_model.objects.create_user("outsider", password="pw")
    client = Client()
    client.force_login(user)
    assert client.get(CHANGELIST).status_code == 302  # to the admin login
