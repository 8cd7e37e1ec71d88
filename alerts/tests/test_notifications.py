from __future__ import annotations

import json
from ast import literal_eval
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core import mail
from django.core.exceptions import ValidationError
from django_q.conf import Conf
from django_q.models import Schedule
from werkzeug import Response

from accounts.tests.factories import UserFactory
from alerts import services, tasks
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
    settings.NOTIFY_RETRY_BACKOFF_SECONDS = 60
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def webhook(httpserver, owner, *, format: str = "generic", path: str = "/hook"):  # noqa: A002
    return ChannelFactory(
        workspace=owner.personal_workspace,
        kind=NotificationChannel.Kind.WEBHOOK,
        target=httpserver.url_for(path),
        format=format,
    )


def posted(httpserver, path: str = "/hook") -> list:
    return [r for r, _ in httpserver.log if r.path == path]


def run_retry(delivery: NotificationDelivery) -> Schedule:
    """Run the ONCE schedule of the delivery's next try as the cluster would: at its time, its
    task with its arguments, then the schedule gone (negative repeats). Returns the schedule
    that ran."""
    schedule = Schedule.objects.get(name=f"notify-retry-{delivery.pk}-{delivery.attempts + 1}")
    assert schedule.schedule_type == Schedule.ONCE and schedule.repeats < 0
    assert schedule.func == "alerts.tasks.deliver_notification"
    with time_machine.travel(schedule.next_run, tick=False):  # the cluster runs it when due
        tasks.deliver_notification(*literal_eval(schedule.args))
    schedule.delete()
    return schedule


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
    webhook(httpserver, user, format="slack", path="/slack")
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
    assert body["blocks"][3] == {  # [2] is the money (test_webhook_formats)
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": f"<{url}|Open in AI Cost Tracker>"}],
    }
    assert NotificationDelivery.objects.get().status == "sent"


@time_machine.travel(datetime(2026, 11, 15, 12, 0, tzinfo=UTC), tick=False)
def test_it_retries_a_failing_webhook_on_later_tasks_then_gives_up_and_still_sends_email(
    httpserver,
):
    httpserver.expect_request("/hook", method="POST").respond_with_json({"e": 1}, status=500)
    user = UserFactory()
    hook = webhook(httpserver, user)
    ChannelFactory(workspace=user.personal_workspace, target="me@example.com")
    alert = AlertFactory(workspace=user.personal_workspace)
    now = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)

    services.notifications_dispatch(alert=alert)

    # One try, then the task returned: the next try is a schedule 60 s later (the backoff).
    assert len(posted(httpserver)) == 1
    delivery = NotificationDelivery.objects.get(channel=hook)
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    assert delivery.error == "HTTP 500 from the webhook."
    assert run_retry(delivery).next_run == now + timedelta(seconds=60)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("pending", 2)
    # Doubled: 120 s after the second try, made when it fell due at 12:01.
    assert run_retry(delivery).next_run == now + timedelta(seconds=60 + 120)
    delivery.refresh_from_db()

    assert len(posted(httpserver)) == 3  # NOTIFY_MAX_ATTEMPTS defaults to 3
    assert (delivery.status, delivery.attempts) == ("failed", 3)
    assert delivery.error == "HTTP 500 from the webhook."
    assert not Schedule.objects.filter(name__startswith="notify-retry-").exists()
    assert len(mail.outbox) == 1
    assert NotificationDelivery.objects.get(channel__kind="email").status == "sent"


def test_it_does_not_retry_a_client_error(httpserver):
    httpserver.expect_request("/hook", method="POST").respond_with_data("bad", status=400)
    user = UserFactory()
    webhook(httpserver, user)

    services.notifications_dispatch(alert=AlertFactory(workspace=user.personal_workspace))

    assert len(posted(httpserver)) == 1
    delivery = NotificationDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("failed", 1)
    assert delivery.error == "HTTP 400 from the webhook."
    assert not Schedule.objects.exists()


@time_machine.travel(datetime(2026, 11, 15, 12, 0, tzinfo=UTC), tick=False)
def test_it_delivers_a_503_on_the_second_task_run_without_sleeping(httpserver):
    httpserver.expect_ordered_request("/hook").respond_with_data("busy", status=503)
    httpserver.expect_ordered_request("/hook").respond_with_data("ok")
    user = UserFactory()
    webhook(httpserver, user)

    services.notifications_dispatch(alert=AlertFactory(workspace=user.personal_workspace))

    delivery = NotificationDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.error) == (
        "pending",
        1,
        "HTTP 503 from the webhook.",
    )
    assert delivery.last_attempt_at == datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
    # Time is frozen (tick=False): a sleeping worker would never have come back.
    schedule = run_retry(delivery)
    assert schedule.next_run == datetime(2026, 11, 15, 12, 1, tzinfo=UTC)  # + 60 s
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.error) == ("sent", 2, "")
    assert len(posted(httpserver)) == 2
    tasks.deliver_notification(delivery.pk)  # the same task delivered again sends nothing
    assert len(posted(httpserver)) == 2


@time_machine.travel(datetime(2026, 11, 15, 12, 0, tzinfo=UTC), tick=False)
def test_it_waits_out_a_429_retry_after_when_longer_than_the_backoff(httpserver):
    httpserver.expect_request("/hook").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "300"}
    )
    user = UserFactory()
    webhook(httpserver, user)

    services.notifications_dispatch(alert=AlertFactory(workspace=user.personal_workspace))

    delivery = NotificationDelivery.objects.get()
    schedule = Schedule.objects.get(name=f"notify-retry-{delivery.pk}-2")
    assert schedule.next_run == datetime(2026, 11, 15, 12, 5, tzinfo=UTC)  # 300 s, not 60
    assert (delivery.status, delivery.error) == ("pending", "HTTP 429 from the webhook.")


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
    assert (delivery.status, delivery.attempts) == ("pending", 1)  # a retry is scheduled
    assert delivery.error == "Could not connect (ConnectionError)."
    assert "secret" not in Schedule.objects.get().args


@time_machine.travel(datetime(2026, 11, 15, 12, 0, tzinfo=UTC), tick=False)
def test_a_pending_delivery_shows_its_next_try_until_it_is_sent(httpserver, client):
    httpserver.expect_ordered_request("/hook").respond_with_data("busy", status=503)
    httpserver.expect_ordered_request("/hook").respond_with_data("ok")
    user = UserFactory()
    webhook(httpserver, user)
    services.notifications_dispatch(alert=AlertFactory(workspace=user.personal_workspace))
    delivery = NotificationDelivery.objects.get()
    client.force_login(user)

    # The first try at 12:00 failed: the next is 60 s later (NOTIFY_RETRY_BACKOFF_SECONDS).
    assert delivery.next_attempt_at == datetime(2026, 11, 15, 12, 1, tzinfo=UTC)
    assert "2026-11-15 12:01" in client.get("/alerts/channels/").content.decode()
    run_retry(delivery)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.next_attempt_at) == ("sent", None)


@time_machine.travel(datetime(2026, 11, 15, 12, 0, tzinfo=UTC), tick=False)
def test_a_retry_is_not_sent_to_a_channel_turned_off_meanwhile(httpserver):
    httpserver.expect_ordered_request("/hook").respond_with_data("busy", status=503)
    user = UserFactory()
    channel = webhook(httpserver, user)
    services.notifications_dispatch(alert=AlertFactory(workspace=user.personal_workspace))
    delivery = NotificationDelivery.objects.get()
    channel.is_active = False
    channel.save()

    run_retry(delivery)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("failed", 2)
    assert delivery.error == "Not sent: the channel was turned off."
    assert len(posted(httpserver)) == 1  # only the first try reached the receiver


@pytest.mark.django_db(transaction=True)
def test_a_try_under_way_is_not_made_again_by_another_run(httpserver):
    """The same task run again while its try waits for the receiver sends nothing (no lock
    is held meanwhile). Here the receiver itself makes that second run, from its own thread
    and database connection, while the first try waits for its answer."""
    seen = []

    def answer(request):
        seen.append(services.notification_deliver(delivery_id=delivery.pk).attempts)
        return Response("ok")

    httpserver.expect_request("/hook").respond_with_handler(answer)
    user = UserFactory()
    webhook(httpserver, user)
    alert = AlertFactory(workspace=user.personal_workspace)
    channel = NotificationChannel.objects.get()
    delivery = NotificationDelivery.objects.create(alert=alert, channel=channel)

    services.notification_deliver(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert seen == [1]  # the second run found try 1 under way and stopped
    assert (delivery.status, delivery.attempts) == ("sent", 1)
    assert len(posted(httpserver)) == 1


def test_a_delivery_whose_task_was_lost_is_queued_again_by_the_full_evaluation(httpserver):
    httpserver.expect_request("/hook").respond_with_data("ok")
    user = UserFactory()
    channel = webhook(httpserver, user)
    alert = AlertFactory(workspace=user.personal_workspace)
    start = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        # Rows whose tasks never ran (a Redis broker loses a task a dying worker held).
        never_tried = NotificationDelivery.objects.create(alert=alert, channel=channel)
        other = AlertFactory(workspace=user.personal_workspace)
        retry_due_soon = NotificationDelivery.objects.create(
            alert=other,
            channel=channel,
            attempts=1,
            last_attempt_at=start,
            next_attempt_at=start + timedelta(minutes=8),
        )

    with time_machine.travel(start + timedelta(minutes=9), tick=False):
        tasks.evaluate_all()  # 9 min: not lost yet (NOTIFY_LOST_AFTER is 10)
    assert len(posted(httpserver)) == 0
    with time_machine.travel(start + timedelta(minutes=11), tick=False):
        tasks.evaluate_all()  # never tried and 11 min old: queued again, and sent

    never_tried.refresh_from_db()
    retry_due_soon.refresh_from_db()
    assert (never_tried.status, never_tried.attempts) == ("sent", 1)
    assert retry_due_soon.status == "pending"  # its retry is 3 min late, not yet lost
    assert len(posted(httpserver)) == 1
    with time_machine.travel(start + timedelta(minutes=19), tick=False):
        tasks.evaluate_all()  # now that retry is 11 min overdue: sent too
    retry_due_soon.refresh_from_db()
    assert (retry_due_soon.status, retry_due_soon.attempts) == ("sent", 2)
    assert len(posted(httpserver)) == 2


@time_machine.travel(datetime(2026, 11, 15, 12, 0, tzinfo=UTC), tick=False)
def test_a_copy_of_the_task_run_before_the_retry_is_due_sends_nothing(httpserver):
    httpserver.expect_ordered_request("/hook").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "3600"}
    )
    user = UserFactory()
    webhook(httpserver, user)
    services.notifications_dispatch(alert=AlertFactory(workspace=user.personal_workspace))
    delivery = NotificationDelivery.objects.get()

    tasks.deliver_notification(delivery.pk)  # e.g. queued again by notifications_resume

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("pending", 1)  # the hour is respected
    assert delivery.next_attempt_at == datetime(2026, 11, 15, 13, 0, tzinfo=UTC)
    assert len(posted(httpserver)) == 1
