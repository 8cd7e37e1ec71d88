"""Each webhook format's exact body as the receiving server gets it, its limits, and the
`format` choice in the form, the API and the migration from the old Slack flag."""

from __future__ import annotations

import json

import pytest
from django_q.conf import Conf

from alerts import services
from alerts.forms import ChannelForm
from alerts.models import NotificationChannel, NotificationDelivery
from alerts.tests.factories import AlertFactory, ChannelFactory
from costtracker.tests.migrating import back_to_latest, migrate_to  # noqa: F401

MESSAGE = "All spend: $85.00 spent this month, 85.0% of the $100.00 budget (alert at 80%)."


@pytest.fixture(autouse=True)
def _tasks_run_inline(settings, monkeypatch):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": True}
    monkeypatch.setattr(Conf, "SYNC", True)
    settings.WEBHOOK_ALLOW_PRIVATE = True  # pytest-httpserver listens on loopback


def received(httpserver, fmt: str, *, message: str = MESSAGE) -> tuple[dict, str]:
    """Send one alert to a webhook of format ``fmt``; the body received and the alert's URL."""
    httpserver.expect_request("/hook", method="POST").respond_with_data("", status=204)
    channel = ChannelFactory(kind="webhook", target=httpserver.url_for("/hook"), format=fmt)
    # spent 85 of a 100 budget: the facts read $85.00 and $100.00 (format_usd, 2 places).
    alert = AlertFactory(workspace=channel.workspace, message=message)
    services.notifications_dispatch(alert=alert)
    assert NotificationDelivery.objects.get().status == "sent"
    (request, _), *others = httpserver.log
    assert others == []
    assert request.headers["Content-Type"] == "application/json"
    return json.loads(request.get_data()), f"http://127.0.0.1:8000/alerts/{alert.pk}/"


@pytest.mark.django_db
def test_it_sends_teams_an_adaptive_card_message(httpserver):
    body, url = received(httpserver, "teams")

    assert body == {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.2",
                    "body": [
                        {
                            "type": "TextBlock",
                            "text": "AI Cost Tracker: Budget threshold",
                            "weight": "Bolder",
                            "size": "Medium",
                            "wrap": True,
                        },
                        {"type": "TextBlock", "text": MESSAGE, "wrap": True},
                        {
                            "type": "FactSet",
                            "facts": [
                                {"title": "Spent", "value": "$85.00"},
                                {"title": "Budget", "value": "$100.00"},
                            ],
                        },
                    ],
                    "actions": [
                        {"type": "Action.OpenUrl", "title": "Open in AI Cost Tracker", "url": url}
                    ],
                },
            }
        ],
    }


@pytest.mark.django_db
def test_it_sends_discord_an_embed_that_mentions_no_one(httpserver):
    body, url = received(httpserver, "discord")

    assert body == {
        "embeds": [
            {
                "title": "AI Cost Tracker: Budget threshold",
                "color": 0xE67E22,
                "url": url,
                "description": MESSAGE,
                "fields": [
                    {"name": "Spent", "value": "$85.00", "inline": True},
                    {"name": "Budget", "value": "$100.00", "inline": True},
                ],
            }
        ],
        "allowed_mentions": {"parse": []},
    }


@pytest.mark.django_db
def test_it_sends_slack_block_kit_with_the_money_as_fields(httpserver):
    body, url = received(httpserver, "slack")

    assert body["blocks"][1] == {"type": "section", "text": {"type": "mrkdwn", "text": MESSAGE}}
    assert body["blocks"][2] == {
        "type": "section",
        "fields": [
            {"type": "mrkdwn", "text": "*Spent*\n$85.00"},
            {"type": "mrkdwn", "text": "*Budget*\n$100.00"},
        ],
    }
    assert body["blocks"][3]["elements"][0]["text"] == f"<{url}|Open in AI Cost Tracker>"


@pytest.mark.django_db
def test_it_keeps_the_generic_json_for_generic_channels(httpserver):
    body, url = received(httpserver, "generic")

    assert (body["source"], body["version"]) == ("ai-cost-tracker", 1)
    assert (body["alert"]["message"], body["alert"]["url"]) == (MESSAGE, url)
    assert body["alert"]["data"] == {"spent": "85", "amount": "100.00"}


@pytest.mark.django_db
def test_it_cuts_a_long_message_to_discords_limit_but_never_the_money(httpserver):
    long = "x" * 5000
    body, _ = received(httpserver, "discord", message=long)

    embed = body["embeds"][0]
    assert embed["description"] == "x" * 4095 + "…"  # 4096 characters, Discord's limit
    assert [f["value"] for f in embed["fields"]] == ["$85.00", "$100.00"]


@pytest.mark.django_db
def test_it_cuts_a_long_message_for_teams_but_never_the_money(httpserver):
    body, _ = received(httpserver, "teams", message="y" * 3000)

    card = body["attachments"][0]["content"]
    assert card["body"][1]["text"] == "y" * 1999 + "…"  # 2000 characters: under Teams' 28 KB
    assert card["body"][2]["facts"][0] == {"title": "Spent", "value": "$85.00"}


@pytest.mark.django_db
def test_it_cuts_a_long_message_for_slack_but_never_the_money(httpserver):
    body, _ = received(httpserver, "slack", message="z" * 3500)

    assert body["blocks"][1]["text"]["text"] == "z" * 2999 + "…"  # Block Kit section: 3000
    assert body["blocks"][2]["fields"][1]["text"] == "*Budget*\n$100.00"


@pytest.mark.django_db
def test_it_offers_the_formats_in_the_form_and_rejects_others():
    target = "https://hooks.example.com/x"
    good = ChannelForm({"kind": "webhook", "target": target, "format": "discord"})
    bad = ChannelForm({"kind": "webhook", "target": target, "format": "mattermost"})

    assert [value for value, _ in good.fields["format"].choices] == [
        "generic",
        "slack",
        "teams",
        "discord",
    ]
    assert bad.is_valid() is False and list(bad.errors) == ["format"]


@pytest.mark.django_db
def test_it_stores_generic_for_an_email_channel_whatever_the_format():
    channel = ChannelFactory.build()
    created = services.channel_create(
        workspace=channel.workspace, kind="email", target="ops@example.com", format="teams"
    )
    assert created.format == "generic"


BEFORE = ("alerts", "0007_workspace_owns")
AFTER = ("alerts", "0008_channel_webhook_format")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("back_to_latest")
def test_it_migrates_the_slack_flag_to_the_slack_format():
    apps = migrate_to([BEFORE])
    Workspace = apps.get_model("accounts", "Workspace")
    Channel = apps.get_model("alerts", "NotificationChannel")
    workspace = Workspace.objects.create(name="Old")
    slack = Channel.objects.create(
        workspace=workspace, kind="webhook", target="https://hooks.slack.com/x", slack_format=True
    )
    plain = Channel.objects.create(workspace=workspace, kind="webhook", target="https://a.b/x")
    email = Channel.objects.create(workspace=workspace, kind="email", target="ops@example.com")

    migrate_to([AFTER])

    formats = dict(NotificationChannel.objects.values_list("pk", "format"))
    assert formats == {slack.pk: "slack", plain.pk: "generic", email.pk: "generic"}
