from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import time_machine
from werkzeug import Request, Response

from providers.adapters import copilot
from providers.adapters.copilot import CopilotAdapter
from providers.http import ProviderError

FIXTURES = Path(__file__).parent / "fixtures" / "copilot"
ORG = "acme-inc"
BILLING = f"/orgs/{ORG}/copilot/billing"
SEATS = f"/orgs/{ORG}/copilot/billing/seats"
AI_CREDITS = f"/organizations/{ORG}/settings/billing/ai_credit/usage"
PREMIUM = f"/organizations/{ORG}/settings/billing/premium_request/usage"
START, END = date(2026, 8, 1), date(2026, 8, 4)
NOW = "2026-08-10 12:00:00+00:00"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def json_response(name: str, status: int = 200, headers: dict | None = None) -> Response:
    return Response(fixture(name), status=status, headers=headers, content_type="application/json")


def make_adapter(httpserver, **config) -> CopilotAdapter:
    return CopilotAdapter(
        base_url=httpserver.url_for(""),
        secret="ghp_test",
        config={"organization": ORG, **config},
        sleep=[].append,
    )


def seat_pages(request: Request) -> Response:
    if request.args.get("page") == "2":
        # The last page carries only rel="prev" (GitHub style): no next page.
        return json_response("seats_page2.json", headers={"Link": '<...page=1>; rel="prev"'})
    link = f'<{request.base_url}?page=2&per_page=100>; rel="next", <...page=2>; rel="last"'
    return json_response("seats_page1.json", headers={"Link": link})


def ai_credits(request: Request) -> Response:
    name = (
        "ai_credit_usage_day1.json" if request.args["day"] == "1" else "ai_credit_usage_empty.json"
    )
    return json_response(name)


def serve_all(httpserver) -> None:
    httpserver.expect_request(BILLING).respond_with_data(
        fixture("billing.json"), content_type="application/json"
    )
    httpserver.expect_request(SEATS).respond_with_handler(seat_pages)
    httpserver.expect_request(AI_CREDITS).respond_with_handler(ai_credits)
    httpserver.expect_request(PREMIUM).respond_with_data(
        fixture("premium_request_usage.json"), content_type="application/json"
    )


def requests_to(httpserver, path: str) -> list[Request]:
    return [request for request, _ in httpserver.log if request.path == path]


def by_key(lines):
    return {(line.day, line.model, line.line_item): line for line in lines}


@time_machine.travel(NOW, tick=False)
def test_it_sends_github_headers(httpserver):
    serve_all(httpserver)
    make_adapter(httpserver).fetch_daily_usage(start=START, end=END)

    for request, _ in httpserver.log:
        assert request.headers["Authorization"] == "Bearer ghp_test"
        assert request.headers["Accept"] == "application/vnd.github+json"
        assert request.headers["X-GitHub-Api-Version"] == "2022-11-28"


@time_machine.travel(NOW, tick=False)
def test_it_follows_seat_pages_through_the_link_header(httpserver):
    serve_all(httpserver)
    make_adapter(httpserver).fetch_daily_usage(start=START, end=END)

    first, second = requests_to(httpserver, SEATS)
    assert (first.args["page"], first.args["per_page"]) == ("1", "100")
    assert (second.args["page"], second.args["per_page"]) == ("2", "100")


@time_machine.travel(NOW, tick=False)
def test_it_follows_full_seat_pages_without_a_link_header(httpserver, monkeypatch):
    monkeypatch.setattr(copilot, "SEATS_PER_PAGE", 2)
    httpserver.expect_request(BILLING).respond_with_data(
        fixture("billing.json"), content_type="application/json"
    )

    def pages(request: Request) -> Response:
        return json_response(
            "seats_page2.json" if request.args["page"] == "2" else "seats_page1.json"
        )

    httpserver.expect_request(SEATS).respond_with_handler(pages)
    lines = make_adapter(httpserver, include_billing_usage=False).fetch_daily_usage(
        start=START, end=END
    )
    # Page 1 was full (2 of 2), page 2 short (1 of 2): two requests, then stop.
    assert [r.args["page"] for r in requests_to(httpserver, SEATS)] == ["1", "2"]
    assert [line.seats for line in lines] == [2, 3, 2]


@time_machine.travel(NOW, tick=False)
def test_it_stops_at_the_seat_page_limit(httpserver, monkeypatch):
    monkeypatch.setattr(copilot, "MAX_SEAT_PAGES", 3)
    httpserver.expect_request(BILLING).respond_with_data(
        fixture("billing.json"), content_type="application/json"
    )
    httpserver.expect_request(SEATS).respond_with_data(
        fixture("seats_page1.json"), headers={"Link": '<x>; rel="next"'}
    )
    with pytest.raises(ProviderError, match=r"pagination stopped after 3 pages \(page limit\)"):
        make_adapter(httpserver).fetch_daily_usage(start=START, end=END)
    assert len(requests_to(httpserver, SEATS)) == 3


@time_machine.travel(NOW, tick=False)
def test_it_prices_seats_per_day(httpserver):
    serve_all(httpserver)
    lines = by_key(make_adapter(httpserver).fetch_daily_usage(start=START, end=END))

    day1 = lines[(date(2026, 8, 1), "", "seats:business")]
    # octocat + monalisa (hubot joins 2026-08-02 03:00 UTC): 2 × $19 / 31 days = $1.2258064516…
    assert day1.seats == 2
    assert day1.cost == Decimal("1.2258064516")
    day2 = lines[(date(2026, 8, 2), "", "seats:business")]
    # all three seats: 3 × $19 / 31 = $57/31 = $1.8387096774…
    assert day2.seats == 3
    assert day2.cost == Decimal("1.8387096774")
    day3 = lines[(date(2026, 8, 3), "", "seats:business")]
    # monalisa's seat is cancelled from 2026-08-03: 2 × $19 / 31 = $1.2258064516…
    assert day3.seats == 2
    assert day3.cost == Decimal("1.2258064516")
    assert day1.raw["seat_price_per_month"] == "19"
    json.dumps(day1.raw)


@time_machine.travel(NOW, tick=False)
def test_it_uses_configured_enterprise_prices(httpserver):
    billing = {"seat_breakdown": {"total": 2}, "plan_type": "enterprise"}
    seats = {
        "total_seats": 2,
        "seats": [
            {"created_at": "2025-01-01T00:00:00Z", "pending_cancellation_date": None},
            {"created_at": "2025-06-01T00:00:00Z", "pending_cancellation_date": None},
        ],
    }
    httpserver.expect_request(BILLING).respond_with_json(billing)
    httpserver.expect_request(SEATS).respond_with_json(seats)
    adapter = make_adapter(httpserver, seat_price_enterprise="40", include_billing_usage=False)
    (line,) = adapter.fetch_daily_usage(start=date(2026, 2, 10), end=date(2026, 2, 11))

    assert line.line_item == "seats:enterprise"
    assert line.seats == 2
    # 2 seats × $40 (configured) / 28 days in February 2026 = $80/28 = $2.857142857142…
    assert line.cost == Decimal("2.8571428571")
    assert requests_to(httpserver, PREMIUM) == []  # billing usage switched off


@time_machine.travel(NOW, tick=False)
def test_it_falls_back_to_the_seat_summary_when_the_listing_is_empty(httpserver):
    httpserver.expect_request(BILLING).respond_with_data(
        fixture("billing.json"), content_type="application/json"
    )
    httpserver.expect_request(SEATS).respond_with_json({"total_seats": 0, "seats": []})
    adapter = make_adapter(httpserver, include_billing_usage=False)
    (line,) = adapter.fetch_daily_usage(start=date(2026, 8, 1), end=date(2026, 8, 2))
    # seat_breakdown.total = 3: 3 × $19 / 31 = $1.8387096774…
    assert (line.seats, line.cost) == (3, Decimal("1.8387096774"))


@time_machine.travel(NOW, tick=False)
def test_it_reads_ai_credit_money_per_day(httpserver):
    serve_all(httpserver)
    lines = by_key(make_adapter(httpserver).fetch_daily_usage(start=START, end=END))

    assert [r.args["day"] for r in requests_to(httpserver, AI_CREDITS)] == ["1", "2", "3"]
    assert {(r.args["year"], r.args["month"]) for r in requests_to(httpserver, AI_CREDITS)} == {
        ("2026", "8")
    }
    assert requests_to(httpserver, PREMIUM) == []  # August 2026 is billed in AI credits
    line = lines[(date(2026, 8, 1), "Claude Sonnet 4.5", "ai_credits")]
    assert line.credits == Decimal("1500.5")
    # netAmount is dollars after the included allowance: $15.005 gross − $12.505 discount = $2.5
    assert line.cost == Decimal("2.5")
    assert line.request_count == 0
    # Days 2 and 3 had no usage items: only seat lines.
    assert {key for key in lines if key[0] != date(2026, 8, 1)} == {
        (date(2026, 8, 2), "", "seats:business"),
        (date(2026, 8, 3), "", "seats:business"),
    }


@time_machine.travel(NOW, tick=False)
def test_it_reads_premium_request_money_before_june_2026(httpserver):
    serve_all(httpserver)
    lines = by_key(
        make_adapter(httpserver).fetch_daily_usage(start=date(2026, 5, 20), end=date(2026, 5, 21))
    )

    (request,) = requests_to(httpserver, PREMIUM)
    assert (request.args["year"], request.args["month"], request.args["day"]) == ("2026", "5", "20")
    assert requests_to(httpserver, AI_CREDITS) == []
    sonnet = lines[(date(2026, 5, 20), "Claude Sonnet 4.5", "premium_requests")]
    assert sonnet.request_count == 1250
    # 50 billed requests × $0.04 = $2 (netAmount)
    assert sonnet.cost == Decimal("2")
    gpt5 = lines[(date(2026, 5, 20), "GPT-5", "premium_requests")]
    # 12.33 requests (model multiplier) rounds to 12; all within the allowance, so $0
    assert (gpt5.request_count, gpt5.cost) == (12, Decimal("0"))
    assert gpt5.raw["grossQuantity"] == "12.33"
    # The all-zero Gemini item makes no line; octocat + monalisa hold seats on 2026-05-20.
    seats = lines[(date(2026, 5, 20), "", "seats:business")]
    assert seats.seats == 2
    assert len(lines) == 3


@time_machine.travel(NOW, tick=False)
def test_it_skips_billing_usage_when_the_org_is_not_on_enhanced_billing(httpserver):
    httpserver.expect_request(BILLING).respond_with_data(
        fixture("billing.json"), content_type="application/json"
    )
    httpserver.expect_request(SEATS).respond_with_handler(seat_pages)
    httpserver.expect_request(AI_CREDITS).respond_with_data(
        fixture("error_404.json"), status=404, content_type="application/json"
    )
    lines = make_adapter(httpserver).fetch_daily_usage(start=START, end=END)

    assert len(requests_to(httpserver, AI_CREDITS)) == 1  # not asked again for days 2 and 3
    assert [line.line_item for line in lines] == ["seats:business"] * 3


@time_machine.travel("2026-08-02 09:00:00+00:00", tick=False)
def test_it_reports_nothing_for_days_that_have_not_started(httpserver):
    serve_all(httpserver)
    lines = make_adapter(httpserver).fetch_daily_usage(start=START, end=date(2026, 8, 10))
    assert max(line.day for line in lines) == date(2026, 8, 2)
    assert [r.args["day"] for r in requests_to(httpserver, AI_CREDITS)] == ["1", "2"]


def test_it_requires_an_organization(httpserver):
    adapter = CopilotAdapter(base_url=httpserver.url_for(""), secret="ghp_test", config={})
    with pytest.raises(ProviderError) as info:
        adapter.test_connection()
    assert (info.value.message, info.value.permanent) == ("organization not set", True)
    assert httpserver.log == []


def test_it_reports_an_unknown_organization(httpserver):
    httpserver.expect_request(BILLING).respond_with_data(
        fixture("error_404.json"), status=404, content_type="application/json"
    )
    with pytest.raises(ProviderError) as info:
        make_adapter(httpserver).test_connection()
    assert (info.value.message, info.value.permanent) == ("organization not found", True)
    assert '"Not Found"' in info.value.body_excerpt


def test_it_reports_a_rejected_token(httpserver):
    httpserver.expect_request(BILLING).respond_with_json(
        {"message": "Bad credentials", "status": "401"}, status=401
    )
    with pytest.raises(ProviderError, match=r"^key rejected \(401\)$"):
        make_adapter(httpserver).test_connection()


def test_it_tests_the_connection_with_the_seat_summary(httpserver):
    httpserver.expect_request(BILLING).respond_with_data(
        fixture("billing.json"), content_type="application/json"
    )
    message = make_adapter(httpserver).test_connection()
    assert message == "Connected to GitHub organization acme-inc (Copilot business, 3 seats)"
    assert [r.path for r, _ in httpserver.log] == [BILLING]
