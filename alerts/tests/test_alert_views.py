from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine

from accounts.tests.factories import UserFactory
from alerts.models import Alert, Budget, NotificationChannel
from alerts.tests.factories import AlertFactory, BudgetFactory, ChannelFactory
from providers.tests.factories import AccountFactory
from usage.services.records import manual_entry_create

pytestmark = pytest.mark.django_db

NOV_15 = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def user():
    return UserFactory()


@pytest.fixture
def web(client, user):
    client.force_login(user)
    return client


def test_it_lists_only_my_alerts_with_filters(web, user):
    AlertFactory(workspace=user.personal_workspace, message="Mine, open")
    AlertFactory(
        workspace=user.personal_workspace,
        kind="anomaly",
        message="Mine, acknowledged",
        acknowledged_at=datetime(2026, 11, 2, tzinfo=UTC),
    )
    AlertFactory(message="Someone else's")

    page = web.get("/alerts/").content.decode()
    open_only = web.get("/alerts/?state=open").content.decode()
    anomalies = web.get("/alerts/?kind=anomaly").content.decode()

    assert "Mine, open" in page and "Mine, acknowledged" in page
    assert "Someone else" not in page
    assert "Mine, open" in open_only and "Mine, acknowledged" not in open_only
    assert "Mine, acknowledged" in anomalies and "Mine, open" not in anomalies


def test_it_acknowledges_with_htmx_by_swapping_the_row(web, user):
    alert = AlertFactory(workspace=user.personal_workspace)

    response = web.post(f"/alerts/{alert.pk}/acknowledge/", **HTMX)

    html = response.content.decode()
    assert response.status_code == 200
    assert html.strip().startswith(f'<tr id="alert-{alert.pk}"')
    assert "Acknowledged" in html and "<html" not in html
    assert f"/alerts/{alert.pk}/unacknowledge/" in html
    alert.refresh_from_db()
    assert alert.acknowledged_at is not None


def test_it_acknowledges_without_htmx_by_redirecting(web, user):
    alert = AlertFactory(workspace=user.personal_workspace)

    response = web.post(f"/alerts/{alert.pk}/acknowledge/")

    assert response.status_code == 302
    assert response["Location"] == "/alerts/"
    alert.refresh_from_db()
    assert alert.acknowledged_at is not None


def test_it_deletes_an_alert(web, user):
    first, second = (
        AlertFactory(workspace=user.personal_workspace),
        AlertFactory(workspace=user.personal_workspace),
    )

    htmx = web.post(f"/alerts/{first.pk}/delete/", **HTMX)
    plain = web.post(f"/alerts/{second.pk}/delete/")

    assert (htmx.status_code, htmx.content) == (200, b"")
    assert plain.status_code == 302
    assert not Alert.objects.exists()


@pytest.mark.parametrize(
    "url",
    [
        "/alerts/{alert}/acknowledge/",
        "/alerts/{alert}/unacknowledge/",
        "/alerts/{alert}/delete/",
        "/budgets/{budget}/",
        "/budgets/{budget}/delete/",
        "/alerts/channels/{channel}/delete/",
    ],
)
def test_it_answers_404_for_another_users_objects(web, url):
    other = UserFactory()
    alert = AlertFactory(workspace=other.personal_workspace)
    budget = BudgetFactory(workspace=other.personal_workspace)
    channel = ChannelFactory(workspace=other.personal_workspace)

    response = web.post(url.format(alert=alert.pk, budget=budget.pk, channel=channel.pk))

    assert response.status_code == 404
    alert.refresh_from_db()
    assert alert.acknowledged_at is None
    assert Budget.objects.filter(pk=budget.pk).exists()
    assert NotificationChannel.objects.filter(pk=channel.pk).exists()


@time_machine.travel(NOV_15, tick=False)
def test_it_shows_budgets_with_spend_percent_and_status(web, user):
    account = AccountFactory(
        workspace=user.personal_workspace, name="Prod", monthly_budget=Decimal("20")
    )
    BudgetFactory(workspace=user.personal_workspace, amount=Decimal("40"))
    BudgetFactory(amount=Decimal("999"))  # someone else's
    manual_entry_create(account=account, day=date(2026, 11, 4), cost=Decimal("34"))

    html = web.get("/budgets/").content.decode()

    # All spend: $34 of $40 = 85 % -> Warning; Prod's own $20: 170 % -> Critical.
    assert "$34.00" in html
    assert "85.0%" in html and "Warning" in html
    assert "170.0%" in html and "Critical" in html
    assert "Account Prod (set on the account)" in html
    assert "$999.00" not in html


@time_machine.travel(NOV_15, tick=False)
def test_it_adds_a_budget_and_shows_its_alert_right_away(web, user):
    account = AccountFactory(workspace=user.personal_workspace)
    manual_entry_create(account=account, day=date(2026, 11, 4), cost=Decimal("12"))

    response = web.post(
        "/budgets/add/",
        {"scope": "account", "account": account.pk, "amount": "10", "thresholds": "100, 80"},
    )

    assert response.status_code == 302
    budget = Budget.objects.get(workspace=user.personal_workspace)
    assert (budget.account, budget.amount, budget.thresholds) == (account, Decimal("10"), [80, 100])
    assert budget.forecast_alert is False  # an unticked box
    # $12 of $10 = 120 %: one alert straight away, for the highest threshold passed (100 %);
    # 80 % is recorded as passed (unlisted) so it does not fire later this month.
    listed = Alert.objects.filter(workspace=user.personal_workspace, listed=True)
    assert list(listed.values_list("threshold", flat=True)) == [100]
    passed = Alert.objects.filter(workspace=user.personal_workspace, listed=False)
    assert list(passed.values_list("threshold", flat=True)) == [80]
    assert "120.0% of the $10.00 budget" in web.get("/alerts/").content.decode()


def test_it_offers_only_my_accounts_and_rejects_bad_input(web, user):
    mine = AccountFactory(workspace=user.personal_workspace, name="My account")
    theirs = AccountFactory(name="Their account")

    form_html = web.get("/budgets/add/").content.decode()
    foreign = web.post("/budgets/add/", {"scope": "account", "account": theirs.pk, "amount": "10"})
    bad_thresholds = web.post(
        "/budgets/add/", {"scope": "overall", "amount": "10", "thresholds": "80, lots"}
    )
    negative = web.post("/budgets/add/", {"scope": "overall", "amount": "-1", "thresholds": "80"})
    no_account = web.post("/budgets/add/", {"scope": "account", "amount": "1", "thresholds": "80"})

    assert "My account" in form_html and "Their account" not in form_html
    assert foreign.status_code == 200 and foreign.context["form"].errors["account"]
    assert "&#x27;lots&#x27; is not a whole number." in bad_thresholds.content.decode()
    assert negative.context["form"].errors["amount"]
    assert no_account.context["form"].errors["account"] == [
        "Choose the account this budget covers."
    ]
    assert not Budget.objects.exists()
    assert mine.pk  # offered, above


def test_it_edits_and_deletes_a_budget(web, user):
    budget = BudgetFactory(workspace=user.personal_workspace, amount=Decimal("10"))

    edit_form = web.get(f"/budgets/{budget.pk}/").content.decode()
    saved = web.post(
        f"/budgets/{budget.pk}/",
        {"scope": "overall", "amount": "25", "thresholds": "50", "forecast_alert": "on"},
    )

    assert 'value="80, 100"' in edit_form
    assert saved.status_code == 302
    budget.refresh_from_db()
    assert (budget.amount, budget.thresholds, budget.forecast_alert) == (Decimal("25"), [50], True)
    assert web.post(f"/budgets/{budget.pk}/delete/").status_code == 302
    assert not Budget.objects.exists()


def test_it_adds_and_removes_channels(web, user, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False

    email = web.post("/alerts/channels/", {"kind": "email", "target": "me@example.com"})
    loopback = web.post("/alerts/channels/", {"kind": "webhook", "target": "http://127.0.0.1/x"})

    assert email.status_code == 302
    assert "loopback address" in loopback.context["form"].errors["target"][0]
    channel = NotificationChannel.objects.get(workspace=user.personal_workspace)
    assert channel.target == "me@example.com"
    page = web.get("/alerts/channels/").content.decode()
    assert "me@example.com" in page
    assert web.post(f"/alerts/channels/{channel.pk}/delete/").status_code == 302
    assert not NotificationChannel.objects.exists()


def test_it_shows_only_the_host_of_a_webhook(web, user):
    ChannelFactory(
        workspace=user.personal_workspace,
        kind="webhook",
        target="https://hooks.slack.com/services/T/B/s3cr3tPathPart",
    )

    page = web.get("/alerts/channels/").content.decode()

    assert "https://hooks.slack.com/…" in page
    assert "s3cr3tPathPart" not in page


@pytest.mark.parametrize("url", ["/alerts/", "/budgets/", "/budgets/add/", "/alerts/channels/"])
def test_it_requires_login(client, url):
    response = client.get(url)

    assert response.status_code == 302
    assert "/login" in response["Location"]


def test_it_adds_a_teams_webhook_from_the_page_and_lists_its_format(web, user, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    url = "http://10.0.0.7/webhookb2/x"

    added = web.post("/alerts/channels/", {"kind": "webhook", "target": url, "format": "teams"})
    wrong = web.post("/alerts/channels/", {"kind": "webhook", "target": url, "format": "irc"})

    assert added.status_code == 302
    channel = NotificationChannel.objects.get()
    assert channel.format == "teams"
    assert "format" in wrong.context["form"].errors
    row = web.get("/alerts/channels/").content.decode().split(f'id="channel-{channel.pk}"')[1]
    assert "<td>Microsoft Teams</td>" in row
