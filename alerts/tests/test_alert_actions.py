"""Issue 10 alerts: one alert for an already-over budget, no duplicate budgets or channels, bulk
acknowledge, pagination, a link to the app in every notification, a test notification."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine
from django.core import mail
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django_q.conf import Conf

from accounts.tests.factories import UserFactory
from alerts import services
from alerts.models import Alert, Budget, NotificationChannel, NotificationDelivery
from alerts.tests.factories import AlertFactory, BudgetFactory, ChannelFactory
from providers.tests.factories import AccountFactory, provider
from usage.services.records import manual_entry_create

pytestmark = pytest.mark.django_db

NOV_15 = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _setup(settings, monkeypatch):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": True}
    monkeypatch.setattr(Conf, "SYNC", True)  # django-q2 reads `sync` once, at import
    settings.WEBHOOK_ALLOW_PRIVATE = True  # pytest-httpserver listens on loopback
    settings.NOTIFY_RETRY_BACKOFF_SECONDS = 0
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SITE_URL = "https://costs.example.com/"
    with time_machine.travel(NOV_15, tick=False):
        yield


@pytest.fixture
def user():
    return UserFactory()


@pytest.fixture
def web(client, user):
    client.force_login(user)
    return client


def _listed(user) -> list[int]:
    return sorted(
        Alert.objects.filter(
            workspace=user.personal_workspace, listed=True, kind="threshold"
        ).values_list("threshold", flat=True)
    )


def _passed(user) -> list[int]:
    return sorted(
        Alert.objects.filter(
            workspace=user.personal_workspace, listed=False, kind="threshold"
        ).values_list("threshold", flat=True)
    )


# --- one alert for an already-over budget ----------------------------------------------------


def test_it_fires_only_the_highest_threshold_of_a_budget_created_already_over(user):
    ChannelFactory(workspace=user.personal_workspace, target="ops@example.com")
    account = AccountFactory(workspace=user.personal_workspace)
    manual_entry_create(account=account, day=date(2026, 11, 2), cost=Decimal("150"))

    services.budget_create(
        workspace=user.personal_workspace,
        scope="overall",
        amount=Decimal("100"),
        thresholds=[50, 80, 100],
    )

    # $150 of $100 = 150 %: one alert at 100 %, 50 and 80 recorded as passed, one email;
    # the forecast ("already over") would repeat it, so it is recorded as passed too.
    assert list(
        Alert.objects.filter(workspace=user.personal_workspace, listed=True).values_list(
            "kind", "threshold"
        )
    ) == [("threshold", 100)]
    assert (
        Alert.objects.filter(
            workspace=user.personal_workspace, listed=False, kind="forecast"
        ).count()
        == 1
    )
    assert _passed(user) == [50, 80]
    assert len(mail.outbox) == 1 and "(alert at 100%)" in mail.outbox[0].body
    # Evaluating again (or after more spend) never fires the passed ones this month.
    manual_entry_create(account=account, day=date(2026, 11, 3), cost=Decimal("10"))
    assert services.alerts_evaluate_for_workspace(workspace=user.personal_workspace) == []
    assert _listed(user) == [100] and len(mail.outbox) == 1
    # The passed rows are not alerts to read.
    assert (
        Alert.objects.filter(
            workspace=user.personal_workspace, listed=False, acknowledged_at=None
        ).count()
        == 0
    )


def test_it_fires_one_alert_for_a_budget_posted_over_the_api(api_client, user):
    account = AccountFactory(workspace=user.personal_workspace)
    manual_entry_create(account=account, day=date(2026, 11, 2), cost=Decimal("90"))
    api_client.force_authenticate(user)
    response = api_client.post(
        "/api/budgets",
        {"scope": "overall", "amount": "100", "thresholds": [50, 80, 100], "forecast_alert": False},
        format="json",
    )
    assert response.status_code == 201, response.content
    # $90 of $100 = 90 %: 80 alerts, 50 passed, 100 still ahead.
    assert (_listed(user), _passed(user)) == ([80], [50])
    listed = api_client.get("/api/alerts").json()
    assert [a["threshold"] for a in listed["results"]] == [80]


def test_it_fires_one_alert_when_an_edit_puts_a_budget_over_several_thresholds(user):
    account = AccountFactory(workspace=user.personal_workspace)
    manual_entry_create(account=account, day=date(2026, 11, 2), cost=Decimal("60"))
    budget = services.budget_create(
        workspace=user.personal_workspace,
        scope="overall",
        amount=Decimal("1000"),
        forecast_alert=False,
    )
    assert _listed(user) == []  # $60 of $1,000 = 6 %
    services.budget_update(budget=budget, amount=Decimal("50"))
    # $60 of $50 = 120 %: the new amount alerts once, at 100 %.
    assert (_listed(user), _passed(user)) == ([100], [80])


def test_it_still_alerts_each_threshold_as_spend_grows_past_them(user):
    account = AccountFactory(workspace=user.personal_workspace)
    services.budget_create(
        workspace=user.personal_workspace,
        scope="overall",
        amount=Decimal("100"),
        forecast_alert=False,
    )
    manual_entry_create(account=account, day=date(2026, 11, 2), cost=Decimal("85"))
    services.alerts_evaluate_for_workspace(workspace=user.personal_workspace)
    manual_entry_create(account=account, day=date(2026, 11, 3), cost=Decimal("20"))
    services.alerts_evaluate_for_workspace(workspace=user.personal_workspace)
    # $85 then $105 of $100: 80 % alerted, then 100 %; nothing recorded silently.
    assert (_listed(user), _passed(user)) == ([80, 100], [])


# --- duplicates ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "field"), [("overall", "scope"), ("provider", "provider"), ("account", "account")]
)
def test_it_refuses_a_second_budget_for_the_same_target(user, scope, field):
    account = AccountFactory(workspace=user.personal_workspace)
    target = {
        "overall": {},
        "provider": {"provider": provider("openai")},
        "account": {"account": account},
    }[scope]
    services.budget_create(
        workspace=user.personal_workspace, scope=scope, amount=Decimal("10"), **target
    )
    with pytest.raises(ValidationError) as exc:
        services.budget_create(
            workspace=user.personal_workspace, scope=scope, amount=Decimal("20"), **target
        )
    assert list(exc.value.message_dict) == [field]
    assert Budget.objects.filter(workspace=user.personal_workspace).count() == 1
    # Another user, or another target, is fine.
    services.budget_create(
        workspace=UserFactory().personal_workspace, scope="overall", amount=Decimal("10")
    )
    if scope == "provider":
        services.budget_create(
            workspace=user.personal_workspace,
            scope=scope,
            amount=Decimal("10"),
            provider=provider("groq"),
        )


def test_it_refuses_an_edit_that_makes_a_duplicate(user):
    services.budget_create(workspace=user.personal_workspace, scope="overall", amount=Decimal("10"))
    other = services.budget_create(
        workspace=user.personal_workspace,
        scope="provider",
        provider=provider("openai"),
        amount=Decimal("5"),
    )
    with pytest.raises(ValidationError) as exc:
        services.budget_update(budget=other, scope="overall", provider=None)
    assert "scope" in exc.value.message_dict
    other.refresh_from_db()
    assert other.scope == "provider"


def test_it_enforces_one_budget_per_target_in_the_database(user):
    BudgetFactory(workspace=user.personal_workspace, scope="overall")
    with pytest.raises(IntegrityError), transaction.atomic():
        BudgetFactory(workspace=user.personal_workspace, scope="overall")
    account = AccountFactory(workspace=user.personal_workspace)
    BudgetFactory(workspace=user.personal_workspace, scope="account", account=account)
    with pytest.raises(IntegrityError), transaction.atomic():
        BudgetFactory(workspace=user.personal_workspace, scope="account", account=account)


def test_it_shows_a_duplicate_budget_as_a_form_error_and_a_400(web, api_client, user):
    services.budget_create(workspace=user.personal_workspace, scope="overall", amount=Decimal("10"))
    page = web.post("/budgets/add/", {"scope": "overall", "amount": "20", "thresholds": "80"})
    assert page.status_code == 200
    assert "You already have a monthly budget for all spend" in page.content.decode()
    api_client.force_authenticate(user)
    response = api_client.post("/api/budgets", {"scope": "overall", "amount": "20"}, format="json")
    assert response.status_code == 400 and "scope" in response.json()
    assert Budget.objects.filter(workspace=user.personal_workspace).count() == 1


def test_it_refuses_a_duplicate_channel_in_form_api_and_database(web, api_client, user):
    services.channel_create(
        workspace=user.personal_workspace, kind="email", target="ops@example.com"
    )
    page = web.post("/alerts/channels/", {"kind": "email", "target": " ops@example.com "})
    assert page.status_code == 200
    assert "You already have a channel for this email address" in page.content.decode()
    api_client.force_authenticate(user)
    response = api_client.post(
        "/api/notification-channels",
        {"kind": "email", "target": "ops@example.com"},
        format="json",
    )
    assert response.status_code == 400 and "target" in response.json()
    # An address differing only in case is the same mailbox.
    with pytest.raises(ValidationError, match="already have a channel"):
        services.channel_create(
            workspace=user.personal_workspace, kind="email", target="Ops@Example.COM"
        )
    assert NotificationChannel.objects.filter(workspace=user.personal_workspace).count() == 1
    # The same address as a different kind, or for someone else, is another channel.
    services.channel_create(
        workspace=UserFactory().personal_workspace, kind="email", target="ops@example.com"
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        NotificationChannel.objects.create(
            workspace=user.personal_workspace, kind="email", target="ops@example.com"
        )


# --- bulk acknowledge and pagination ---------------------------------------------------------


def test_it_acknowledges_the_selected_alerts_only_mine(web, user):
    a, b, c = (AlertFactory(workspace=user.personal_workspace) for _ in range(3))
    theirs = AlertFactory()
    response = web.post(
        "/alerts/acknowledge/",
        {"selected": [a.pk, b.pk, theirs.pk], "next": "/alerts/?state=open"},
    )
    assert response.status_code == 302 and response["Location"] == "/alerts/?state=open"
    acked = set(Alert.objects.exclude(acknowledged_at=None).values_list("pk", flat=True))
    assert acked == {a.pk, b.pk}
    assert c.pk not in acked and theirs.pk not in acked
    # Twice: nothing changes (the first acknowledgement time is kept).
    first = Alert.objects.get(pk=a.pk).acknowledged_at
    web.post("/alerts/acknowledge/", {"selected": [a.pk]})
    assert Alert.objects.get(pk=a.pk).acknowledged_at == first


def test_it_acknowledges_all_shown_from_the_page(web, user):
    alerts = [AlertFactory(workspace=user.personal_workspace) for _ in range(3)]
    page = web.get("/alerts/").content.decode()
    shown = [int(v) for v in re.findall(r'name="shown" value="(\d+)"', page)]
    assert sorted(shown) == sorted(a.pk for a in alerts)
    web.post("/alerts/acknowledge/", {"all": "1", "shown": shown, "selected": []})
    assert not Alert.objects.filter(
        workspace=user.personal_workspace, acknowledged_at=None
    ).exists()


def test_it_pages_past_200_alerts(web, api_client, user):
    Alert.objects.bulk_create(
        Alert(
            workspace=user.personal_workspace,
            kind="manual",
            dedupe_key=f"k{i}",
            message=f"note number {i:03d}",
        )
        for i in range(230)
    )
    first = web.get("/alerts/").content.decode()
    assert first.count('name="selected"') == 50
    assert "Page 1 of 5" in first and "230 alerts" in first
    last = web.get("/alerts/?state=open&page=5").content.decode()
    # 230 = 4 pages of 50 + 30; ordered newest first (same created_at: highest id first).
    assert last.count('name="selected"') == 30
    assert "note number 000" in last and 'href="?state=open&amp;page=4"' in last
    api_client.force_authenticate(user)
    body = api_client.get("/api/alerts?page=5").json()
    assert body["count"] == 230 and len(body["results"]) == 30


# --- a link to the app in notifications ------------------------------------------------------


def test_it_links_the_alert_page_in_emails_and_generic_webhooks(httpserver, user):
    httpserver.expect_request("/hook", method="POST").respond_with_json({"ok": True})
    ChannelFactory(workspace=user.personal_workspace, target="ops@example.com")
    ChannelFactory(
        workspace=user.personal_workspace, kind="webhook", target=httpserver.url_for("/hook")
    )
    alert = AlertFactory(workspace=user.personal_workspace)
    services.notifications_dispatch(alert=alert)
    url = f"https://costs.example.com/alerts/{alert.pk}/"  # SITE_URL without its trailing /
    assert f"Open it in AI Cost Tracker: {url}" in mail.outbox[0].body
    body = json.loads(httpserver.log[0][0].get_data())
    assert body["alert"]["url"] == url


def test_it_shows_the_alert_page_to_its_owner_only(web, user, client):
    alert = AlertFactory(workspace=user.personal_workspace, message="Spend is up")
    page = web.get(f"/alerts/{alert.pk}/")
    assert page.status_code == 200 and "Spend is up" in page.content.decode()
    client.force_login(UserFactory())
    assert client.get(f"/alerts/{alert.pk}/").status_code == 404


# --- test notifications ----------------------------------------------------------------------


def test_it_sends_a_test_email_from_the_channels_page_and_records_it(web, user):
    channel = ChannelFactory(workspace=user.personal_workspace, target="ops@example.com")
    response = web.post(f"/alerts/channels/{channel.pk}/test/", follow=True)
    assert "Test notification sent to ops@example.com" in response.content.decode()
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["ops@example.com"]
    delivery = NotificationDelivery.objects.get()
    assert (delivery.channel, delivery.status, delivery.attempts) == (channel, "sent", 1)
    assert delivery.alert.kind == "test" and not delivery.alert.listed
    page = web.get("/alerts/channels/").content.decode()
    assert "Test notification from AI Cost Tracker" in page  # in Recent deliveries
    assert "Test notification from" not in web.get("/alerts/").content.decode()


def test_it_reports_a_failing_test_webhook_once_without_retrying(web, httpserver, user):
    httpserver.expect_request("/hook", method="POST").respond_with_data("down", status=503)
    channel = ChannelFactory(
        workspace=user.personal_workspace, kind="webhook", target=httpserver.url_for("/hook")
    )
    response = web.post(f"/alerts/channels/{channel.pk}/test/", follow=True)
    assert "failed: HTTP 503 from the webhook." in response.content.decode()
    assert len(httpserver.log) == 1  # one attempt: the person is waiting
    delivery = NotificationDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("failed", 1)


def test_it_sends_a_test_notification_over_the_api(api_client, httpserver, user):
    httpserver.expect_request("/hook", method="POST").respond_with_json({"ok": True})
    channel = ChannelFactory(
        workspace=user.personal_workspace, kind="webhook", target=httpserver.url_for("/hook")
    )
    api_client.force_authenticate(user)
    response = api_client.post(f"/api/notification-channels/{channel.pk}/test")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["channel"], body["status"], body["attempts"], body["error"]) == (
        channel.pk,
        "sent",
        1,
        "",
    )
    sent = json.loads(httpserver.log[0][0].get_data())
    assert sent["alert"]["kind"] == "test"
    api_client.force_authenticate(UserFactory())
    assert api_client.post(f"/api/notification-channels/{channel.pk}/test").status_code == 404
    assert NotificationDelivery.objects.count() == 1


def test_it_renders_the_alert_pages_without_inline_script_style_or_handlers(web, user):
    """A Content-Security-Policy without 'unsafe-inline' must not break these pages."""
    account = AccountFactory(workspace=user.personal_workspace)
    manual_entry_create(account=account, day=date(2026, 11, 2), cost=Decimal("90"))
    services.budget_create(
        workspace=user.personal_workspace, scope="overall", amount=Decimal("100")
    )
    ChannelFactory(workspace=user.personal_workspace, target="ops@example.com")
    alert = Alert.objects.filter(workspace=user.personal_workspace, listed=True).first()
    for url in ("/alerts/", "/alerts/channels/", "/budgets/", f"/alerts/{alert.pk}/"):
        html = web.get(url).content.decode()
        assert " style=" not in html, url
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), url
        assert not re.search(r"\son[a-z]+=", html), url
