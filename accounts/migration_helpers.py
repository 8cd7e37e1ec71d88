"""Code the workspace data migrations share. Frozen with them: it uses only historical models."""

from __future__ import annotations


def personal_workspaces_ensure(apps) -> dict[int, int]:
    """Give every user without one a personal workspace, as its owner; return {user id:
    workspace id} for all users. Run by accounts 0004 and again by each app's move, so a user
    made between them (a partial migration) is never left without one."""
    User = apps.get_model("accounts", "User")
    Workspace = apps.get_model("accounts", "Workspace")
    Membership = apps.get_model("accounts", "Membership")
    personal = dict(
        Workspace.objects.filter(personal_for__isnull=False).values_list("personal_for_id", "id")
    )
    for user in User.objects.exclude(pk__in=list(personal)).order_by("pk").iterator():
        workspace = Workspace.objects.create(
            # As accounts.services.workspace_personal_name (frozen here): a username may be
            # 150 characters, a workspace name 100.
            name=f"{user.username[:88]}'s workspace",
            time_zone=user.time_zone,
            personal_for=user,
        )
        Membership.objects.create(workspace=workspace, user=user, role="owner")
        personal[user.pk] = workspace.pk
    return personal


def move_owned_to_personal_workspace(app_label: str, *model_names: str):
    """A RunPython forward function: each row of the models moves to its owner's personal
    workspace. Rows already in a workspace stay."""

    def forward(apps, schema_editor):
        personal = personal_workspaces_ensure(apps)
        for name in model_names:
            model = apps.get_model(app_label, name)
            unmoved = model.objects.filter(workspace__isnull=True)
            for owner_id in set(unmoved.values_list("owner_id", flat=True)):
                if owner_id in personal:
                    unmoved.filter(owner_id=owner_id).update(workspace_id=personal[owner_id])

    return forward


def owner_back_from_workspace(app_label: str, *model_names: str):
    """A RunPython backward function, the reverse of the move: each row's owner is its
    workspace's user (a personal workspace), else the workspace's first owner (a shared one:
    going back merges it into that owner's data; two rows that then collide, such as two
    accounts of one name, stop the migration rather than lose one)."""

    def backward(apps, schema_editor):
        Workspace = apps.get_model("accounts", "Workspace")
        Membership = apps.get_model("accounts", "Membership")
        owner_of = dict(
            Workspace.objects.filter(personal_for__isnull=False).values_list(
                "id", "personal_for_id"
            )
        )
        owners = Membership.objects.filter(role="owner").order_by("pk")
        for workspace_id, user_id in owners.values_list("workspace_id", "user_id"):
            owner_of.setdefault(workspace_id, user_id)  # personal first, then the first owner
        for name in model_names:
            model = apps.get_model(app_label, name)
            rows = model.objects.filter(owner__isnull=True, workspace__isnull=False)
            for workspace_id in set(rows.values_list("workspace_id", flat=True)):
                if workspace_id in owner_of:
                    rows.filter(workspace_id=workspace_id).update(owner_id=owner_of[workspace_id])

    return backward
