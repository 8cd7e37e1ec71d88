from django.db import migrations, models


def slack_format_to_format(apps, schema_editor):
    """slack_format=True becomes "slack"; every other channel keeps the generic JSON."""
    channel = apps.get_model("alerts", "NotificationChannel")
    channel.objects.filter(slack_format=True).update(format="slack")
    channel.objects.filter(slack_format=False).update(format="generic")


def format_to_slack_format(apps, schema_editor):
    # Backwards: only Slack had a flag; Teams and Discord channels fall back to generic JSON.
    channel = apps.get_model("alerts", "NotificationChannel")
    channel.objects.update(slack_format=False)
    channel.objects.filter(format="slack").update(slack_format=True)


class Migration(migrations.Migration):
    dependencies = [
        ("alerts", "0007_workspace_owns"),
    ]

    operations = [
        migrations.AddField(
            model_name="notificationchannel",
            name="format",
            field=models.CharField(
                choices=[
                    ("generic", "Generic JSON"),
                    ("slack", "Slack"),
                    ("teams", "Microsoft Teams"),
                    ("discord", "Discord"),
                ],
                default="generic",
                help_text=(
                    "The body a webhook receives: generic JSON, or Slack, Teams or Discord's own."
                ),
                max_length=16,
            ),
        ),
        migrations.RunPython(slack_format_to_format, format_to_slack_format),
        migrations.RemoveField(model_name="notificationchannel", name="slack_format"),
    ]
