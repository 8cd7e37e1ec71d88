"""A database-level guard: audit rows cannot be changed or deleted, whatever client asks.

The one UPDATE allowed is the one Django makes when a user is deleted (actor/owner set to NULL,
nothing else changed). PostgreSQL also refuses DELETE; TRUNCATE (an operator's whole-table
reset, and what the test runner's flush uses) is not a row operation and stays possible.
SQLite refuses UPDATE only: its flush empties tables with DELETE, and the app's own guard
(AuditEvent.delete / the queryset's delete) refuses deletes there.
"""

from django.db import migrations

_SAME = (
    "action, object_type, object_id, object_label, actor_label, owner_label, created_at, changes"
)
_PG = f"""
CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'UPDATE'
     AND (NEW.actor_id IS NULL OR NEW.actor_id = OLD.actor_id)
     AND (NEW.owner_id IS NULL OR NEW.owner_id = OLD.owner_id)
     AND NEW.id = OLD.id
     AND (NEW.action, NEW.object_type, NEW.object_id, NEW.object_label, NEW.actor_label,
          NEW.owner_label, NEW.created_at, NEW.changes::text)
         IS NOT DISTINCT FROM
         (OLD.action, OLD.object_type, OLD.object_id, OLD.object_label, OLD.actor_label,
          OLD.owner_label, OLD.created_at, OLD.changes::text) THEN
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
  AND (NEW.owner_id IS NULL OR NEW.owner_id = OLD.owner_id)
  AND NEW.action IS OLD.action AND NEW.object_type IS OLD.object_type
  AND NEW.object_id IS OLD.object_id AND NEW.object_label IS OLD.object_label
  AND NEW.actor_label IS OLD.actor_label AND NEW.owner_label IS OLD.owner_label
  AND NEW.created_at IS OLD.created_at AND NEW.changes IS OLD.changes
)
BEGIN SELECT RAISE(ABORT, 'audit_auditevent is append-only'); END;
"""
_SQLITE_DROP = "DROP TRIGGER IF EXISTS audit_event_no_update;"


def _forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(_PG)
    elif vendor == "sqlite":
        schema_editor.execute(_SQLITE)


def _backward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(_PG_DROP)
    elif vendor == "sqlite":
        schema_editor.execute(_SQLITE_DROP)


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [migrations.RunPython(_forward, _backward)]
