"""Audit events belong to a workspace instead of a user (0003 filled the column).

The append-only guard (0002) names its columns, so it is dropped for the change and made again
over the new ones: the one UPDATE it lets through is still the one Django makes when a user or
a workspace is deleted (actor / workspace set to NULL, nothing else changed). Existing events
keep their label (the username whose data it was).
"""

import importlib

import django.db.models.deletion
from django.db import migrations, models

from accounts.migration_helpers import owner_back_from_workspace

_SAME = (
    "action, object_type, object_id, object_label, actor_label, workspace_label, created_at, "
    "changes"
)
_PG = f"""
CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'UPDATE'
     AND (NEW.actor_id IS NULL OR NEW.actor_id = OLD.actor_id)
     AND (NEW.workspace_id IS NULL OR NEW.workspace_id = OLD.workspace_id)
     AND NEW.id = OLD.id
     AND (NEW.action, NEW.object_type, NEW.object_id, NEW.object_label, NEW.actor_label,
          NEW.workspace_label, NEW.created_at, NEW.changes::text)
         IS NOT DISTINCT FROM
         (OLD.action, OLD.object_type, OLD.object_id, OLD.object_label, OLD.actor_label,
          OLD.workspace_label, OLD.created_at, OLD.changes::text) THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'audit_auditevent is append-only ({_SAME} are fixed)';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS audit_event_append_only ON audit_auditevent;
CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_auditevent
  FOR EACH ROW EXECUTE FUNCTION audit_event_append_only();
"""
_PG_DROP = """
DROP TRIGGER IF EXISTS audit_event_append_only ON audit_auditevent;
DROP FUNCTION IF EXISTS audit_event_append_only();
"""
_SQLITE = """
CREATE TRIGGER IF NOT EXISTS audit_event_no_update BEFORE UPDATE ON audit_auditevent
WHEN NOT (
  NEW.id = OLD.id
  AND (NEW.actor_id IS NULL OR NEW.actor_id = OLD.actor_id)
  AND (NEW.workspace_id IS NULL OR NEW.workspace_id = OLD.workspace_id)
  AND NEW.action IS OLD.action AND NEW.object_type IS OLD.object_type
  AND NEW.object_id IS OLD.object_id AND NEW.object_label IS OLD.object_label
  AND NEW.actor_label IS OLD.actor_label AND NEW.workspace_label IS OLD.workspace_label
  AND NEW.created_at IS OLD.created_at AND NEW.changes IS OLD.changes
)
BEGIN SELECT RAISE(ABORT, 'audit_auditevent is append-only'); END;
"""
_SQLITE_DROP = "DROP TRIGGER IF EXISTS audit_event_no_update;"


def _drop_guard(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(_PG_DROP)
    elif vendor == "sqlite":
        schema_editor.execute(_SQLITE_DROP)


def _make_guard(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(_PG)
    elif vendor == "sqlite":
        schema_editor.execute(_SQLITE)


def _old_guard(apps, schema_editor):
    # Going back: the owner_id guard of 0002 over the restored columns.
    importlib.import_module("audit.migrations.0002_append_only_guard")._forward(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_personal_workspaces"),
        ("audit", "0003_workspace_added"),
    ]

    operations = [
        migrations.RunPython(_drop_guard, _old_guard),
        # Going back: each event's owner again, before the old guard (which refuses setting it).
        migrations.RunPython(migrations.RunPython.noop, owner_back_from_workspace("audit", "AuditEvent")),
        migrations.RemoveIndex(model_name="auditevent", name="audit_owner_created"),
        migrations.RemoveField(model_name="auditevent", name="owner"),
        migrations.RenameField(
            model_name="auditevent", old_name="owner_label", new_name="workspace_label"
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="workspace",
            field=models.ForeignKey(
                blank=True,
                help_text="The workspace whose data changed; empty for shared data such as prices.",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="accounts.workspace",
            ),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["workspace", "-created_at"], name="audit_workspace_created"),
        ),
        migrations.RunPython(_make_guard, _drop_guard),
    ]
