"""Every existing user gets their personal workspace, as its owner (new users get theirs from
accounts.services.workspace_personal_create). The apps' own migrations then move what each
user owned into it (accounts.migration_helpers.move_owned_to_personal_workspace)."""

from django.db import migrations

from accounts.migration_helpers import personal_workspaces_ensure


def forward(apps, schema_editor):
    personal_workspaces_ensure(apps)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0003_workspaces")]

    operations = [migrations.RunPython(forward, migrations.RunPython.noop)]
