from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import time_machine
from werkzeug import Request, Response

from providers.adapters.anthropic import AnthropicAdapter
from providers.http import ProviderError

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"
CURSOR = "page_MjAyNS0wNS0xNFQwMDowMDowMFo="
START, END = date(2026, 8, 1), date(2026, 8, 4)
SONNET = "claude-sonnet-4-5-20250929"
HAIKU = "claude-haiku-4-5-20251001"
COST_PATH = "/v1/organizations/cost_report"
USAGE_PATH = "/v1/organizations/usage_report/messages"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def make_adapter(httpserver, sleeps: list[float] | None = None) -> AnthropicAdapter:
    return AnthropicAdapter(
        base_url=httpserver.url_for(""),
        secret="sk-ant-admin01-test",
        config={},
        sleep=(sleeps if sleeps is not None else []).append,
    )


def serve_all(httpserver) -> None:
    def costs(request: Request) -> Response:
        name = "cost_report_page2.json" if request.args.get("page") else "cost_report_page1.json"
        return Response(fixture(name), content_type="application/json")

    httpserver.expect_request(COST_PATH).respond_with_handler(costs)
    httpserver.expect_request(USAGE_PATH).respond_with_data(
        fixture("usage_messages.json"), content_type="application/json"
    )


def requests_to(httpserver, path: str) -> list[Request]:
    return [request for request, _ in httpserver.log if request.path == path]


def fetch(httpserver) -> dict:
    lines = make_adapter(httpserver).fetch_daily_usage(start=START, end=END)
    return {(line.day, line.model, line.line_item): line for line in lines}


def test_it_sends_the_admin_key_version_and_bracket_params(httpserver):
    serve_all(httpserver)
    fetch(httpserver)

    cost = requests_to(httpserver, COST_PATH)[0]
    assert cost.headers["x-api-key"] == "sk-ant-admin01-test"
    assert cost.headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in cost.headers
    assert cost.args.getlist("group_by[]") == ["description"]
    assert cost.args["starting_at"] == "2026-08-01T00:00:00Z"
    assert cost.args["ending_at"] == "2026-08-04T00:00:00Z"
    assert cost.args["limit"] == "31"

    (usage,) = requests_to(httpserver, USAGE_PATH)
    assert usage.headers["x-api-key"] == "sk-ant-admin01-test"
    assert usage.args.getlist("group_by[]") == ["model"]
    assert usage.args["bucket_width"] == "1d"
    assert usage.args["limit"] == "31"


def test_it_follows_cost_report_pages(httpserver):
    serve_all(httpserver)
    lines = fetch(httpserver)

    first, second = requests_to(httpserver, COST_PATH)
    assert "page" not in first.args
    assert second.args["page"] == CURSOR
    assert second.args["starting_at"] == first.args["starting_at"]
    assert (date(2026, 8, 3), "", "Code Execution Usage") in lines  # from page 2


def test_it_converts_cents_to_dollars_exactly(httpserver):
    serve_all(httpserver)
    lines = fetch(httpserver)
    day1, day3 = date(2026, 8, 1), date(2026, 8, 3)

    # "13.77" cents = $0.1377
    assert lines[(day1, SONNET, "Claude Sonnet 4.5 Usage - Output Tokens")].cost == Decimal(
        "0.1377"
    )
    # "3" cents = $0.03 (web search has no model)
    assert lines[(day1, "", "Web Search Usage")].cost == Decimal("0.03")
    # "123.78912" cents = $1.2378912, every digit kept
    assert lines[(day3, HAIKU, "Claude Haiku 4.5 Usage - Output Tokens")].cost == Decimal(
        "1.2378912"
    )
    # "50" cents = $0.50
    assert lines[(day3, "", "Code Execution Usage")].cost == Decimal("0.5")
    assert all(line.currency == "USD" for line in lines.values())


def test_it_keeps_a_single_cents_amount_exact(httpserver):
    body = {
        "data": [
            {
                "starting_at": "2026-08-01T00:00:00Z",
                "ending_at": "2026-08-02T00:00:00Z",
                "results": [
                    {"amount": "14.463", "currency": "USD", "description": "In", "model": SONNET}
                ],
            }
        ],
        "has_more": False,
        "next_page": None,
    }
    httpserver.expect_request(COST_PATH).respond_with_json(body)
    httpserver.expect_request(USAGE_PATH).respond_with_data(
        fixture("empty_cost_report.json"), content_type="application/json"
    )
    (line,) = make_adapter(httpserver).fetch_daily_usage(start=START, end=END)
    assert line.cost == Decimal("0.14463")  # 14.463 cents = $0.14463
    assert str(line.cost) == "0.14463"  # no float artefacts like 0.14463000000000001


def test_it_sums_cost_results_split_by_workspace(httpserver):
    serve_all(httpserver)
    line = fetch(httpserver)[(date(2026, 8, 1), SONNET, "Claude Sonnet 4.5 Usage - Input Tokens")]

    # 14.463 cents (default workspace) + 0.537 cents (wrkspc_01…) = 15.000 cents = $0.15
    assert line.cost == Decimal("0.15")
    assert [part["workspace_id"] for part in line.raw["merged"]] == [
        None,
        "wrkspc_01AbCdEfGhIjKlMnOpQrStUv",
    ]


def test_it_sums_token_results_and_accepts_old_flat_cache_fields(httpserver):
    serve_all(httpserver)
    line = fetch(httpserver)[(date(2026, 8, 1), SONNET, "tokens:messages")]

    assert line.input_tokens == 49210  # 48210 + 1000
    assert line.cache_read_tokens == 96100  # 96000 + 100
    assert line.cache_write_tokens == 12500  # 12000 nested 5m + 500 flat 5m
    assert line.cache_write_1h_tokens == 250  # 0 nested 1h + 250 flat 1h
    assert line.output_tokens == 9480  # 9180 + 300
    assert line.search_queries == 4  # 3 + 1 web searches
    assert line.cost is None


def test_it_reads_a_single_usage_result(httpserver):
    serve_all(httpserver)
    line = fetch(httpserver)[(date(2026, 8, 1), HAIKU, "tokens:messages")]
    assert (line.input_tokens, line.output_tokens, line.cache_read_tokens) == (1520, 610, 0)
    assert line.raw["speed"] == "fast"  # unknown field ignored by the parser, kept for audit


def test_it_produces_no_lines_for_empty_buckets(httpserver):
    serve_all(httpserver)
    lines = fetch(httpserver)

    assert date(2026, 8, 2) not in {day for day, _, _ in lines}
    assert len(lines) == 7  # day 1: 3 cost + 2 token lines; day 3: 2 cost lines
    for line in lines.values():
        json.dumps(line.raw)


def test_it_rejects_an_amount_that_is_not_a_number(httpserver):
    body = {
        "data": [
            {
                "starting_at": "2026-08-01T00:00:00Z",
                "results": [{"amount": "twelve", "currency": "USD", "description": "x"}],
            }
        ],
        "has_more": False,
    }
    httpserver.expect_request(COST_PATH).respond_with_json(body)
    with pytest.raises(ProviderError) as info:
        make_adapter(httpserver).fetch_daily_usage(start=START, end=END)
    assert info.value.message == "unexpected response shape: amount should be a number"
    assert "twelve" in info.value.body_excerpt


def test_it_rejects_a_usage_result_without_tokens(httpserver):
    httpserver.expect_request(COST_PATH).respond_with_data(
        fixture("empty_cost_report.json"), content_type="application/json"
    )
    body = {
        "data": [{"starting_at": "2026-08-01T00:00:00Z", "results": [{"model": SONNET}]}],
        "has_more": False,
    }
    httpserver.expect_request(USAGE_PATH).respond_with_json(body)
    with pytest.raises(ProviderError, match="unexpected response shape: 'uncached_input_tokens'"):
        make_adapter(httpserver).fetch_daily_usage(start=START, end=END)


@time_machine.travel("2026-08-10 15:30:00+00:00", tick=False)
def test_it_tests_the_connection_with_a_one_day_cost_report(httpserver):
    httpserver.expect_request(COST_PATH).respond_with_data(
        fixture("empty_cost_report.json"), content_type="application/json"
    )
    assert make_adapter(httpserver).test_connection() == "Connected to Anthropic organization"

    request, _ = httpserver.log[0]
    assert request.args["starting_at"] == "2026-08-09T00:00:00Z"
    assert request.args["ending_at"] == "2026-08-10T00:00:00Z"
    assert request.args["limit"] == "1"
    assert request.headers["anthropic-version"] == "2023-06-01"


def test_it_reports_a_rejected_key(httpserver):
    httpserver.expect_request(COST_PATH).respond_with_data(
        fixture("error_401.json"), status=401, content_type="application/json"
    )
    with pytest.raises(ProviderError) as info:
        make_adapter(httpserver).test_connection()
    assert (info.value.message, info.value.permanent) == ("key rejected (401)", True)


def test_it_reports_a_key_without_admin_permission(httpserver):
    httpserver.expect_request(COST_PATH).respond_with_data(
        fixture("error_403.json"), status=403, content_type="application/json"
    )
    with pytest.raises(ProviderError) as info:
        make_adapter(httpserver).test_connection()
    assert info.value.message == (
        "key lacks admin permission (403): "
        "This API key does not have permission to access the Admin API."
    )
    assert info.value.permanent is True


def test_it_retries_on_429_honouring_retry_after(httpserver):
    httpserver.expect_oneshot_request(COST_PATH).respond_with_json(
        {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}},
        status=429,
        headers={"Retry-After": "7"},
    )
    serve_all(httpserver)
    sleeps: list[float] = []
    lines = make_adapter(httpserver, sleeps).fetch_daily_usage(start=START, end=END)
    assert sleeps == [7]
    assert len(requests_to(httpserver, COST_PATH)) == 3  # 429, page 1, page 2
    assert len(lines) == 7
