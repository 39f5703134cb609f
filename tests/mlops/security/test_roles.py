"""Roles: the groups exist with exactly the permissions of the table in mlops.security.roles."""

import pytest
from django.contrib.auth.models import Group

from mlops.choices import ApiCapability
from mlops.security.roles import CAPABILITY_RATE_GROUP, ROLE_CAPABILITIES, Role
from mlops.services import roles_sync

pytestmark = pytest.mark.django_db


def perms(role: str) -> set[str]:
    return {f"{p.content_type.app_label}.{p.codename}" for p in Group.objects.get(name=role).permissions.select_related("content_type")}


def test_every_capability_has_a_role_and_a_rate_group():
    for capability in ApiCapability.values:
        assert any(capability in capabilities for capabilities in ROLE_CAPABILITIES.values())
        assert capability in CAPABILITY_RATE_GROUP
    assert ROLE_CAPABILITIES[Role.INTERNAL_SERVICE] == frozenset(ApiCapability.values)


def test_the_migrations_made_each_role_a_group_with_its_api_permissions():
    for role in Role.values:
        api = {perm.split(".", 1)[1].removeprefix("api_") for perm in perms(role) if perm.startswith("mlops.api_")}
        assert api == set(ROLE_CAPABILITIES[role]), role


def test_the_auditor_sees_the_audit_pages_and_the_viewer_changes_nothing():
    auditor = perms(Role.AUDITOR)
    assert {"audit.view_predictionlog", "audit.view_outcome"} <= auditor
    assert not any(perm.split(".")[1].startswith(("add_", "change_", "delete_")) for perm in perms(Role.VIEWER))
    assert "mlops.manage_rollout" in perms(Role.ML_OPS) and "mlops.manage_rollout" not in perms(Role.VIEWER)


def test_roles_sync_is_idempotent_and_every_named_permission_exists():
    before = {role: perms(role) for role in Role.values}
    roles_sync(strict=True)  # strict: a permission in the table that does not exist fails here
    roles_sync(strict=True)
    assert {role: perms(role) for role in Role.values} == before
