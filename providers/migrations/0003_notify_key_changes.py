"""PostgreSQL tells every process when a key, account or provider changes (key_memory.py).

Each process remembers the ingest keys it has looked up and forgets them all when a
notification arrives on `ct_ingest_keys`. Triggers, not application code, send it, so a change
made anywhere (admin, shell, raw SQL, another release) is heard. A key's last_used_at alone is
not a change worth forgetting for: it is written once a minute per key in use.
Nor are an account's sync bookkeeping columns, written a few times per sync run.
SQLite has no LISTEN; there the processes do not remember keys the proxy relies on.
The trigger names are listed in providers/key_memory.py (TRIGGERS), whose listener checks
that they are all in place.
"""

from django.db import migrations

# Account columns that sync runs write; none of them matters to a proxied call or an ingest.
BOOKKEEPING = (
    "ARRAY['last_sync_at', 'last_sync_status', 'last_sync_error', 'needs_attention', 'updated_at']"
)

CREATE = f"""
CREATE FUNCTION ct_notify_ingest_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ct_ingest_keys', TG_TABLE_NAME);
    RETURN NULL;
END
$$;
CREATE TRIGGER ct_ingest_key_updated AFTER UPDATE ON providers_ingestkey FOR EACH ROW
    WHEN ((to_jsonb(OLD) - 'last_used_at') IS DISTINCT FROM (to_jsonb(NEW) - 'last_used_at'))
    EXECUTE FUNCTION ct_notify_ingest_keys();
CREATE TRIGGER ct_ingest_key_removed AFTER DELETE OR TRUNCATE ON providers_ingestkey
    FOR EACH STATEMENT EXECUTE FUNCTION ct_notify_ingest_keys();
CREATE TRIGGER ct_account_updated AFTER UPDATE ON providers_provideraccount FOR EACH ROW
    WHEN ((to_jsonb(OLD) - {BOOKKEEPING}) IS DISTINCT FROM (to_jsonb(NEW) - {BOOKKEEPING}))
    EXECUTE FUNCTION ct_notify_ingest_keys();
CREATE TRIGGER ct_account_removed AFTER DELETE OR TRUNCATE ON providers_provideraccount
    FOR EACH STATEMENT EXECUTE FUNCTION ct_notify_ingest_keys();
CREATE TRIGGER ct_provider_changed AFTER UPDATE OR DELETE OR TRUNCATE ON providers_provider
    FOR EACH STATEMENT EXECUTE FUNCTION ct_notify_ingest_keys();
"""

DROP = """
DROP TRIGGER IF EXISTS ct_provider_changed ON providers_provider;
DROP TRIGGER IF EXISTS ct_account_removed ON providers_provideraccount;
DROP TRIGGER IF EXISTS ct_account_updated ON providers_provideraccount;
DROP TRIGGER IF EXISTS ct_ingest_key_removed ON providers_ingestkey;
DROP TRIGGER IF EXISTS ct_ingest_key_updated ON providers_ingestkey;
DROP FUNCTION IF EXISTS ct_notify_ingest_keys();
"""


def _on_postgresql(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("providers", "0002_seed_providers")]

    operations = [migrations.RunPython(_on_postgresql(CREATE), _on_postgresql(DROP))]
