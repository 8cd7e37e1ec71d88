"""Pages, exports and APIs say when a range starts before the raw history (issue 14).

RAW_RETENTION_DAYS removes estimated (per-request) records a month at a time; the roll-ups,
official and manual rows stay. Here the real removal runs (usage.services.history; on
PostgreSQL it drops August's partition): 60 days before 20 Nov 2026 is 21 Sep, so the raw
history starts on 1 Sep 2026.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine
from django.http import StreamingHttpResponse
from django.urls import reverse

from accounts.tests.factories import UserFactory
from providers.adapters.base import UsageLine
from providers.tests.factories import AccountFactory, provider
from usage.extraction import RequestUsage
from usage.models import DailyUsage, RawHistoryPrune, Source, UsageRecord
from usage.raw_history import raw_history_notice
from usage.services.history import raw_history_prune
from usage.services.records import manual_entry_create, usage_lines_replace_window
from usage.services.requests import RequestEvent, request_events_record

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
CUT = datetime(2026, 9, 1, tzinfo=UTC)  # records before 1 Sep 2026 removed
HEADER = "X-Raw-History-Start"
HTMX = {"HTTP_HX_REQUEST": "true"}
NOTICE = 'data-testid="raw-history-notice"'


@pytest.fixture(autouse=True)
def _frozen(settings):
    settings.RAW_RETENTION_DAYS = 60
    with time_machine.travel(NOW, tick=False):
        yield


def _request(account, request_id: str, at: datetime, cost: str) -> None:
    request_events_record(
        account=account,
        events=[
            RequestEvent(
                request_id=request_id,
                usage=RequestUsage(
                    model="llama-3.3-70b-versatile",
                    input_tokens=100,
                    output_tokens=50,
                    provider_cost=Decimal(cost),
                    found=True,
                ),
                occurred_at=at,
            )
        ],
    )


@pytest.fixture
def spend():
    """Official, manual and per-request spend on both sides of 1 Sep 2026."""
    user = UserFactory()
    openai = AccountFactory(workspace=user.personal_workspace, name="Prod")
    groq = AccountFactory(workspace=user.personal_workspace, provider=provider("groq"), name="Groq")
    usage_lines_replace_window(
        account=openai,
        start=date(2026, 8, 25),
        end=date(2026, 8, 26),
        lines=[
            UsageLine(
                day=date(2026, 8, 25),
                model="gpt-4o",
                line_item="gpt-4o",
                input_tokens=1000,
                cost=Decimal("30"),
            )
        ],
    )
    manual_entry_create(
        account=openai, day=date(2026, 8, 27), description="seats", cost=Decimal("12.50")
    )
    _request(groq, "old", datetime(2026, 8, 28, 9, tzinfo=UTC), "4")
    _request(groq, "new", datetime(2026, 11, 2, 9, tzinfo=UTC), "1")
    return user, openai, groq


def _prune() -> None:
    """Remove August's per-request records as the daily task does; their roll-up stays."""
    assert raw_history_prune().before == CUT
    assert not UsageRecord.objects.filter(source=Source.ESTIMATED, bucket_start__lt=CUT).exists()
    assert DailyUsage.objects.filter(day__lt=CUT.date(), source=Source.ESTIMATED).exists()
    assert RawHistoryPrune.objects.get().before == CUT


def _text(response) -> str:
    """The page's words, tags left out and spaces collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", response.content.decode()).split())


def _body(response) -> str:
    assert isinstance(response, StreamingHttpResponse)  # still streamed
    return b"".join(response.streaming_content).decode()


# --- the selector ------------------------------------------------------------------------


def test_it_decides_from_the_first_kept_day_and_the_source():
    assert raw_history_notice(start=date(2026, 1, 1)) is None  # nothing removed yet
    RawHistoryPrune.objects.create(before=datetime(2026, 7, 1, tzinfo=UTC))
    RawHistoryPrune.objects.create(before=CUT)  # the newest removal is where history starts
    notice = raw_history_notice(start=date(2026, 8, 31))
    assert (notice.first_kept, notice.retention_days, notice.iso) == (
        date(2026, 9, 1),
        60,
        "2026-09-01",
    )
    assert raw_history_notice(start=date(2026, 9, 1)) is None  # starts on the first kept day
    assert raw_history_notice(start=None).first_kept == date(2026, 9, 1)  # from the beginning
    assert raw_history_notice(start=date(2026, 8, 1), source=Source.ESTIMATED) is not None
    # Official figures and manual entries are never removed: nothing is missing from them.
    assert raw_history_notice(start=date(2026, 8, 1), source=Source.OFFICIAL) is None
    assert raw_history_notice(start=date(2026, 8, 1), source=Source.MANUAL) is None


# --- dashboard ---------------------------------------------------------------------------


def test_it_tells_a_90_day_dashboard_its_older_requests_are_gone_but_totals_are_not(client, spend):
    user, _, _ = spend
    _prune()
    client.force_login(user)
    response = client.get("/", {"period": "90d"})
    html = response.content.decode()
    assert response.status_code == 200
    assert html.count(NOTICE) == 1
    assert "Per-request records before 1 Sep 2026 were removed" in html
    assert "were removed after 60 days ( RAW_RETENTION_DAYS )" in _text(response)
    assert "come from the daily roll-ups and are complete" in html
    assert "start on 1 Sep 2026" in html
    assert response[HEADER] == "2026-09-01"
    # 90 days to 20 Nov start on 23 Aug: 30 official + 12.50 manual + 4 (the removed request's
    # roll-up) + 1 = $47.50, the same as before the removal.
    assert ">$47.50<" in html


def test_it_keeps_the_notice_in_the_htmx_partial_and_every_group_by(client, spend):
    user, _, _ = spend
    _prune()
    client.force_login(user)
    for group_by in ("provider", "model", "project"):
        response = client.get("/", {"period": "90d", "group_by": group_by}, **HTMX)
        html = response.content.decode()
        assert "<html" not in html  # the partial
        assert html.count(NOTICE) == 1, group_by
        assert "before 1 Sep 2026" in html
        assert response[HEADER] == "2026-09-01"


@pytest.mark.parametrize(
    ("query", "shown"),
    [
        ({}, False),  # this month: 1 Nov onwards
        ({"period": "last-month"}, False),  # October
        ({"period": "30d"}, False),  # from 22 Oct
        ({"period": "custom", "start": "2026-09-01", "end": "2026-09-30"}, False),
        ({"period": "custom", "start": "2026-08-31", "end": "2026-09-30"}, True),
        ({"period": "custom", "start": "2026-08-01", "end": "2026-08-31"}, True),  # wholly before
    ],
)
def test_it_shows_the_notice_only_for_a_range_reaching_before_the_cut(client, spend, query, shown):
    user, _, _ = spend
    _prune()
    client.force_login(user)
    response = client.get("/", query)
    assert (NOTICE in response.content.decode()) is shown
    assert response.has_header(HEADER) is shown


def test_it_shows_no_notice_when_nothing_was_removed(client, spend):
    user, _, _ = spend
    client.force_login(user)
    response = client.get("/", {"period": "90d"})
    assert NOTICE not in response.content.decode()
    assert not response.has_header(HEADER)


def test_it_still_says_records_were_removed_once_the_limit_is_unset(client, spend, settings):
    user, _, _ = spend
    _prune()
    settings.RAW_RETENTION_DAYS = None
    client.force_login(user)
    text = _text(client.get("/", {"period": "90d"}))
    assert "Per-request records before 1 Sep 2026 were removed by an earlier raw-history" in text
    assert "RAW_RETENTION_DAYS , now unset: nothing more is removed" in text
    assert "None days" not in text


# --- history page and API -----------------------------------------------------------------


def test_it_marks_the_history_page_when_its_range_reaches_before_the_cut(client, spend):
    user, _, _ = spend
    _prune()
    client.force_login(user)
    unfiltered = client.get(reverse("history"))  # no start: from the beginning
    html = unfiltered.content.decode()
    assert unfiltered[HEADER] == "2026-09-01"
    assert "This list has no estimated (per-request) records before 1 Sep 2026" in html
    assert "seats" in html  # the manual entry before the cut is still listed
    partial = client.get(reverse("history"), {"start": "2026-08-01"}, **HTMX)
    assert NOTICE in partial.content.decode()
    assert partial[HEADER] == "2026-09-01"
    within = client.get(reverse("history"), {"start": "2026-09-01"})
    assert NOTICE not in within.content.decode()
    assert not within.has_header(HEADER)
    manual = client.get(reverse("history"), {"start": "2026-08-01", "source": "manual"})
    assert NOTICE not in manual.content.decode()  # manual entries are all kept
    assert not manual.has_header(HEADER)


def test_it_gives_the_history_api_the_raw_history_start(api_client, spend):
    user, _, _ = spend
    _prune()
    api_client.force_authenticate(user)
    early = api_client.get("/api/usage/history", {"start": "2026-08-01"})
    assert early.status_code == 200
    assert early.json()["raw_history_start"] == "2026-09-01"
    assert early[HEADER] == "2026-09-01"
    # The official line, the manual entry and the kept request: the removed one is gone.
    assert early.json()["count"] == 3
    within = api_client.get("/api/usage/history", {"start": "2026-09-01"})
    assert within.json()["raw_history_start"] is None
    assert not within.has_header(HEADER)
    official = api_client.get("/api/usage/history", {"source": "official"})
    assert official.json()["raw_history_start"] is None


# --- exports -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "json", "focus"])
def test_it_marks_every_export_format_that_starts_before_the_cut(api_client, spend, fmt):
    user, _, _ = spend
    _prune()
    api_client.force_authenticate(user)
    early = api_client.get(
        "/api/export", {"format": fmt, "start": "2026-08-01", "end": "2026-11-30"}
    )
    assert early.status_code == 200
    assert early[HEADER] == "2026-09-01"
    body = _body(early)
    assert "seats" in body  # manual (and official) rows before the cut are exported
    if fmt == "json":
        items = json.loads(body)  # still a plain array
        assert [i["request_id"] for i in items if i["source"] == "estimated"] == ["new"]
    within = api_client.get("/api/export", {"format": fmt, "start": "2026-09-01"})
    assert within.status_code == 200
    assert not within.has_header(HEADER)
    _body(within)


@pytest.mark.parametrize("fmt", ["csv", "json", "focus"])
def test_it_leaves_exports_unmarked_when_nothing_was_removed(api_client, spend, fmt):
    user, _, _ = spend
    api_client.force_authenticate(user)
    response = api_client.get("/api/export", {"format": fmt, "start": "2026-01-01"})
    assert response.status_code == 200
    assert not response.has_header(HEADER)
    _body(response)


def test_it_leaves_an_export_of_official_rows_unmarked(api_client, spend):
    user, _, _ = spend
    _prune()
    api_client.force_authenticate(user)
    response = api_client.get("/api/export", {"source": "official", "start": "2026-08-01"})
    assert not response.has_header(HEADER)
    assert "gpt-4o" in _body(response)


def test_it_says_on_the_export_page_where_the_raw_history_starts(client, spend):
    user, _, _ = spend
    client.force_login(user)
    assert "Raw history starts" not in client.get(reverse("export")).content.decode()
    _prune()
    page = client.get(reverse("export"))
    html = page.content.decode()
    assert "Raw history starts on 1 Sep 2026" in html
    # The full notice waits (hidden) for an earlier start: static/js/app.js shows it.
    assert 'data-raw-history-start="2026-09-01"' in html
    assert f"{NOTICE} data-raw-history-start" in html
    assert "hidden>" in html.split(NOTICE)[1].split("\n")[0]
    assert not page.has_header(HEADER)
    download = client.get(
        reverse("export"), {"download": "1", "format": "csv", "start": "2026-08-01"}
    )
    assert download[HEADER] == "2026-09-01"
    _body(download)


def test_it_shows_the_export_notice_when_a_refused_form_starts_before_the_cut(client, spend):
    user, _, _ = spend
    _prune()
    client.force_login(user)
    refused = client.get(
        reverse("export"), {"download": "1", "start": "2026-08-01", "end": "2026-07-01"}
    )
    assert refused.status_code == 400  # end before start
    notice = refused.content.decode().split(NOTICE)[1].split("\n")[0]
    assert "hidden" not in notice
    assert refused[HEADER] == "2026-09-01"


# --- JSON APIs about a range and the reconciliation page -----------------------------------


def test_it_adds_raw_history_start_to_the_range_apis(api_client, spend):
    user, _, _ = spend
    _prune()
    api_client.force_authenticate(user)
    summary = api_client.get("/api/usage")  # this month: within
    assert summary.json()["raw_history_start"] is None
    by_service = api_client.get("/api/usage/by-service", {"days": 120})  # from 23 Jul
    assert by_service.json()["raw_history_start"] == "2026-09-01"
    assert by_service[HEADER] == "2026-09-01"
    breakdown = api_client.get(
        "/api/usage/breakdown", {"group_by": "model", "start": "2026-08-20", "end": "2026-11-20"}
    )
    body = breakdown.json()
    assert body["raw_history_start"] == "2026-09-01"
    # 30 official + 12.50 manual + 4 (the removed request's roll-up) + 1 = 47.50
    assert Decimal(body["total_cost"]) == Decimal("47.50")
    recent = api_client.get("/api/usage/breakdown", {"group_by": "model"})
    assert recent.json()["raw_history_start"] is None
    daily = api_client.get("/api/usage/daily", {"days": 120})  # a list: the header says it
    assert isinstance(daily.json(), list)
    assert daily[HEADER] == "2026-09-01"
    assert not api_client.get("/api/usage/daily", {"days": 30}).has_header(HEADER)
    august = api_client.get("/api/reconciliation", {"month": "2026-08"})
    assert august.json()["raw_history_start"] == "2026-09-01"
    assert (
        api_client.get("/api/reconciliation", {"month": "2026-09"}).json()["raw_history_start"]
        is None
    )


def test_it_documents_raw_history_start_in_the_api_schema(api_client):
    api_client.force_authenticate(UserFactory())
    schema = api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    components = schema["components"]["schemas"]
    for name in ("PaginatedUsageRecordList", "UsageBreakdown", "UsageSummaryOutput"):
        field = components[name]["properties"]["raw_history_start"]
        assert (field["format"], field["nullable"]) == ("date", True), name
    export = schema["paths"]["/api/export"]["get"]["responses"]["200"]
    assert HEADER in export["headers"]


def test_it_puts_the_notice_on_the_reconciliation_page_of_an_older_month(client, spend):
    user, _, _ = spend
    _prune()
    client.force_login(user)
    august = client.get(reverse("reconciliation"), {"month": "2026-08"})
    assert NOTICE in august.content.decode()
    assert august[HEADER] == "2026-09-01"
    september = client.get(reverse("reconciliation"), {"month": "2026-09"})
    assert NOTICE not in september.content.decode()
