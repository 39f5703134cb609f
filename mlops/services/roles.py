"""Roles as Django groups: create them and give each exactly the permissions of ``mlops.security.roles``.

Idempotent and independent of ``post_migrate``: it creates the permissions it needs itself, so
it can run inside a data migration (pass the migration's ``apps``) on an empty database. Run it
again (from a later migration) when an app adds models a role should see: wildcards such as
``audit.view_*`` then pick the new permissions up.
"""

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.db import transaction

from mlops.security.roles import ROLE_ADMIN_PERMISSIONS, ROLE_CAPABILITIES, Role, capability_permission_codename


def _ensure_permissions(apps) -> None:
    for app_config in apps.get_app_configs():
        # Historical app configs have no models module; create_permissions skips those.
        had_module = getattr(app_config, "models_module", None)
        app_config.models_module = had_module or True
        try:
            create_permissions(app_config, verbosity=0, apps=apps)
        finally:
            app_config.models_module = had_module


@transaction.atomic
def roles_sync(*, apps=None, strict: bool = True) -> dict[str, int]:
    """Create the role groups and set their permissions; returns {role: number of permissions}.

    ``strict=False`` (for migrations) skips permissions that do not exist yet at that point of
    the migration history instead of failing; a later migration that runs this again adds them.
    """
    apps = apps or global_apps
    _ensure_permissions(apps)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    all_permissions = {
        f"{app_label}.{codename}": pk
        for pk, app_label, codename in Permission.objects.values_list("pk", "content_type__app_label", "codename")
    }
    result = {}
    for role in Role.values:
        wanted = {f"mlops.{capability_permission_codename(capability)}" for capability in ROLE_CAPABILITIES[role]}
        for name in ROLE_ADMIN_PERMISSIONS[role]:
            if name.endswith("*"):
                wanted |= {perm for perm in all_permissions if perm.startswith(name[:-1])}
            else:
                wanted.add(name)
        missing = sorted(name for name in wanted if name not in all_permissions)
        if missing and strict:
            raise LookupError(f"role {role}: permissions {', '.join(missing)} do not exist")
        group, _ = Group.objects.get_or_create(name=role)
        wanted -= set(missing)
        group.permissions.set([all_permissions[name] for name in wanted])
        result[role] = len(wanted)
    return result
