from django.db import migrations

from providers.catalogue import catalogue_sync


def seed(apps, schema_editor):
    catalogue_sync(apps.get_model("providers", "Provider"))


class Migration(migrations.Migration):
    dependencies = [("providers", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
