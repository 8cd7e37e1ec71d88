"""The FinOps FOCUS 1.2 export (GET /api/export?format=focus): its columns, their types and
formats on every row, and the same figures as the CSV export for the same records."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine
from django.http import StreamingHttpResponse

from accounts.tests.factories import UserFactory
from providers.adapters.base import UsageLine
from providers.tests.factories import AccountFactory, provider
from usage import focus, insight_apis, selectors
from usage.extraction import RequestUsage
from usage.services.reconciliation import invoice_set, true_up_book
from usage.services.records import manual_entry_create, usage_lines_replace_window
from usage.services.requests import RequestEvent, request_events_record

pytestmark = pytest.mark.django_db

# FOCUS 1.2's mandatory columns (specification/columns/*.md, Feature level Mandatory) and the
# conditional/recommended ones this export fills, then the tracker's own x_ columns.
EXPECTED_HEADER = [
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "ContractedCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "PricingQuantity",
    "PricingUnit",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ProviderName",
    "PublisherName",
    "InvoiceIssuerName",
    "ServiceName",
    "ServiceCategory",
    "ServiceSubcategory",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "SkuId",
    "Tags",
    "x_Source",
    "x_Granularity",
    "x_Status",
    "x_RecordId",
    "x_Provider",
    "x_Model",
    "x_LineItem",
    "x_RequestId",
    "x_InputTokens",
    "x_CachedInputTokens",
    "x_CacheWriteTokens",
    "x_CacheWrite1hTokens",
    "x_OutputTokens",
    "x_ReasoningTokens",
    "x_Requests",
]
# FOCUS 1.2's 21 mandatory columns; all but the nullable ones (NULLABLE) are never empty.
MANDATORY = {
    "BillingAccountName",
    "ChargeClass",
    "ChargeDescription",
    "PricingQuantity",
    "PricingUnit",
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "ContractedCost",
    "BillingAccountId",
    "BillingCurrency",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ChargeCategory",
    "ProviderName",
    "PublisherName",
    "InvoiceIssuerName",
    "ServiceName",
    "ServiceCategory",
}
NULLABLE = {"BillingAccountName", "ChargeClass", "ChargeDescription", "PricingQuantity"}
NULLABLE |= {"PricingUnit"}
DECIMALS = ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost")
QUANTITIES = ("PricingQuantity", "ConsumedQuantity")
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
# Plain decimal: optional "-", digits, optional fraction. No "+", no exponent, no thousands.
PLAIN_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


@pytest.fixture(autouse=True)
def _frozen():
    with time_machine.travel(datetime(2026, 11, 20, 12, tzinfo=UTC), tick=False):
        yield


def _estimate(account, request_id: str, at: datetime, cost: str | None, tags=None, **usage) -> None:
    # Perplexity's own usage.cost prices the request without a price book; None: unpriced.
    request_usage = RequestUsage(
        model=usage.pop("model", "sonar"),
        provider_cost=None if cost is None else Decimal(cost),
        found=True,
        **usage,
    )
    request_events_record(
        account=account,
        events=[
            RequestEvent(
                request_id=request_id, usage=request_usage, occurred_at=at, tags=tags or {}
            )
        ],
    )


@pytest.fixture
def data():
    user = UserFactory()
    workspace = user.personal_workspace
    research = AccountFactory(workspace=workspace, provider=provider("perplexity"), name="Research")
    prod = AccountFactory(workspace=workspace, provider=provider("openai"), name="=Prod")
    # Official Nov 3: $6, 1000 input + 200 output tokens.
    usage_lines_replace_window(
        account=research,
        start=date(2026, 11, 3),
        end=date(2026, 11, 4),
        lines=[
            UsageLine(
                day=date(2026, 11, 3),
                model="sonar",
                line_item="sonar tokens",
                input_tokens=1000,
                output_tokens=200,
                request_count=4,
                cost=Decimal("6"),
            )
        ],
    )
    # An estimate of Nov 3: official figures supersede it (left out of FOCUS).
    _estimate(research, "est-superseded", datetime(2026, 11, 3, 9, tzinfo=UTC), "7")
    # An estimate of Nov 5 with tags, at 09:15:30.25 (FOCUS has whole seconds).
    _estimate(
        research,
        "est-kept",
        datetime(2026, 11, 5, 9, 15, 30, 250000, tzinfo=UTC),
        "0.00000015",
        tags={"project": "atlas", "user": "ada"},
        input_tokens=100,
        cache_read_tokens=20,
        output_tokens=40,
        reasoning_tokens=10,
    )
    # Unpriced: left out, counted in the header.
    _estimate(
        prod,
        "est-unpriced",
        datetime(2026, 11, 6, 10, tzinfo=UTC),
        None,
        model="mystery-model",
        input_tokens=10,
        output_tokens=5,
    )
    manual_entry_create(
        account=prod, day=date(2026, 11, 7), description="Seats – November", cost=Decimal("19")
    )
    # Invoice $15 against the $19 counted for Prod in November: a true-up of 15 - 19 = -4
    # booked on Nov 20 (today: the month is still running).
    invoice_set(account=prod, month_start=date(2026, 11, 1), amount=Decimal("15"))
    true_up_book(account=prod, month_start=date(2026, 11, 1), today=date(2026, 11, 20))
    other = AccountFactory(workspace=UserFactory().personal_workspace, name="Other user's")
    manual_entry_create(account=other, day=date(2026, 11, 3), description="x", cost=Decimal("5"))
    return user, research, prod


def _body(response) -> str:
    assert isinstance(response, StreamingHttpResponse)
    return b"".join(response.streaming_content).decode()


def _focus(api_client, query: str = "") -> tuple[list[str], list[dict], object]:
    response = api_client.get(f"/api/export?format=focus&start=2026-11-01&end=2026-11-30{query}")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    reader = csv.DictReader(io.StringIO(_body(response)))
    rows = list(reader)
    return list(reader.fieldnames), rows, response


def test_it_writes_the_focus_columns_in_order_with_x_columns_after(api_client, data):
    user, *_ = data
    api_client.force_authenticate(user)
    header, _, response = _focus(api_client)
    assert header == EXPECTED_HEADER
    assert list(focus.FOCUS_HEADER) == EXPECTED_HEADER
    assert len(MANDATORY) == 21 and MANDATORY <= set(header)
    first_x = next(i for i, c in enumerate(header) if c.startswith("x_"))
    assert all(c.startswith("x_") for c in header[first_x:])
    assert not any(c.startswith("x_") for c in header[:first_x])
    assert (
        'filename="usage-2026-11-01-to-2026-11-30-focus.csv"' in (response["Content-Disposition"])
    )


def test_it_types_and_formats_every_row(api_client, data):
    user, *_ = data
    api_client.force_authenticate(user)
    _, rows, _ = _focus(api_client)
    assert len(rows) == 4
    for row in rows:
        for column in MANDATORY - NULLABLE:
            assert row[column] != "", column  # FOCUS: not nullable
        for column in DECIMALS:
            assert PLAIN_NUMBER.match(row[column]), (column, row[column])
            Decimal(row[column])  # parses
        for column in QUANTITIES:
            assert row[column] == "" or PLAIN_NUMBER.match(row[column])
        for prefix in ("BillingPeriod", "ChargePeriod"):
            start, end = row[f"{prefix}Start"], row[f"{prefix}End"]
            assert DATETIME.match(start) and DATETIME.match(end)
            assert start < end  # same fixed-width format: text order is time order
        assert row["BillingPeriodStart"] <= row["ChargePeriodStart"]
        assert row["ChargePeriodEnd"] <= row["BillingPeriodEnd"]
        assert row["BillingCurrency"] == "USD"
        assert row["ServiceCategory"] == "AI and Machine Learning"
        assert row["ChargeCategory"] in ("Usage", "Purchase", "Adjustment")
        if row["Tags"]:
            tags = json.loads(row["Tags"])
            assert isinstance(tags, dict)
            assert all(v is None or isinstance(v, str | int | float | bool) for v in tags.values())
        if row["ChargeCategory"] != "Usage":
            assert row["ConsumedQuantity"] == "" and row["ConsumedUnit"] == ""


def test_it_maps_each_source_to_its_charge(api_client, data):
    user, research, prod = data
    api_client.force_authenticate(user)
    _, rows, response = _focus(api_client)
    by_source = {}
    for row in rows:
        by_source.setdefault(row["x_Source"], []).append(row)
    assert sorted(by_source) == ["estimated", "manual", "official"]
    assert response["X-Unpriced-Records-Omitted"] == "1"  # the mystery-model request

    (official,) = by_source["official"]
    assert official["BilledCost"] == "6.000000000000" == official["ListCost"]
    assert official["ChargePeriodStart"] == "2026-11-03T00:00:00Z"
    assert official["ChargePeriodEnd"] == "2026-11-04T00:00:00Z"  # the UTC day
    assert official["BillingPeriodStart"] == "2026-11-01T00:00:00Z"
    assert official["BillingPeriodEnd"] == "2026-12-01T00:00:00Z"
    assert (official["ChargeCategory"], official["ChargeFrequency"]) == ("Usage", "Usage-Based")
    # 1000 input + 200 output = 1200 tokens.
    assert (official["ConsumedQuantity"], official["ConsumedUnit"]) == ("1200", "Tokens")
    assert (official["PricingQuantity"], official["PricingUnit"]) == ("1200", "Tokens")
    assert official["SkuId"] == "sonar" == official["x_Model"]
    assert official["BillingAccountId"] == str(research.pk) == official["ResourceId"]
    assert official["BillingAccountName"] == "Research" == official["ResourceName"]
    assert official["ProviderName"] == "Perplexity" == official["InvoiceIssuerName"]
    assert official["ChargeDescription"] == "sonar tokens" and official["ChargeClass"] == ""
    assert official["Tags"] == ""  # no tags: NULL, not an invented placeholder
    assert official["x_Requests"] == "4"

    # The Nov 3 estimate is superseded by the official $6: only Nov 5's remains.
    (estimate,) = by_source["estimated"]
    assert estimate["x_RequestId"] == "est-kept"
    # $0.00000015 in 12 places, no exponent (1.5E-7 would be valid FOCUS, but not our format).
    assert estimate["BilledCost"] == "0.000000150000" == estimate["EffectiveCost"]
    assert estimate["ChargePeriodStart"] == "2026-11-05T09:15:30Z"  # .25 s falls in this second
    assert estimate["ChargePeriodEnd"] == "2026-11-05T09:15:31Z"
    assert estimate["x_Granularity"] == "event"
    # 100 input + 20 cached input + 40 output = 160 (the 10 reasoning are part of the output).
    assert estimate["ConsumedQuantity"] == "160"
    assert (estimate["x_InputTokens"], estimate["x_CachedInputTokens"]) == ("100", "20")
    assert (estimate["x_OutputTokens"], estimate["x_ReasoningTokens"]) == ("40", "10")
    assert json.loads(estimate["Tags"]) == {"project": "atlas", "user": "ada"}

    seats, true_up = by_source["manual"]
    assert seats["ChargeDescription"] == "Seats – November"
    assert (seats["ChargeCategory"], seats["ChargeFrequency"]) == ("Purchase", "One-Time")
    assert seats["BilledCost"] == "19.000000000000"
    assert seats["BillingAccountName"] == "'=Prod"  # kept as text in a spreadsheet
    # 15 (invoice) - 19 (counted) = -4: a negative Adjustment, "-" and no "+".
    assert true_up["ChargeCategory"] == "Adjustment"
    assert true_up["BilledCost"] == "-4.000000000000"
    assert true_up["ChargePeriodStart"] == "2026-11-20T00:00:00Z"
    assert json.loads(true_up["Tags"]) == {"true_up": "2026-11"}
    assert prod.pk != research.pk


def test_it_has_the_csv_exports_figures_for_the_same_records(api_client, data):
    user, *_ = data
    api_client.force_authenticate(user)
    _, rows, _ = _focus(api_client)
    response = api_client.get("/api/export?format=csv&start=2026-11-01&end=2026-11-30")
    plain = {r["id"]: r for r in csv.DictReader(io.StringIO(_body(response)))}
    # The CSV has every record (5 of this workspace in November); FOCUS leaves out the
    # superseded Nov 3 estimate and the unpriced request.
    left_out = {
        r["request_id"] for i, r in plain.items() if i not in {f["x_RecordId"] for f in rows}
    }
    assert left_out == {"est-superseded", "est-unpriced"}
    for row in rows:
        record = plain[row["x_RecordId"]]
        for column in DECIMALS:
            assert row[column] == record["cost"]
        assert row["x_Source"] == record["source"]
        assert row["x_InputTokens"] == record["input_tokens"]
        assert row["x_OutputTokens"] == record["output_tokens"]
    # Sum: 6 + 0.00000015 + 19 - 4 = 21.00000015, what the dashboard counts for November
    # (official supersedes estimated, unpriced adds nothing).
    total = sum(Decimal(r["BilledCost"]) for r in rows)
    assert total == Decimal("21.00000015")
    assert total == selectors.spend_total(
        workspace=user.personal_workspace, start=date(2026, 11, 1), end=date(2026, 12, 1)
    )


def test_it_takes_the_csv_exports_filters(api_client, data):
    user, research, prod = data
    api_client.force_authenticate(user)
    _, rows, _ = _focus(api_client, f"&account={prod.pk}")
    assert {r["BillingAccountId"] for r in rows} == {str(prod.pk)}
    _, rows, _ = _focus(api_client, "&provider=perplexity&source=estimated")
    assert [r["x_RequestId"] for r in rows] == ["est-kept"]
    _, rows, response = _focus(api_client, "&source=manual")
    assert [r["ChargeCategory"] for r in rows] == ["Purchase", "Adjustment"]
    assert response["X-Unpriced-Records-Omitted"] == "0"
    bad = api_client.get("/api/export?format=focsu")
    assert bad.status_code == 400 and "format" in bad.json()


def test_it_rolls_the_billing_period_over_the_year():
    assert focus.billing_period(datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)) == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )


def test_it_offers_focus_on_the_page(client, data):
    user, *_ = data
    client.force_login(user)
    page = client.get("/export/")
    assert b'value="focus"' in page.content
    response = client.get("/export/?download=1&format=focus&start=2026-11-01&end=2026-11-30")
    raw = b"".join(response.streaming_content)
    assert raw.startswith(b"\xef\xbb\xbfBilledCost,EffectiveCost,")
    assert len(list(csv.reader(io.StringIO(raw.decode().removeprefix("\ufeff"))))) == 1 + 4


def test_it_streams_a_larger_export_row_by_row(api_client, monkeypatch):
    user = UserFactory()
    account = AccountFactory(
        workspace=user.personal_workspace, provider=provider("perplexity"), name="Bulk"
    )
    count = 2500  # more than one fetch of the selector's cursor (2,000 rows)
    usage = RequestUsage(model="sonar", provider_cost=Decimal("0.001"), found=True)
    request_events_record(
        account=account,
        events=[
            RequestEvent(
                request_id=f"bulk-{i}",
                usage=usage,
                occurred_at=datetime(2026, 11, 1 + i % 19, 8, i % 60, tzinfo=UTC),
            )
            for i in range(count)
        ],
    )
    formatted = []
    real = focus.focus_row
    monkeypatch.setattr(focus, "focus_row", lambda row: formatted.append(1) or real(row))
    api_client.force_authenticate(user)
    response = api_client.get("/api/export?format=focus&start=2026-11-01&end=2026-11-30")
    assert isinstance(response, StreamingHttpResponse)
    stream = iter(response.streaming_content)
    assert next(stream).startswith(b"BilledCost,")
    next(stream)
    assert len(formatted) == 1  # one row formatted per row sent, not the whole set first
    rest = b"".join(stream).decode().splitlines()
    assert len(rest) == count - 1 and len(formatted) == count
    # 2,500 × $0.001 = $2.5.
    total = Decimal("0.001") + sum(Decimal(line.split(",", 1)[0]) for line in rest)
    assert total == Decimal("2.5")


def test_it_documents_the_focus_format_in_the_api_schema(api_client):
    api_client.force_authenticate(UserFactory())
    schema = api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    (parameter,) = [
        p for p in schema["paths"]["/api/export"]["get"]["parameters"] if p["name"] == "format"
    ]
    assert parameter["schema"]["enum"] == ["csv", "json", "focus"]


def test_it_makes_a_synced_seat_line_a_recurring_purchase(api_client):
    user = UserFactory()
    account = AccountFactory(workspace=user.personal_workspace, provider=provider("copilot"))
    usage_lines_replace_window(
        account=account,
        start=date(2026, 11, 4),
        end=date(2026, 11, 5),
        lines=[
            UsageLine(
                day=date(2026, 11, 4),
                model="",
                line_item="seats:business",
                seats=Decimal("3"),
                cost=Decimal("1.9"),  # 3 seats × $19 ÷ 30 days = $1.90 for the day
            )
        ],
    )
    api_client.force_authenticate(user)
    _, rows, _ = _focus(api_client)
    ((row),) = rows
    assert (row["ChargeCategory"], row["ChargeFrequency"]) == ("Purchase", "Recurring")
    assert (row["PricingQuantity"], row["PricingUnit"]) == ("3", "Seats")
    assert row["ConsumedQuantity"] == "" and row["SkuId"] == ""  # not Usage; no model
    assert row["BilledCost"] == "1.900000000000" and row["x_Source"] == "official"


def test_it_aborts_a_focus_export_that_fails_part_way(api_client, data, monkeypatch):
    user, *_ = data
    real, calls = focus.focus_row, []

    def failing(row):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("database went away")
        return real(row)

    monkeypatch.setattr(focus, "focus_row", failing)
    api_client.force_authenticate(user)
    response = api_client.get("/api/export?format=focus&start=2026-11-01&end=2026-11-30")
    sent = []
    with pytest.raises(insight_apis.ExportBroken):
        for chunk in response.streaming_content:
            sent.append(chunk.decode())
    # The header and two rows, then the marker a person opening the file sees.
    assert len(sent) == 4 and sent[0].startswith("BilledCost,")
    assert sent[-1] == "ERROR: the export failed after 2 rows; this file is incomplete.\r\n"
