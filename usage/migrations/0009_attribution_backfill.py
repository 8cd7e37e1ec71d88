"""Once filled the attribution roll-up of 0008's shape from the stored usage records. Now a
step that does nothing: the backfill runs the writers' current statement
(usage/services/rollup.py), which fits the table only as 0010 reshapes it, so 0010 fills it.
Kept so that databases already past it stay consistent with the migration graph."""

from django.db import migrations


def backfill(apps, schema_editor):
    """Nothing: 0010 fills the roll-up (see above)."""


def empty(apps, schema_editor):
    apps.get_model("usage", "DailyAttribution").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("usage", "0008_attribution"),
    ]

    operations = [
        migrations.RunPython(backfill, empty),
    ]
