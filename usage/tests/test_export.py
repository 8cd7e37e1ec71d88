from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine
from django.http import StreamingHttpResponse

from accounts.tests.factories import UserFactory
from providers.adapters.base import UsageLine
from providers.tests.factories import AccountFactory, provider
from usage.extraction import RequestUsage
from usage.services.records import manual_entry_create, usage_lines_replace_window
from usage.services.requests import RequestEvent, request_events_record

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _frozen():
    with time_machine.travel(datetime(2026, 11, 20, 12, tzinfo=UTC), tick=False):
        yield


@pytest.fixture
def data():
    user = UserFactory()
    openai = AccountFactory(workspace=user.personal_workspace, name="Prod")
    groq = AccountFactory(
        workspace=user.personal_workspace, provider=provider("groq"), name="=HYPERLINK(evil)"
    )
    usage_lines_replace_window(
        account=openai,
        start=date(2026, 11, 2),
        end=date(2026, 11, 3),
        lines=[
            UsageLine(
                day=date(2026, 11, 2),
                model="gpt-4o",
                line_item="gpt-4o",
                input_tokens=1200,
                cache_read_tokens=300,
                output_tokens=450,
                reasoning_tokens=50,
                request_count=3,
                cost=Decimal("0.0075"),
            )
        ],
    )
    request_events_record(
        account=groq,
        events=[
            RequestEvent(
                request_id="req-1",
                usage=RequestUsage(model="mystery", input_tokens=10, output_tokens=5),
                occurred_at=datetime(2026, 11, 5, 8, 30, 15, tzinfo=UTC),
                tags={"team": "web"},
            )
        ],
    )
    manual_entry_create(
        account=openai, day=date(2026, 10, 31), description="old seats", cost=Decimal("19")
    )
    other = AccountFactory(workspace=UserFactory().personal_workspace, name="Other user's")
    manual_entry_create(account=other, day=date(2026, 11, 3), description="x", cost=Decimal("5"))
    return user, openai, groq, other


def _body(response) -> str:
    assert isinstance(response, StreamingHttpResponse)
    return b"".join(response.streaming_content).decode()


def test_it_exports_csv_rows_with_unpriced_cost_left_empty(api_client, data):
    user, openai, groq, _ = data
    api_client.force_authenticate(user)
    response = api_client.get("/api/export?format=csv&start=2026-11-01&end=2026-11-30")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="usage-2026-11-01-to-2026-11-30.csv"' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(_body(response))))
    assert [r["model"] for r in rows] == ["gpt-4o", "mystery"]  # oldest first; Oct 31 is out
    official, event = rows
    assert official["account"] == "Prod" and official["provider"] == "openai"
    assert official["time_utc"] == "2026-11-02T00:00:00Z"
    assert (official["input_tokens"], official["cache_read_tokens"]) == ("1200", "300")
    assert (official["output_tokens"], official["reasoning_tokens"]) == ("450", "50")
    assert official["source"] == "official" and official["cost"] == "0.007500000000"
    assert event["cost"] == "" and event["source"] == "estimated"  # unpriced, not $0
    assert event["time_utc"] == "2026-11-05T08:30:15Z"
    assert json.loads(event["tags"]) == {"team": "web"}
    # A name starting with "=" would run as a spreadsheet formula; it is kept as text.
    assert event["account"] == "'=HYPERLINK(evil)"


def test_it_exports_a_json_array_with_money_as_strings(api_client, data):
    user, *_ = data
    api_client.force_authenticate(user)
    response = api_client.get("/api/export?format=json&start=2026-10-01&end=2026-11-30")
    assert response["Content-Type"] == "application/json"
    items = json.loads(_body(response), parse_float=Decimal)
    assert [i["model"] or i["description"] for i in items] == ["old seats", "gpt-4o", "mystery"]
    # Money in the API's one format: 12 places, no exponent (costtracker/api.py money_str).
    assert items[0]["cost"] == "19.000000000000" and items[0]["source"] == "manual"
    assert items[2]["cost"] is None and items[2]["tags"] == {"team": "web"}
    assert items[1]["account"] == "Prod" and items[1]["request_count"] == 3


def test_it_filters_by_provider_account_and_source(api_client, data):
    user, openai, groq, _ = data
    api_client.force_authenticate(user)
    base = "/api/export?format=json&start=2026-10-01&end=2026-11-30"
    assert [i["model"] for i in json.loads(_body(api_client.get(base + "&provider=groq")))] == [
        "mystery"
    ]
    by_account = json.loads(_body(api_client.get(f"{base}&account={openai.pk}")))
    assert {i["account_id"] for i in by_account} == {openai.pk} and len(by_account) == 2
    manual = json.loads(_body(api_client.get(base + "&source=manual")))
    assert [i["description"] for i in manual] == ["old seats"]


def test_it_never_exports_another_users_records(api_client, data):
    user, _, _, other = data
    api_client.force_authenticate(user)
    items = json.loads(_body(api_client.get("/api/export?format=json&start=2026-01-01")))
    assert "Other user's" not in {i["account"] for i in items}
    response = api_client.get(f"/api/export?account={other.pk}")
    assert response.status_code == 400 and "account" in response.json()


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("format=xml", "format"),
        ("start=2026-13-01", "start"),
        ("start=2026-11-10&end=2026-11-01", "end"),
        ("provider=nope", "provider"),
        ("source=guess", "source"),
        ("account=abc", "account"),
    ],
)
def test_it_rejects_bad_parameters_naming_the_field(api_client, data, query, field):
    user, *_ = data
    api_client.force_authenticate(user)
    response = api_client.get(f"/api/export?{query}")
    assert response.status_code == 400
    assert field in response.json()


def test_it_exports_from_the_page_form(client, data):
    user, *_ = data
    client.force_login(user)
    page = client.get("/export/")
    assert page.status_code == 200 and b"Download" in page.content
    response = client.get("/export/?download=1&format=csv&start=2026-11-01&end=2026-11-30")
    rows = list(csv.reader(io.StringIO(_body(response).removeprefix("\ufeff"))))
    assert rows[0][:4] == ["id", "account_id", "account", "provider"] and len(rows) == 3
    bad = client.get("/export/?download=1&format=csv&start=2026-11-10&end=2026-11-01")
    assert bad.status_code == 400 and b"Must not be before the start date." in bad.content


def test_it_starts_the_page_csv_with_a_bom_so_excel_reads_every_character(client, data):
    user, openai, *_ = data
    manual_entry_create(
        account=openai, day=date(2026, 11, 7), description="Seats – November", cost=Decimal("19")
    )
    client.force_login(user)
    response = client.get("/export/?download=1&format=csv&start=2026-11-01&end=2026-11-30")
    raw = b"".join(response.streaming_content)
    assert raw.startswith(b"\xef\xbb\xbfid,account_id,")  # UTF-8 BOM, then the header
    assert raw.count(b"\xef\xbb\xbf") == 1
    assert "Seats – November".encode() in raw  # the en dash as UTF-8: e2 80 93
    assert b"Seats \xe2\x80\x93 November" in raw


def test_it_keeps_the_api_csv_plain_utf8_for_scripts(api_client, data):
    user, *_ = data
    api_client.force_authenticate(user)
    response = api_client.get("/api/export?format=csv&start=2026-11-01&end=2026-11-30")
    assert b"".join(response.streaming_content).startswith(b"id,account_id,")
