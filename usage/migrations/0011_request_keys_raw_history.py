"""Request keys move to their own table (RequestKey), and removals of raw history are logged.

The unique (account, natural_key) index of usage records becomes partial (synced and manual
rows only): on PostgreSQL the records are partitioned next (0012), and a unique index over
all of them would have to include the month. The keys of the requests already recorded are
copied first, so nothing recorded before becomes recordable again.
"""

import django.db.models.deletion
from django.db import migrations, models

COPY_KEYS = """
    INSERT INTO usage_requestkey (account_id, natural_key, bucket_start)
    SELECT account_id, natural_key, bucket_start FROM usage_usagerecord
    WHERE source = 'estimated'
"""


class Migration(migrations.Migration):
    dependencies = [
        ("providers", "0013_ratelimits"),
        ("usage", "0010_attribution_by_dimension"),
    ]

    operations = [
        migrations.CreateModel(
            name="RawHistoryPrune",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "before",
                    models.DateTimeField(help_text="Records before this instant were removed."),
                ),
                ("pruned_at", models.DateTimeField(auto_now_add=True)),
                (
                    "completed_at",
                    models.DateTimeField(
                        blank=True,
                        help_text="Empty while the removal is under way (or was cut off).",
                        null=True,
                    ),
                ),
                (
                    "months",
                    models.PositiveIntegerField(default=0, help_text="Monthly partitions dropped."),
                ),
                (
                    "records",
                    models.BigIntegerField(default=0, help_text="Records deleted one by one."),
                ),
                ("keys", models.BigIntegerField(default=0, help_text="Request keys deleted.")),
            ],
            options={"ordering": ["-before"]},
        ),
        migrations.CreateModel(
            name="RequestKey",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "account_id",
                        "natural_key",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                (
                    "account",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="providers.provideraccount",
                    ),
                ),
                ("natural_key", models.CharField(max_length=600)),
                (
                    "bucket_start",
                    models.DateTimeField(help_text="The request's time: when its key may go."),
                ),
            ],
        ),
        migrations.RunSQL(COPY_KEYS, reverse_sql=migrations.RunSQL.noop),
        migrations.RemoveConstraint(
            model_name="usagerecord",
            name="usage_record_unique_natural_key",
        ),
        migrations.AddConstraint(
            model_name="usagerecord",
            constraint=models.UniqueConstraint(
                condition=models.Q(("source", "estimated"), _negated=True),
                fields=("account", "natural_key"),
                name="usage_record_unique_settled_key",
            ),
        ),
    ]
