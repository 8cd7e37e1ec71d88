"""Isolation: every object route 404s for another user, and totals never mix users."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
import time_machine

from accounts.tests.factories import UserFactory
from providers.tests.factories import AccountFactory
from usage.services.records import manual_entry_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_users():
    with time_machine.travel("2026-11-15 12:00:00Z", tick=False):
        mine, theirs = UserFactory(), UserFactory()
        my_account = AccountFactory(
            workspace=mine.personal_workspace, keys={"api_key": "sk-mine-000000000001"}
        )
        their_account = AccountFactory(
            workspace=theirs.personal_workspace, keys={"api_key": "sk-theirs-0000000002"}
        )
        manual_entry_create(
            account=my_account, day=date(2026, 11, 10), description="mine", cost=Decimal("1.25")
        )
        their_record = manual_entry_create(
            account=their_account,
            day=date(2026, 11, 10),
            description="theirs",
            cost=Decimal("1000"),
        )
        yield mine, theirs, my_account, their_account, their_record


def test_it_answers_404_for_every_object_route_of_another_user(api_client, client, two_users):
    mine, _, _, their_account, _ = two_users
    api_client.force_authenticate(mine)
    pk = their_account.pk
    for method, url, body in [
        ("get", f"/api/accounts/{pk}", None),
        ("put", f"/api/accounts/{pk}", {"provider": "openai", "name": "x"}),
        ("patch", f"/api/accounts/{pk}", {"name": "stolen"}),
        ("delete", f"/api/accounts/{pk}", None),
        ("post", f"/api/accounts/{pk}/test", None),
    ]:
        response = getattr(api_client, method)(url, body, format="json")
        assert response.status_code == 404, (method, url, response.status_code)
        assert b"theirs" not in response.content
    client.force_login(mine)
    for url in [f"/accounts/{pk}/", f"/accounts/{pk}/delete/"]:
        assert client.get(url).status_code == 404
        assert client.post(url, {"name": "stolen"}).status_code == 404
    assert client.post(f"/accounts/{pk}/test/").status_code == 404
    their_account.refresh_from_db()
    assert their_account.name != "stolen"


def test_it_keeps_other_users_out_of_lists_and_totals(api_client, client, two_users):
    mine, _, my_account, their_account, _ = two_users
    api_client.force_authenticate(mine)
    with time_machine.travel("2026-11-15 12:00:00Z", tick=False):
        accounts = api_client.get("/api/accounts").json()["results"]
        assert [a["id"] for a in accounts] == [my_account.pk]
        summary = api_client.get("/api/usage").json()
        # Only my $1.25; their $1,000 must not leak into my total.
        assert summary["total_cost"] == "1.250000000000"
        assert [a["account"] for a in summary["accounts"]] == [my_account.pk]
        history = api_client.get("/api/usage/history").json()
        assert [r["description"] for r in history["results"]] == ["mine"]
        assert api_client.get(f"/api/usage/history?account={their_account.pk}").json()["count"] == 0
        by_service = api_client.get("/api/usage/by-service").json()["services"]
        assert [s["cost"] for s in by_service] == ["1.250000000000"]
        daily = api_client.get("/api/usage/daily?days=30").json()
        assert sum(Decimal(d["cost"]) for d in daily) == Decimal("1.25")
        client.force_login(mine)
        page = client.get("/").content.decode()
        assert "$1.25" in page and "1,000" not in page
        assert "theirs" not in client.get("/usage/history/").content.decode()


def test_it_rejects_another_users_account_in_a_manual_entry(api_client, two_users):
    mine, _, _, their_account, _ = two_users
    api_client.force_authenticate(mine)
    response = api_client.post(
        "/api/usage/records",
        {"account": their_account.pk, "date": "2026-11-10", "description": "x", "cost": "1"},
        format="json",
    )
    assert response.status_code == 400 and "account" in response.json()
