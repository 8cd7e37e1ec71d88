from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine
from django.core import mail
from django.core.exceptions import ValidationError
from django_q.conf import Conf

from accounts.tests.factories import UserFactory
from alerts import services
from alerts.models import Alert, Budget, NotificationChannel, NotificationDelivery
from alerts.tests.factories import AlertFactory, ChannelFactory
from providers.tests.factories import AccountFactory
from usage.services.records import manual_entry_create

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _tasks_run_inline(settings, monkeypatch):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": True}
    # django-q2 reads `sync` once at import; the setting alone would not reach async_task.
    monkeypatch.setattr(Conf, "SYNC", True)
    settings.WEBHOOK_ALLOW_PRIVATE = True  # pytest-httpserver listens on loopback
    settings.NOTIFY_RETRY_BACKOFF_SECONDS = 0  # the retries still happen, without the waits
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def webhook(httpserver, owner, *, slack: bool = False, path: str = "/hook"):
    return ChannelFactory(
        workspace=owner.personal_workspace,
        kind=NotificationChannel.Kind.WEBHOOK,
        target=httpserver.url_for(path),
        slack_format=slack,
    )


def posted(httpserver, path: str = "/hook") -> list:
    return [r for r, _ in httpserver.log if r.path == path]


@time_machine.travel(datetime(2026, 11, 15, 12, 0, tzinfo=UTC), tick=False)
def test_it_sends_a_new_budget_alert_to_every_channel(httpserver):
    httpserver.expect_request("/hook", method="POST").respond_with_json({"ok": True})
    account = AccountFactory()
    user = account.workspace.personal_for
    email = ChannelFactory(workspace=user.personal_workspace, target="ops@example.com")
    hook = webhook(httpserver, user)
    manual_entry_create(account=account, day=date(2026, 11, 2), cost=Decimal("85"))

    services.budget_create(
        workspace=user.personal_workspace,
        scope=Budget.Scope.OVERALL,
        amount=Decimal("100"),
        forecast_alert=False,
    )
    services.alerts_evaluate_for_workspace(
        workspace=user.personal_workspace
    )  # nothing new: nothing sent again

    alert = Alert.objects.get(workspace=user.personal_workspace)  # $85 of $100: the 80 % threshold
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ops@example.com"]
    assert alert.message in mail.outbox[0].body
    requests = posted(httpserver)
    assert len(requests) == 1
    body = json.loads(requests[0].get_data())
    assert body["source"] == "ai-cost-tracker"
    assert body["alert"]["id"] == alert.pk
    assert body["alert"]["kind"] == "threshold"
    assert body["alert"]["threshold"] == 80
    assert body["alert"]["period"] == "2026-11-01"
    assert Decimal(body["alert"]["data"]["spent"]) == Decimal("85")
    assert requests[0].headers["Content-Type"] == "application/json"
    deliveries = {d.channel_id: d for d in NotificationDelivery.objects.filter(alert=alert)}
    assert deliveries[email.pk].status == deliveries[hook.pk].status == "sent"
    assert deliveries[hook.pk].attempts == 1
    assert deliveries[hook.pk].sent_at is not None


def test_it_sends_a_slack_compatible_payload(httpserver):
    httpserver.expect_request("/slack", method="POST").respond_with_data("ok")
    user = UserFactory()
    webhook(httpserver, user, slack=True, path="/slack")
    alert = AlertFactory(workspace=user.personal_workspace, message="Spend <b> & more")

    services.notifications_dispatch(alert=alert)

    body = json.loads(posted(httpserver, "/slack")[0].get_data())
    assert body["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "AI Cost Tracker: Budget threshold"},
    }
    assert body["blocks"][1]["text"] == {"type": "mrkdwn", "text": "Spend &lt;b&gt; &amp; more"}
    url = f"http://127.0.0.1:8000/alerts/{alert.pk}/"  # SITE_URL's default + the alert's page
    assert body["text"] == f"AI Cost Tracker: Budget threshold: Spend &lt;b&gt; &amp; more {url}"
    assert body["blocks"][2] == {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": f"<{url}|Open in AI Cost Tracker>"}],
    }
    assert NotificationDelivery.objects.get().status == "sent"


def test_it_records_a_failed_webhook_after_bounded_retries_and_still_sends_email(httpserver):
    httpserver.expect_request("/hook", method="POST").respond_with_json({"e": 1}, status=500)
    user = UserFactory()
    hook = webhook(httpserver, user)
    ChannelFactory(workspace=user.personal_workspace, target="me@example.com")
    alert = AlertFactory(workspace=user.personal_workspace)

    services.notifications_dispatch(alert=alert)

    assert len(posted(httpserver)) == 3  # NOTIFY_MAX_ATTEMPTS defaults to 3
    failed = NotificationDelivery.objects.get(channel=hook)
    assert failed.status == "failed"
    assert failed.attempts == 3
    assert failed.error == "HTTP 500 from the webhook."
    assert len(mail.outbox) == 1
    assert NotificationDelivery.objects.get(channel__kind="email").status == "sent"


def test_it_does_not_retry_a_client_error(httpserver):
    httpserver.expect_request("/hook", method="POST").respond_with_data("gone", status=404)
    user = UserFactory()
    webhook(httpserver, user)

    services.notifications_dispatch(alert=AlertFactory(workspace=user.personal_workspace))

    assert len(posted(httpserver)) == 1
    delivery = NotificationDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("failed", 1)
    assert delivery.error == "HTTP 404 from the webhook."


def test_it_recovers_when_a_retry_succeeds(httpserver, settings):
    settings.NOTIFY_MAX_ATTEMPTS = 4
    httpserver.expect_ordered_request("/hook").respond_with_data("busy", status=503)
    httpserver.expect_ordered_request("/hook").respond_with_data("ok")
    user = UserFactory()
    webhook(httpserver, user)

    services.notifications_dispatch(alert=AlertFactory(workspace=user.personal_workspace))

    delivery = NotificationDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.error) == ("sent", 2, "")


def test_it_sends_each_alert_to_a_channel_once(httpserver):
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    user = UserFactory()
    webhook(httpserver, user)
    ChannelFactory(workspace=user.personal_workspace, is_active=False, target="off@example.com")
    alert = AlertFactory(workspace=user.personal_workspace)

    services.notifications_dispatch(alert=alert)
    services.notifications_dispatch(alert=alert)
    services.notification_deliver(delivery_id=NotificationDelivery.objects.get().pk)

    assert len(posted(httpserver)) == 1
    assert NotificationDelivery.objects.count() == 1  # none for the inactive channel
    assert mail.outbox == []


def test_it_rejects_a_loopback_webhook_when_saving(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    user = UserFactory()

    for url in ("http://127.0.0.1:8000/hook", "http://[::1]/hook", "http://10.0.0.5/x"):
        with pytest.raises(ValidationError) as exc:
            services.channel_create(workspace=user.personal_workspace, kind="webhook", target=url)
        assert (
            "webhooks can only be sent to public internet addresses"
            in (exc.value.message_dict["target"][0])
        )
    with pytest.raises(ValidationError) as scheme:
        services.channel_create(
            workspace=user.personal_workspace, kind="webhook", target="ftp://example.com/x"
        )
    with pytest.raises(ValidationError) as email:
        services.channel_create(
            workspace=user.personal_workspace, kind="email", target="not-an-address"
        )

    assert "http:// or https://" in scheme.value.message_dict["target"][0]
    assert "target" in email.value.message_dict
    assert not NotificationChannel.objects.exists()


def test_it_blocks_a_loopback_webhook_again_at_delivery(httpserver, settings):
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    user = UserFactory()
    url = f"http://127.0.0.1:{httpserver.port}/hook"
    channel = services.channel_create(
        workspace=user.personal_workspace, kind="webhook", target=url
    )  # allowed now
    settings.WEBHOOK_ALLOW_PRIVATE = False  # e.g. the host now resolves somewhere private

    services.notifications_dispatch(alert=AlertFactory(workspace=user.personal_workspace))

    assert posted(httpserver) == []
    delivery = NotificationDelivery.objects.get(channel=channel)
    assert (delivery.status, delivery.attempts) == ("failed", 1)  # permanent: no retries
    assert delivery.error.startswith("Blocked: The webhook host '127.0.0.1' points to 127.0.0.1")


def test_it_does_not_follow_redirects(httpserver):
    httpserver.expect_request("/hook").respond_with_data(
        "", status=302, headers={"Location": "http://169.254.169.254/latest/meta-data/"}
    )
    user = UserFactory()
    webhook(httpserver, user)

    services.notifications_dispatch(alert=AlertFactory(workspace=user.personal_workspace))

    delivery = NotificationDelivery.objects.get()
    assert delivery.status == "failed"
    assert delivery.error == "HTTP 302: redirects are not followed."
    assert len(httpserver.log) == 1


def test_it_records_a_connection_failure_without_the_url(settings):
    # Nothing listens on port 9 of loopback; the secret path must not reach the error.
    user = UserFactory()
    channel = ChannelFactory(
        workspace=user.personal_workspace,
        kind="webhook",
        target="http://127.0.0.1:9/services/T0/B0/secret-token",
    )

    services.notifications_dispatch(alert=AlertFactory(workspace=user.personal_workspace))

    delivery = NotificationDelivery.objects.get(channel=channel)
    assert delivery.status == "failed"
    assert delivery.attempts == 3
    assert delivery.error == "Could not connect (ConnectionError)."
