from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import time_machine
from werkzeug import Request, Response

from providers.adapters.openai import OpenAIAdapter, model_from_line_item
from providers.http import ProviderError

FIXTURES = Path(__file__).parent / "fixtures" / "openai"
CURSOR = "page_AAAAAGdGxdEiJdKOAAAAAGcqsYA="
START, END = date(2026, 8, 1), date(2026, 8, 4)


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def json_response(name: str, status: int = 200) -> Response:
    return Response(fixture(name), status=status, content_type="application/json")


def make_adapter(httpserver, sleeps: list[float] | None = None, base: str = "") -> OpenAIAdapter:
    return OpenAIAdapter(
        base_url=base or httpserver.url_for(""),
        secret="sk-admin-test",
        config={},
        sleep=(sleeps if sleeps is not None else []).append,
    )


def serve_all(httpserver) -> None:
    def costs(request: Request) -> Response:
        return json_response("costs_page2.json" if request.args.get("page") else "costs_page1.json")

    httpserver.expect_request("/v1/organization/costs").respond_with_handler(costs)
    httpserver.expect_request("/v1/organization/usage/completions").respond_with_data(
        fixture("completions.json"), content_type="application/json"
    )
    httpserver.expect_request("/v1/organization/usage/embeddings").respond_with_data(
        fixture("embeddings.json"), content_type="application/json"
    )


def requests_to(httpserver, path: str) -> list[Request]:
    return [request for request, _ in httpserver.log if request.path == path]


def by_key(lines):
    return {(line.day, line.model, line.line_item): line for line in lines}


def test_it_sends_the_admin_key_and_bracket_params(httpserver):
    serve_all(httpserver)
    make_adapter(httpserver).fetch_daily_usage(start=START, end=END)

    first_cost = requests_to(httpserver, "/v1/organization/costs")[0]
    assert first_cost.headers["Authorization"] == "Bearer sk-admin-test"
    assert first_cost.args.getlist("group_by[]") == ["line_item"]
    assert first_cost.args["bucket_width"] == "1d"
    assert first_cost.args["limit"] == "180"
    assert first_cost.args["start_time"] == "1785542400"  # 2026-08-01T00:00:00Z
    assert first_cost.args["end_time"] == "1785801600"  # 2026-08-04T00:00:00Z, exclusive
    assert "page" not in first_cost.args

    for path in ("/v1/organization/usage/completions", "/v1/organization/usage/embeddings"):
        (usage,) = requests_to(httpserver, path)
        assert usage.headers["Authorization"] == "Bearer sk-admin-test"
        assert usage.args.getlist("group_by[]") == ["model"]
        assert usage.args["limit"] == "31"
        assert usage.args["start_time"] == "1785542400"


def test_it_follows_cost_pages_with_the_cursor(httpserver):
    serve_all(httpserver)
    lines = make_adapter(httpserver).fetch_daily_usage(start=START, end=END)

    first, second = requests_to(httpserver, "/v1/organization/costs")
    assert second.args["page"] == CURSOR
    # The follow-up repeats the query, only adding the cursor.
    assert {k: v for k, v in second.args.items() if k != "page"} == dict(first.args)
    assert second.args.getlist("group_by[]") == ["line_item"]
    # Lines from both pages are present.
    keys = by_key(lines)
    assert (date(2026, 8, 1), "gpt-4o-mini-2024-07-18", "gpt-4o-mini-2024-07-18, input") in keys
    assert (date(2026, 8, 3), "", "web search tool call") in keys


def test_it_parses_cost_amounts_sent_as_numbers_and_strings(httpserver):
    serve_all(httpserver)
    lines = by_key(make_adapter(httpserver).fetch_daily_usage(start=START, end=END))

    day1, day3 = date(2026, 8, 1), date(2026, 8, 3)
    model = "gpt-4o-mini-2024-07-18"
    # JSON number 0.0196710 dollars, kept exactly (no float rounding) = $0.0196710
    assert lines[(day1, model, f"{model}, input")].cost == Decimal("0.0196710")
    # JSON string "0.012249" dollars = $0.012249
    assert lines[(day1, model, f"{model}, output")].cost == Decimal("0.012249")
    # JSON string "12.50" dollars (the live quirk) = $12.50
    assert lines[(day3, "", "web search tool call")].cost == Decimal("12.50")
    # JSON integer 3 dollars = $3
    assert lines[(day3, "gpt-4o-mini", "evals | gpt-4o-mini, input")].cost == Decimal(3)
    assert all(line.currency == "USD" for line in lines.values())  # "usd" upper-cased


def test_it_maps_completion_tokens_with_uncached_input(httpserver):
    serve_all(httpserver)
    lines = by_key(make_adapter(httpserver).fetch_daily_usage(start=START, end=END))

    line = lines[(date(2026, 8, 1), "gpt-4o-mini-2024-07-18", "tokens:completions")]
    assert line.input_tokens == 131140  # input_uncached_tokens, not the 182340 total
    assert line.cache_read_tokens == 51200
    assert line.cache_write_tokens == 0
    assert line.output_tokens == 20415
    assert line.request_count == 311
    assert line.cost is None  # money comes on the cost lines


def test_it_derives_uncached_input_for_older_results(httpserver):
    serve_all(httpserver)
    lines = by_key(make_adapter(httpserver).fetch_daily_usage(start=START, end=END))

    line = lines[(date(2026, 8, 3), "gpt-4o-2024-08-06", "tokens:completions")]
    assert line.input_tokens == 7500  # 10000 input - 2500 cached - 0 cache writes
    assert line.cache_read_tokens == 2500
    assert line.output_tokens == 1200
    assert line.request_count == 40


def test_it_reads_embedding_tokens(httpserver):
    serve_all(httpserver)
    lines = by_key(make_adapter(httpserver).fetch_daily_usage(start=START, end=END))

    line = lines[(date(2026, 8, 1), "text-embedding-3-small", "tokens:embeddings")]
    assert (line.input_tokens, line.request_count, line.cost) == (16384, 12, None)


def test_it_produces_no_lines_for_empty_buckets(httpserver):
    serve_all(httpserver)
    lines = make_adapter(httpserver).fetch_daily_usage(start=START, end=END)

    assert date(2026, 8, 2) not in {line.day for line in lines}
    assert len(lines) == 7  # day 1: 2 cost + completions + embeddings; day 3: 2 cost + completions


def test_it_returns_nothing_when_every_bucket_is_empty(httpserver):
    httpserver.expect_request("/v1/organization/costs").respond_with_data(
        fixture("empty.json"), content_type="application/json"
    )
    for endpoint in ("completions", "embeddings"):
        httpserver.expect_request(f"/v1/organization/usage/{endpoint}").respond_with_data(
            fixture("empty.json"), content_type="application/json"
        )
    assert make_adapter(httpserver).fetch_daily_usage(start=START, end=END) == []


def test_it_ignores_unknown_fields_but_keeps_them_in_raw(httpserver):
    serve_all(httpserver)
    lines = by_key(make_adapter(httpserver).fetch_daily_usage(start=START, end=END))

    model = "gpt-4o-mini-2024-07-18"
    output = lines[(date(2026, 8, 1), model, f"{model}, output")]
    assert output.raw["some_future_field"] == {"nested": [1, "2.5"]}  # Decimal stored as str
    assert output.raw["amount"] == {"value": "0.012249", "currency": "usd"}
    for line in lines.values():
        json.dumps(line.raw)  # raw must be JSON-serialisable for the audit column


def test_it_rejects_an_unexpected_shape(httpserver):
    httpserver.expect_request("/v1/organization/costs").respond_with_data(
        fixture("empty.json"), content_type="application/json"
    )
    httpserver.expect_request("/v1/organization/usage/completions").respond_with_data(
        fixture("bad_shape_missing_tokens.json"), content_type="application/json"
    )
    with pytest.raises(ProviderError) as info:
        make_adapter(httpserver).fetch_daily_usage(start=START, end=END)
    assert info.value.message.startswith("unexpected response shape: 'input_tokens'")
    assert '"lots"' in info.value.body_excerpt


def test_it_rejects_a_cost_without_an_amount(httpserver):
    body = {
        "object": "page",
        "data": [{"start_time": 1785542400, "results": [{"object": "organization.costs.result"}]}],
        "has_more": False,
        "next_page": None,
    }
    httpserver.expect_request("/v1/organization/costs").respond_with_json(body)
    with pytest.raises(ProviderError, match="unexpected response shape: 'amount'"):
        make_adapter(httpserver).fetch_daily_usage(start=START, end=END)


def test_it_retries_a_500_through_the_adapter(httpserver):
    httpserver.expect_oneshot_request("/v1/organization/costs").respond_with_data("", status=502)
    serve_all(httpserver)
    sleeps: list[float] = []
    lines = make_adapter(httpserver, sleeps).fetch_daily_usage(start=START, end=END)

    assert len(requests_to(httpserver, "/v1/organization/costs")) == 3  # 502, page 1, page 2
    assert len(sleeps) == 1 and 1 <= sleeps[0] <= 2
    assert len(lines) == 7


@time_machine.travel("2026-08-10 15:30:00+00:00", tick=False)
def test_it_tests_the_connection_with_a_one_day_cost_query(httpserver):
    httpserver.expect_request("/v1/organization/costs").respond_with_data(
        fixture("empty.json"), content_type="application/json"
    )
    assert make_adapter(httpserver).test_connection() == "Connected to OpenAI organization"

    request, _ = httpserver.log[0]
    assert request.args["start_time"] == "1786233600"  # 2026-08-09T00:00:00Z
    assert request.args["end_time"] == "1786320000"  # 2026-08-10T00:00:00Z
    assert request.args["limit"] == "1"
    assert request.headers["Authorization"] == "Bearer sk-admin-test"


def test_it_reports_a_rejected_key(httpserver):
    httpserver.expect_request("/v1/organization/costs").respond_with_json(
        {"error": {"message": "Incorrect API key provided"}}, status=401
    )
    with pytest.raises(ProviderError) as info:
        make_adapter(httpserver).test_connection()
    assert (info.value.message, info.value.permanent) == ("key rejected (401)", True)
    assert len(httpserver.log) == 1


def test_it_reports_a_key_without_admin_permission(httpserver):
    httpserver.expect_request("/v1/organization/costs").respond_with_data(
        fixture("error_403.json"), status=403, content_type="application/json"
    )
    with pytest.raises(ProviderError) as info:
        make_adapter(httpserver).test_connection()
    assert info.value.message.startswith("key lacks admin permission (403): ")
    assert "api.usage.read" in info.value.message
    assert info.value.permanent is True


def test_it_accepts_a_base_url_that_already_ends_in_v1(httpserver):
    httpserver.expect_request("/v1/organization/costs").respond_with_data(
        fixture("empty.json"), content_type="application/json"
    )
    adapter = make_adapter(httpserver, base=httpserver.url_for("/v1/"))
    assert adapter.test_connection() == "Connected to OpenAI organization"
    assert httpserver.log[0][0].path == "/v1/organization/costs"


def test_it_returns_nothing_for_an_empty_window(httpserver):
    assert make_adapter(httpserver).fetch_daily_usage(start=START, end=START) == []
    assert httpserver.log == []


@pytest.mark.parametrize(
    ("label", "model"),
    [
        ("gpt-4o-mini-2024-07-18, input", "gpt-4o-mini-2024-07-18"),
        ("gpt-4o, cached input", "gpt-4o"),
        ("ft-gpt-4o-2024-08-06, output", "ft-gpt-4o-2024-08-06"),
        ("evals | gpt-4o-mini, input", "gpt-4o-mini"),
        ("assistants api | file search", ""),
        ("web search tool call", ""),
        ("", ""),
    ],
)
def test_it_parses_the_model_out_of_cost_line_items(label, model):
    assert model_from_line_item(label) == model
