from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine

from accounts.tests.factories import UserFactory
from alerts.models import Alert, Budget, NotificationChannel
from alerts.tests.factories import AlertFactory, BudgetFactory, ChannelFactory
from providers.tests.factories import AccountFactory, provider
from usage.services.records import manual_entry_create

pytestmark = pytest.mark.django_db

NOV_15 = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def user():
    return UserFactory()


@pytest.fixture
def client(api_client, user):
    api_client.force_authenticate(user)
    return api_client


# --- budgets ---


@time_machine.travel(NOV_15, tick=False)
def test_it_creates_a_budget_and_evaluates_it_at_once(client, user):
    account = AccountFactory(workspace=user.personal_workspace)
    manual_entry_create(account=account, day=date(2026, 11, 3), cost=Decimal("90"))

    response = client.post(
        "/api/budgets",
        {"scope": "account", "account": account.pk, "amount": "100", "forecast_alert": False},
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["thresholds"] == [80, 100]  # the default
    assert body["amount"] == "100.000000000000"  # money: always 12 places (costtracker/api.py)
    assert Decimal(body["spent"]) == Decimal("90")  # $90 of $100
    assert body["percent"] == "90.0"
    assert body["status"] == "warning"
    assert body["period_start"] == "2026-11-01"
    alert = Alert.objects.get(workspace=user.personal_workspace)
    assert (alert.kind, alert.threshold, alert.budget_id) == ("threshold", 80, body["id"])


@time_machine.travel(NOV_15, tick=False)
def test_it_lists_reads_updates_and_deletes_budgets(client, user):
    mine = BudgetFactory(workspace=user.personal_workspace, amount=Decimal("50"))
    BudgetFactory()  # someone else's

    listed = client.get("/api/budgets").json()
    assert [b["id"] for b in listed["results"]] == [mine.pk]
    assert client.get(f"/api/budgets/{mine.pk}").json()["status"] == "ok"

    put = client.put(
        f"/api/budgets/{mine.pk}",
        {"scope": "provider", "provider": "anthropic", "amount": "75.5", "thresholds": [50, 90]},
        format="json",
    )
    assert put.status_code == 200, put.json()
    mine.refresh_from_db()
    assert (mine.scope, mine.provider, mine.amount, mine.thresholds) == (
        "provider",
        provider("anthropic"),
        Decimal("75.50"),
        [50, 90],
    )

    patch = client.patch(f"/api/budgets/{mine.pk}", {"amount": "80"}, format="json")
    assert patch.status_code == 200
    mine.refresh_from_db()
    assert (mine.scope, mine.amount) == ("provider", Decimal("80.00"))

    assert client.delete(f"/api/budgets/{mine.pk}").status_code == 204
    assert not Budget.objects.filter(pk=mine.pk).exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"scope": "overall", "amount": "-5"}, "amount"),
        ({"scope": "overall", "amount": "0"}, "amount"),
        ({"scope": "overall", "amount": "abc"}, "amount"),
        ({"scope": "overall"}, "amount"),
        ({"scope": "overall", "amount": "10", "thresholds": []}, "thresholds"),
        ({"scope": "overall", "amount": "10", "thresholds": [0]}, "thresholds"),
        ({"scope": "overall", "amount": "10", "thresholds": [1001]}, "thresholds"),
        ({"scope": "overall", "amount": "10", "thresholds": "80,100"}, "thresholds"),
        ({"scope": "overall", "amount": "10", "thresholds": [80.5]}, "thresholds"),
        ({"scope": "weekly", "amount": "10"}, "scope"),
        ({"scope": "provider", "amount": "10"}, "provider"),
        ({"scope": "provider", "amount": "10", "provider": "nope"}, "provider"),
        ({"scope": "account", "amount": "10"}, "account"),
        ({"scope": "overall", "amount": "10", "provider": "openai"}, "provider"),
        ({"scope": "provider", "amount": "10", "provider": "openai", "account": "MINE"}, "account"),
        ({"scope": "account", "amount": "10", "account": "THEIRS"}, "account"),
    ],
)
def test_it_rejects_a_bad_budget_naming_the_field(client, user, payload, field):
    mine, theirs = AccountFactory(workspace=user.personal_workspace), AccountFactory()
    swap = {"MINE": mine.pk, "THEIRS": theirs.pk}
    payload = {k: swap.get(v, v) if isinstance(v, str) else v for k, v in payload.items()}

    response = client.post("/api/budgets", payload, format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert not Budget.objects.exists()


def test_it_leaves_a_budget_unchanged_after_a_bad_update(client, user):
    budget = BudgetFactory(workspace=user.personal_workspace, amount=Decimal("50"))

    response = client.patch(f"/api/budgets/{budget.pk}", {"scope": "account"}, format="json")

    assert response.status_code == 400
    assert "account" in response.json()
    budget.refresh_from_db()
    assert (budget.scope, budget.amount) == ("overall", Decimal("50.00"))


# --- alerts ---


def test_it_lists_and_filters_alerts(client, user):
    open_threshold = AlertFactory(workspace=user.personal_workspace)
    acked_anomaly = AlertFactory(
        workspace=user.personal_workspace,
        kind="anomaly",
        acknowledged_at=datetime(2026, 11, 1, tzinfo=UTC),
    )
    AlertFactory()  # someone else's

    def ids(query: str = "") -> set[int]:
        response = client.get(f"/api/alerts{query}")
        assert response.status_code == 200
        return {a["id"] for a in response.json()["results"]}

    assert ids() == {open_threshold.pk, acked_anomaly.pk}
    assert ids("?kind=anomaly") == {acked_anomaly.pk}
    assert ids("?acknowledged=false") == {open_threshold.pk}
    assert ids("?acknowledged=true") == {acked_anomaly.pk}
    assert client.get("/api/alerts?kind=nonsense").status_code == 400


def test_it_creates_a_manual_alert(client, user):
    account = AccountFactory(workspace=user.personal_workspace)

    response = client.post(
        "/api/alerts", {"message": "Check the batch job", "account": account.pk}, format="json"
    )

    assert response.status_code == 201
    body = response.json()
    assert (body["kind"], body["message"], body["account"]) == (
        "manual",
        "Check the batch job",
        account.pk,
    )
    assert body["acknowledged"] is False
    assert Alert.objects.get(pk=body["id"]).workspace == user.personal_workspace


@pytest.mark.parametrize(
    ("payload", "field"),
    [({}, "message"), ({"message": "  "}, "message"), ({"message": "x", "account": 0}, "account")],
)
def test_it_rejects_a_bad_manual_alert(client, payload, field):
    response = client.post("/api/alerts", payload, format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert not Alert.objects.exists()


def test_it_rejects_a_manual_alert_on_someone_elses_account(client):
    theirs = AccountFactory()

    response = client.post("/api/alerts", {"message": "x", "account": theirs.pk}, format="json")

    assert response.status_code == 400
    assert "account" in response.json()


def test_it_acknowledges_and_reopens_an_alert(client, user):
    alert = AlertFactory(workspace=user.personal_workspace)

    acked = client.post(f"/api/alerts/{alert.pk}/acknowledge")
    assert acked.status_code == 200
    assert acked.json()["acknowledged"] is True
    alert.refresh_from_db()
    assert alert.acknowledged_at is not None

    reopened = client.put(
        f"/api/alerts/{alert.pk}",
        {"acknowledged": False, "message": "rewritten", "kind": "manual"},
        format="json",
    )
    assert reopened.status_code == 200
    alert.refresh_from_db()
    assert alert.acknowledged_at is None
    assert (alert.kind, alert.message) == ("threshold", AlertFactory.message)  # read-only

    assert client.put(f"/api/alerts/{alert.pk}", {}, format="json").status_code == 400
    assert client.delete(f"/api/alerts/{alert.pk}").status_code == 204
    assert not Alert.objects.exists()


# --- channels ---


def test_it_creates_lists_and_deletes_channels_without_showing_the_url(client, user, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    created = client.post(
        "/api/notification-channels",
        {"kind": "webhook", "target": "http://10.1.2.3/hooks/T0/secret", "format": "teams"},
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert created.json()["target_display"] == "http://10.1.2.3/…"
    assert created.json()["format"] == "teams"
    assert "target" not in created.json()

    listed = client.get("/api/notification-channels")
    assert "secret" not in listed.content.decode()
    assert [c["id"] for c in listed.json()["results"]] == [created.json()["id"]]

    channel_id = created.json()["id"]
    assert client.delete(f"/api/notification-channels/{channel_id}").status_code == 204
    assert not NotificationChannel.objects.exists()


def test_it_rejects_an_unknown_format_or_the_old_slack_flag_naming_the_field(client, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    url = "http://10.1.2.3/hooks/x"

    bad = client.post(
        "/api/notification-channels",
        {"kind": "webhook", "target": url, "format": "mattermost"},
        format="json",
    )
    old = client.post(
        "/api/notification-channels",
        {"kind": "webhook", "target": url, "slack_format": True},
        format="json",
    )

    assert bad.status_code == 400 and list(bad.json()) == ["format"]
    assert old.status_code == 400 and list(old.json()) == ["slack_format"]
    assert not NotificationChannel.objects.exists()


def test_it_rejects_a_private_webhook_url_in_the_api(client, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False

    response = client.post(
        "/api/notification-channels",
        {"kind": "webhook", "target": "http://127.0.0.1:8080/hook"},
        format="json",
    )

    assert response.status_code == 400
    assert "loopback" in response.json()["target"][0]
    assert not NotificationChannel.objects.exists()


# --- access ---


def _others_objects():
    other = UserFactory()
    return {
        "alert": AlertFactory(workspace=other.personal_workspace),
        "budget": BudgetFactory(workspace=other.personal_workspace),
        "channel": ChannelFactory(workspace=other.personal_workspace),
    }


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("get", "/api/alerts/{alert}", None),
        ("put", "/api/alerts/{alert}", {"acknowledged": True}),
        ("patch", "/api/alerts/{alert}", {"acknowledged": True}),
        ("delete", "/api/alerts/{alert}", None),
        ("post", "/api/alerts/{alert}/acknowledge", None),
        ("get", "/api/budgets/{budget}", None),
        ("put", "/api/budgets/{budget}", {"scope": "overall", "amount": "1"}),
        ("patch", "/api/budgets/{budget}", {"amount": "1"}),
        ("delete", "/api/budgets/{budget}", None),
        ("get", "/api/notification-channels/{channel}", None),
        ("delete", "/api/notification-channels/{channel}", None),
    ],
)
def test_it_answers_404_for_another_users_objects(client, method, url, body):
    objects = _others_objects()

    response = getattr(client, method)(
        url.format(**{k: v.pk for k, v in objects.items()}), body, format="json"
    )

    assert response.status_code == 404
    alert, budget = objects["alert"], objects["budget"]
    alert.refresh_from_db()
    budget.refresh_from_db()
    assert alert.acknowledged_at is None
    assert budget.amount == Decimal("100.00")
    assert NotificationChannel.objects.filter(pk=objects["channel"].pk).exists()


@pytest.mark.parametrize(
    "url", ["/api/alerts", "/api/budgets", "/api/notification-channels", "/api/alerts/1"]
)
def test_it_requires_authentication(api_client, url):
    assert api_client.get(url).status_code in (401, 403)
