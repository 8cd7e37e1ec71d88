"""The attribution roll-up keyed by one dimension at a time (account × day × source × dimension
× value) instead of every combination of tags and key: a breakdown by one of them reads only
its rows. The rows of the old shape are dropped and the table refilled from the stored usage
records, by the same generated statement as every writer (usage/services/rollup.py)."""

from django.db import migrations, models


def empty(apps, schema_editor):
    apps.get_model("usage", "DailyAttribution").objects.all().delete()


def backfill(apps, schema_editor):
    from usage.services.rollup import DAILY_ATTRIBUTION, rollup_backfill

    rollup_backfill(rollup=DAILY_ATTRIBUTION)


class Migration(migrations.Migration):
    dependencies = [
        ("usage", "0009_attribution_backfill"),
    ]

    operations = [
        # Both ways: the rows of either shape mean nothing in the other (the reverse leaves
        # the old shape empty, as 0008 made it).
        migrations.RunPython(empty, empty),
        migrations.RemoveConstraint(model_name="dailyattribution", name="daily_attribution_unique"),
        migrations.RemoveField(model_name="dailyattribution", name="project"),
        migrations.RemoveField(model_name="dailyattribution", name="end_user"),
        migrations.RemoveField(model_name="dailyattribution", name="feature"),
        migrations.RemoveField(model_name="dailyattribution", name="ingest_key_id"),
        migrations.AddField(
            model_name="dailyattribution",
            name="dimension",
            field=models.CharField(
                choices=[
                    ("project", "Project"),
                    ("user", "User"),
                    ("feature", "Feature"),
                    ("ingest_key", "Ingest key"),
                ],
                default="",
                max_length=16,
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="dailyattribution",
            name="value",
            field=models.CharField(blank=True, default="", max_length=200),
            preserve_default=False,
        ),
        migrations.AddConstraint(
            model_name="dailyattribution",
            constraint=models.UniqueConstraint(
                fields=("account", "dimension", "day", "source", "value"),
                name="daily_attribution_unique",
            ),
        ),
        migrations.RunPython(backfill, empty),
    ]
