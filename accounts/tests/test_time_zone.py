"""Pages show times in the user's zone; roll-up days stay UTC days, labelled; the profile's
time-zone input is searchable and checked on the server."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from accounts.tests.factories import UserFactory
from alerts.services import alert_manual_create
from providers.models import SyncStatus
from providers.services import ingest_key_create
from providers.tests.factories import AccountFactory, provider
from usage.extraction import RequestUsage
from usage.models import SyncRun
from usage.services.records import manual_entry_create
from usage.services.requests import RequestEvent, request_events_record

pytestmark = pytest.mark.django_db

# 2026-08-03 11:30 UTC is 07:30 in New York (EDT, UTC-4).
MOMENT = datetime(2026, 8, 3, 11, 30, tzinfo=UTC)


@pytest.fixture
def new_yorker(client):
    user = UserFactory(time_zone="America/New_York")
    client.force_login(user)
    return user


@time_machine.travel(datetime(2026, 8, 4, 12, 0, tzinfo=UTC), tick=False)
def test_it_shows_sync_times_in_the_users_zone(client, new_yorker):
    account = AccountFactory(workspace=new_yorker.personal_workspace, provider=provider("openai"))
    account.last_sync_status = SyncStatus.SUCCEEDED
    account.last_sync_at = MOMENT
    account.save()
    SyncRun.objects.create(
        account=account,
        window_start=date(2026, 8, 1),
        window_end=date(2026, 8, 3),
        status=SyncRun.Status.SUCCEEDED,
        finished_at=MOMENT,
    )

    accounts_page = client.get(reverse("account-list")).content.decode()
    history = client.get(reverse("account-sync-history", args=[account.pk])).content.decode()

    assert "2026-08-03 07:30 EDT" in accounts_page
    assert "11:30" not in accounts_page
    assert "2026-08-03 07:30:00 EDT" in history  # finished
    assert "2026-08-04 08:00:00 EDT" in history  # queued: "now" is 12:00 UTC
    assert "(UTC)" not in history.split("<thead>", 1)[1].split("</thead>", 1)[0]


@time_machine.travel(datetime(2026, 8, 3, 11, 30, tzinfo=UTC), tick=False)
def test_it_shows_alert_and_ingest_key_times_in_the_users_zone(client, new_yorker):
    account = AccountFactory(workspace=new_yorker.personal_workspace, provider=provider("groq"))
    alert_manual_create(workspace=new_yorker.personal_workspace, message="check the bill")
    _, key = ingest_key_create(account=account, name="ci")
    type(key).objects.filter(pk=key.pk).update(last_used_at=MOMENT)

    alerts = client.get(reverse("alert-list")).content.decode()
    keys = client.get(reverse("ingest-key-list", args=[account.pk])).content.decode()

    assert "2026-08-03 07:30 EDT" in alerts
    assert keys.count("2026-08-03 07:30 EDT") == 2  # created and last used


def test_it_keeps_roll_up_days_as_labelled_utc_days_and_requests_in_local_time(client, new_yorker):
    account = AccountFactory(workspace=new_yorker.personal_workspace, provider=provider("groq"))
    # A UTC day starts at 20:00 the evening before in New York: shown as the UTC day.
    manual_entry_create(account=account, day=date(2026, 8, 3), cost=Decimal("1"))
    request_events_record(
        account=account,
        events=[
            RequestEvent(
                request_id="r1",
                usage=RequestUsage(model="llama-3.3-70b-versatile", input_tokens=10),
                occurred_at=datetime(2026, 8, 3, 2, 15, tzinfo=UTC),  # 22:15 on Aug 2 in NY
            )
        ],
    )

    html = client.get(reverse("history")).content.decode()

    assert '2026-08-03 <small class="muted">UTC day</small>' in html
    assert "2026-08-02 22:15:00 EDT" in html
    assert "2026-08-02 20:00" not in html


def test_it_leaves_the_api_in_utc_whatever_the_users_zone(client, new_yorker):
    account = AccountFactory(workspace=new_yorker.personal_workspace, provider=provider("groq"))
    manual_entry_create(account=account, day=date(2026, 8, 3), cost=Decimal("1"))

    body = client.get("/api/usage/history").json()

    assert body["results"][0]["bucket_start"] in (
        "2026-08-03T00:00:00Z",
        "2026-08-03T00:00:00+00:00",
    )


def test_it_restores_the_default_zone_after_a_request(client, new_yorker):
    client.get(reverse("dashboard"))
    assert timezone.get_current_timezone_name() == "UTC"


def test_it_offers_a_searchable_time_zone_input(client, new_yorker):
    html = client.get(reverse("profile")).content.decode()

    assert '<input type="text" name="time_zone" value="America/New_York"' in html
    assert 'list="time-zones"' in html
    assert html.count("<option value=") > 400  # every zone, in the <datalist>
    assert html.index('<option value="UTC">') < html.index('<option value="Africa/Abidjan">')
    assert '<select name="time_zone"' not in html  # a searchable text input, not a list


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("Europe/Berlin", "Europe/Berlin"),
        (" europe/berlin ", "Europe/Berlin"),
        ("America/New York", "America/New_York"),
    ],
)
def test_it_saves_a_known_time_zone_however_it_is_cased(client, new_yorker, typed, stored):
    response = client.post(reverse("profile"), {"email": "ny@example.com", "time_zone": typed})

    assert response.status_code == 302
    new_yorker.refresh_from_db()
    assert new_yorker.time_zone == stored


@pytest.mark.parametrize("typed", ["Mars/Olympus_Mons", "Berlin", "x" * 500, ""])
def test_it_refuses_an_unknown_time_zone_in_place(client, new_yorker, typed):
    response = client.post(reverse("profile"), {"email": "ny@example.com", "time_zone": typed})

    assert response.status_code == 400
    assert "time_zone" in response.context["form"].errors
    new_yorker.refresh_from_db()
    assert new_yorker.time_zone == "America/New_York"
