"""Lifecycle actions in the admin: they ask for a reason, call the services and respect permissions."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse

from mlops.choices import ModelStatus

pytestmark = pytest.mark.django_db
CHANGELIST = reverse("admin:mlops_modelversion_changelist")


def staff_user(*permissions: str):
    user = get_user_model().objects.create_user("staff", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_modelversion", *permissions]))
    return user


def test_validate_asks_for_a_reason_then_validates(client, push_demo):
    model = push_demo("logreg")
    client.force_login(staff_user("manage_lifecycle"))
    form = client.post(CHANGELIST, {"action": "validate", "_selected_action": [model.pk]})
    assert form.status_code == 200
    assert b"reason" in form.content
    model.refresh_from_db()
    assert model.status == ModelStatus.CANDIDATE  # nothing happens before the reason is given

    done = client.post(CHANGELIST, {"action": "validate", "_selected_action": [model.pk], "apply": "1", "reason": "AUC 0.99"}, follow=True)
    assert done.status_code == 200
    model.refresh_from_db()
    assert (model.status, model.change_reason) == (ModelStatus.VALIDATED, "AUC 0.99")


def test_an_illegal_transition_shows_the_services_message(client, push_demo):
    model = push_demo("logreg")
    client.force_login(staff_user("manage_lifecycle"))
    page = client.post(CHANGELIST, {"action": "promote", "_selected_action": [model.pk], "apply": "1", "reason": "yolo"}, follow=True)
    assert b"only validated or canary versions can become production" in page.content
    model.refresh_from_db()
    assert model.status == ModelStatus.CANDIDATE


def test_staff_without_the_lifecycle_permission_cannot_run_the_actions(client, push_demo):
    model = push_demo("logreg")
    client.force_login(staff_user())
    page = client.get(CHANGELIST)
    assert page.status_code == 200
    assert b'value="validate"' not in page.content
    client.post(CHANGELIST, {"action": "validate", "_selected_action": [model.pk], "apply": "1", "reason": "sneaky"})
    model.refresh_from_db()
    assert model.status == ModelStatus.CANDIDATE


def test_non_staff_users_are_sent_to_the_login_page(client, push_demo):
    push_demo("logreg")
    client.force_login(get_user_model().objects.create_user("outsider", password="pw"))
    response = client.get(CHANGELIST)
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_history_is_visible_and_read_only(client, production_model):
    client.force_login(staff_user("manage_lifecycle"))
    page = client.get(reverse("admin:mlops_modelversion_history", args=[production_model.pk]))
    assert page.status_code == 200
    assert b"test" in page.content  # the reason given by the fixture's transitions
