"""Cost rules. Every expected figure is worked out by hand in the comment beside it."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from providers.registry import ADAPTERS, get_adapter_class
from usage.extraction import RequestUsage, extract_usage
from usage.pricing import (
    SHIPPED_PRICES_PATH,
    Price,
    candidate_model_names,
    cost_for,
    litellm_to_prices,
)

D = Decimal
PER_M = D("0.000001")  # one dollar per million tokens, in dollars per token

# Reference §9.5, USD per 1M tokens.
GPT_4O = Price(
    input_per_token=D("2.50") * PER_M,
    cache_read_per_token=D("1.25") * PER_M,
    output_per_token=D("10") * PER_M,
)
O4_MINI = Price(
    input_per_token=D("1.10") * PER_M,
    cache_read_per_token=D("0.275") * PER_M,
    output_per_token=D("4.40") * PER_M,
)
SONNET_4_5 = Price(
    input_per_token=D("3") * PER_M,
    cache_read_per_token=D("0.30") * PER_M,
    cache_write_per_token=D("3.75") * PER_M,
    cache_write_1h_per_token=D("6") * PER_M,
    output_per_token=D("15") * PER_M,
    search_low=D("0.01"),
    search_medium=D("0.01"),
    search_high=D("0.01"),
)
SONAR = Price(
    input_per_token=D("1") * PER_M,
    output_per_token=D("1") * PER_M,
    search_low=D("0.005"),
    search_medium=D("0.008"),
    search_high=D("0.012"),
)
GPT_OSS_120B = Price(
    input_per_token=D("0.15") * PER_M,
    cache_read_per_token=D("0.075") * PER_M,
    output_per_token=D("0.60") * PER_M,
)


def load(text: str) -> dict:
    return json.loads(text, parse_float=Decimal)


def test_it_prices_openai_cached_input_and_reasoning_once():
    usage = extract_usage(
        "openai",
        {
            "model": "gpt-4o",
            "usage": {
                "prompt_tokens": 1000,
                "completion_tokens": 200,
                "prompt_tokens_details": {"cached_tokens": 400},
                "completion_tokens_details": {"reasoning_tokens": 150},
            },
        },
    )
    # 1,000 prompt incl. 400 cached; 200 out incl. 150 reasoning (billed as output, once):
    # 600 × $2.50/M + 400 × $1.25/M + 200 × $10/M = 0.0015 + 0.0005 + 0.002 = $0.004
    assert cost_for("openai", usage, GPT_4O) == D("0.004")


def test_it_prices_openai_responses_usage():
    usage = extract_usage(
        "openai",
        load(
            """{"id": "resp_68a1b2c3", "object": "response", "model": "o4-mini-2025-04-16",
            "usage": {"input_tokens": 1324, "input_tokens_details": {"cached_tokens": 1024,
            "cache_write_tokens": 0}, "output_tokens": 812,
            "output_tokens_details": {"reasoning_tokens": 640}, "total_tokens": 2136}}"""
        ),
    )
    # 300 uncached × $1.10/M + 1,024 cached × $0.275/M + 812 out × $4.40/M
    # = 0.00033 + 0.0002816 + 0.0035728 = $0.0041844
    assert cost_for("openai", usage, O4_MINI) == D("0.0041844")


def test_it_prices_reasoning_apart_when_it_has_its_own_price():
    price = Price(
        input_per_token=D("2") * PER_M,
        output_per_token=D("8") * PER_M,
        reasoning_per_token=D("3") * PER_M,
    )
    usage = RequestUsage(input_tokens=1000, output_tokens=500, reasoning_tokens=300)
    # 1,000 × $2/M + (500 - 300) × $8/M + 300 × $3/M = 0.002 + 0.0016 + 0.0009 = $0.0045
    assert cost_for("openai", usage, price) == D("0.0045")


def test_it_prices_anthropic_5m_and_1h_cache_writes_and_web_search():
    usage = extract_usage(
        "anthropic",
        {
            "model": "claude-sonnet-4-5-20250929",
            "usage": {
                "input_tokens": 412,
                "cache_read_input_tokens": 8192,
                "cache_creation_input_tokens": 3000,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": 1000,
                    "ephemeral_1h_input_tokens": 2000,
                },
                "output_tokens": 230,
                "server_tool_use": {"web_search_requests": 1},
            },
        },
    )
    # 412 × $3/M = 0.001236; 8,192 read × $0.30/M = 0.0024576; 1,000 5m × $3.75/M = 0.00375;
    # 2,000 1h × $6/M = 0.012; 230 out × $15/M = 0.00345; 1 search × $0.01 = 0.01
    # total = 0.001236 + 0.0024576 + 0.00375 + 0.012 + 0.00345 + 0.01 = $0.0328936
    assert cost_for("anthropic", usage, SONNET_4_5) == D("0.0328936")


def test_it_uses_perplexitys_own_cost_when_present():
    usage = extract_usage(
        "perplexity",
        load(
            """{"model": "sonar", "usage": {"prompt_tokens": 9, "completion_tokens": 11,
            "total_tokens": 20, "search_context_size": "low", "cost": {"input_tokens_cost":
            0.000009, "output_tokens_cost": 0.000011, "request_cost": 0.005,
            "total_cost": 0.00502}}}"""
        ),
    )
    # Perplexity's usage.cost.total_cost, taken as is: $0.00502 (even with no price row)
    assert cost_for("perplexity", usage, SONAR) == D("0.00502")
    assert cost_for("perplexity", usage, None) == D("0.00502")


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        # 9 in × $1/M + 11 out × $1/M + $5 per 1K requests = 0.000009 + 0.000011 + 0.005
        (None, D("0.00502")),  # no size reported: Perplexity's default, low
        ("low", D("0.00502")),
        # 0.000020 + $8 per 1K = 0.000020 + 0.008 = $0.00802
        ("medium", D("0.00802")),
        # 0.000020 + $12 per 1K = 0.000020 + 0.012 = $0.01202
        ("high", D("0.01202")),
    ],
)
def test_it_prices_perplexity_without_cost_by_search_context_size(size, expected):
    body = {"model": "sonar", "usage": {"prompt_tokens": 9, "completion_tokens": 11}}
    if size:
        body["usage"]["search_context_size"] = size
    usage = extract_usage("perplexity", body)
    assert cost_for("perplexity", usage, SONAR) == expected


def test_it_prices_perplexity_deep_research_searches_per_query():
    price = Price(
        input_per_token=D("2") * PER_M,
        output_per_token=D("8") * PER_M,
        reasoning_per_token=D("3") * PER_M,
        search_low=D("0.005"),
    )
    usage = RequestUsage(
        model="sonar-deep-research",
        input_tokens=1000,
        output_tokens=3000,
        reasoning_tokens=2000,
        search_queries=30,
    )
    # 1,000 × $2/M + (3,000 - 2,000) × $8/M + 2,000 × $3/M + 30 searches × $0.005
    # = 0.002 + 0.008 + 0.006 + 0.15 = $0.166
    assert cost_for("perplexity", usage, price) == D("0.166")


def test_it_prices_groq_tokens_from_x_groq_usage():
    usage = extract_usage(
        "groq",
        {
            "model": "openai/gpt-oss-120b",
            "usage": None,
            "x_groq": {"id": "req_1", "usage": {"prompt_tokens": 84, "completion_tokens": 12}},
        },
    )
    # 84 × $0.15/M + 12 × $0.60/M = 0.0000126 + 0.0000072 = $0.0000198
    assert cost_for("groq", usage, GPT_OSS_120B) == D("0.0000198")


def test_it_prices_cache_reads_at_input_when_no_cache_price_is_listed():
    llama = Price(input_per_token=D("0.05") * PER_M, output_per_token=D("0.08") * PER_M)
    usage = RequestUsage(input_tokens=600, cache_read_tokens=400, output_tokens=100)
    # LiteLLM rule: cached tokens at the input price.
    # 1,000 × $0.05/M + 100 × $0.08/M = 0.00005 + 0.000008 = $0.000058
    assert cost_for("groq", usage, llama) == D("0.000058")


def test_it_prices_1h_cache_writes_at_the_5m_price_when_no_1h_price_is_listed():
    price = Price(
        input_per_token=D("1") * PER_M,
        cache_write_per_token=D("1.25") * PER_M,
        output_per_token=D("5") * PER_M,
    )
    usage = RequestUsage(cache_write_tokens=1000, cache_write_1h_tokens=1000)
    # 1,000 × $1.25/M + 1,000 × $1.25/M = 0.00125 + 0.00125 = $0.0025
    assert cost_for("anthropic", usage, price) == D("0.0025")


def test_it_treats_an_explicit_zero_price_as_free():
    usage = RequestUsage(input_tokens=500, output_tokens=50)
    # 500 × $0 + 50 × $0 = $0, a real price (not unpriced)
    assert cost_for("openai", usage, Price(input_per_token=D(0), output_per_token=D(0))) == D(0)


def test_it_adds_request_fees_images_and_audio_seconds():
    price = Price(
        input_per_token=D("1") * PER_M,
        per_request=D("0.002"),
        per_image=D("0.04"),
        per_audio_second=D("0.0001"),
    )
    usage = RequestUsage(input_tokens=100, request_count=2, images=3, audio_seconds=D("12.5"))
    # 100 × $1/M + 2 × $0.002 + 3 × $0.04 + 12.5 s × $0.0001
    # = 0.0001 + 0.004 + 0.12 + 0.00125 = $0.12535
    assert cost_for("openai", usage, price) == D("0.12535")


def test_it_prices_copilot_premium_requests():
    usage = RequestUsage(model="claude-sonnet-4.5", input_tokens=5000, request_count=3)
    # 3 premium requests × $0.04 = $0.12 (Copilot does not bill tokens)
    assert cost_for("copilot", usage, Price(per_request=D("0.04"))) == D("0.12")


def test_it_prices_ollama_at_zero_by_default():
    usage = RequestUsage(model="llama3.2", input_tokens=26, output_tokens=18)
    # local and free: $0, whatever the price book holds (even nothing)
    assert cost_for("ollama", usage, None) == D(0)
    assert cost_for("ollama", usage, Price(input_per_token=D("1"))) == D(0)


def test_it_prices_ollama_compute_time():
    usage = extract_usage(
        "ollama", {"model": "llama3.2", "done": True, "total_duration": 2_000_000_000}
    )
    # $1.80 per hour × 2 s = 1.80 × 2,000,000,000 ns / 3,600,000,000,000 ns = $0.001
    assert cost_for("ollama", usage, None, compute_rate_per_hour=D("1.80")) == D("0.001")


def test_it_returns_none_for_an_unknown_model():
    usage = RequestUsage(model="gpt-99", input_tokens=10, output_tokens=10)
    assert cost_for("openai", usage, None) is None  # unpriced, not $0


@pytest.mark.parametrize(
    ("usage", "price"),
    [
        (RequestUsage(output_tokens=10), Price(input_per_token=D("0.000001"))),
        (RequestUsage(images=1), GPT_4O),
        (RequestUsage(audio_seconds=D("0.5")), GPT_4O),
        (RequestUsage(search_queries=2), GPT_4O),
        (RequestUsage(cache_read_tokens=5), Price(output_per_token=D("0.000001"))),
        (RequestUsage(model="sonar-deep-research", search_queries=3), Price()),
    ],
)
def test_it_returns_none_when_a_used_category_has_no_price(usage, price):
    assert cost_for("openai" if usage.model == "" else "perplexity", usage, price) is None


def test_it_charges_nothing_for_categories_that_were_not_used():
    usage = RequestUsage(input_tokens=1000)
    # 1,000 × $2.50/M = $0.0025; no output price needed when there is no output
    assert cost_for("openai", usage, Price(input_per_token=D("2.50") * PER_M)) == D("0.0025")


# --- candidate_model_names -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "model", "expected"),
    [
        ("openai", "gpt-4o-mini-2024-07-18", ["gpt-4o-mini-2024-07-18", "gpt-4o-mini"]),
        (
            "anthropic",
            "claude-sonnet-4-5-20250929",
            ["claude-sonnet-4-5-20250929", "claude-sonnet-4-5"],
        ),
        (
            "anthropic",
            "claude-3-5-haiku-20241022",
            ["claude-3-5-haiku-20241022", "claude-3-5-haiku"],
        ),
        ("anthropic", "claude-3-5-haiku-latest", ["claude-3-5-haiku-latest", "claude-3-5-haiku"]),
        ("openai", "gpt-4o", ["gpt-4o"]),
        ("groq", "llama-3.1-8b-instant", ["llama-3.1-8b-instant", "groq/llama-3.1-8b-instant"]),
        (
            "groq",
            "groq/llama-3.1-8b-instant",
            ["groq/llama-3.1-8b-instant", "llama-3.1-8b-instant"],
        ),
        (
            "groq",
            "openai/gpt-oss-120b",
            [
                "openai/gpt-oss-120b",
                "gpt-oss-120b",
                "groq/openai/gpt-oss-120b",
                "groq/gpt-oss-120b",
            ],
        ),
        ("perplexity", "sonar", ["sonar", "perplexity/sonar"]),
        (
            "ollama",
            "llama3.2:latest",
            ["llama3.2:latest", "llama3.2", "ollama/llama3.2:latest", "ollama/llama3.2"],
        ),
        (
            "openai",
            "openai/gpt-4o-2024-08-06",
            ["openai/gpt-4o-2024-08-06", "gpt-4o-2024-08-06", "openai/gpt-4o", "gpt-4o"],
        ),
        ("openai", "", []),
    ],
)
def test_it_lists_candidate_model_names(kind, model, expected):
    names = candidate_model_names(kind, model)
    assert names == expected
    assert len(names) == len(set(names))


# --- LiteLLM price table ---------------------------------------------------------------------

SMALL_LITELLM = """{
  "sample_spec": {"input_cost_per_token": 0.0, "litellm_provider": "one of ..."},
  "gpt-4o": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 2.5e-06,
    "output_cost_per_token": 1e-05, "cache_read_input_token_cost": 1.25e-06},
  "claude-sonnet-4-5": {"litellm_provider": "anthropic", "input_cost_per_token": 3e-06,
    "output_cost_per_token": 1.5e-05, "cache_read_input_token_cost": 3e-07,
    "cache_creation_input_token_cost": 3.75e-06,
    "cache_creation_input_token_cost_above_1hr": 6e-06,
    "search_context_cost_per_query": {"search_context_size_low": 0.01,
      "search_context_size_medium": 0.01, "search_context_size_high": 0.01}},
  "groq/openai/gpt-oss-120b": {"litellm_provider": "groq", "input_cost_per_token": 1.5e-07,
    "output_cost_per_token": 6e-07},
  "perplexity/sonar-deep-research": {"litellm_provider": "perplexity",
    "input_cost_per_token": 2e-06, "output_cost_per_token": 8e-06,
    "output_cost_per_reasoning_token": 3e-06,
    "search_context_cost_per_query": {"search_context_size_low": 0.005,
      "search_context_size_medium": 0.005, "search_context_size_high": 0.005}},
  "perplexity/pplx-7b-online": {"litellm_provider": "perplexity", "input_cost_per_token": 0,
    "input_cost_per_request": 0.005},
  "ollama/llama3": {"litellm_provider": "ollama", "input_cost_per_token": 0.0,
    "output_cost_per_token": 0.0},
  "babbage-002": {"litellm_provider": "text-completion-openai", "input_cost_per_token": 4e-07},
  "whisper-1": {"litellm_provider": "openai", "input_cost_per_second": 0.0001},
  "dall-e-3": {"litellm_provider": "openai", "output_cost_per_image": 0.04},
  "tts-1": {"litellm_provider": "openai", "input_cost_per_character": 1.5e-05},
  "azure/gpt-4o": {"litellm_provider": "azure", "input_cost_per_token": 2.5e-06}
}"""


def test_it_maps_a_litellm_table_to_prices():
    prices = litellm_to_prices(load(SMALL_LITELLM))
    assert set(prices) == {
        ("openai", "gpt-4o"),
        ("anthropic", "claude-sonnet-4-5"),
        ("groq", "openai/gpt-oss-120b"),
        ("perplexity", "sonar-deep-research"),
        ("perplexity", "pplx-7b-online"),
        ("ollama", "llama3"),
        ("openai", "babbage-002"),
        ("openai", "whisper-1"),
        ("openai", "dall-e-3"),
    }  # no sample_spec, no azure, no tts-1 (priced per character only)
    assert prices[("openai", "gpt-4o")] == Price(
        input_per_token=D("0.0000025"),
        cache_read_per_token=D("0.00000125"),
        output_per_token=D("0.00001"),
    )
    sonnet = prices[("anthropic", "claude-sonnet-4-5")]
    assert (sonnet.cache_write_per_token, sonnet.cache_write_1h_per_token) == (
        D("0.00000375"),
        D("0.000006"),
    )
    assert (sonnet.search_low, sonnet.search_medium, sonnet.search_high) == (D("0.01"),) * 3
    research = prices[("perplexity", "sonar-deep-research")]
    assert (research.reasoning_per_token, research.search_low) == (D("0.000003"), D("0.005"))
    assert prices[("perplexity", "pplx-7b-online")].per_request == D("0.005")
    assert prices[("ollama", "llama3")].input_per_token == D(0)
    assert prices[("openai", "whisper-1")].per_audio_second == D("0.0001")
    assert prices[("openai", "dall-e-3")].per_image == D("0.04")


def test_it_converts_plain_floats_through_their_text():
    prices = litellm_to_prices(
        {"gpt-4o": {"litellm_provider": "openai", "input_cost_per_token": 2.5e-06}}
    )
    # Decimal(2.5e-06) would be 0.00000250000000000000010...; via str it is exact
    assert prices[("openai", "gpt-4o")].input_per_token == D("0.0000025")


def shipped_prices() -> dict[tuple[str, str], Price]:
    with open(SHIPPED_PRICES_PATH, encoding="utf-8") as handle:
        return litellm_to_prices(json.load(handle, parse_float=Decimal))


def test_it_reads_the_shipped_litellm_file():
    prices = shipped_prices()
    assert prices[("openai", "gpt-4o")].input_per_token == D("0.0000025")
    assert prices[("perplexity", "sonar")].search_medium == D("0.008")
    assert prices[("groq", "openai/gpt-oss-120b")].output_per_token == D("0.0000006")
    kinds = {kind for kind, _ in prices}
    assert {"openai", "anthropic", "groq", "perplexity", "ollama"} <= kinds
    # Only providers that claim LiteLLM entries get any (adding one needs no change here).
    assert kinds <= {kind for kind in ADAPTERS if get_adapter_class(kind).litellm_providers}
    assert all(
        isinstance(getattr(price, name), Decimal)
        for price in prices.values()
        for name in ("input_per_token", "output_per_token")
        if getattr(price, name) is not None
    )


def test_it_prices_a_reference_anthropic_message_with_the_shipped_file():
    prices = shipped_prices()
    usage = extract_usage(
        "anthropic",
        {
            "model": "claude-sonnet-4-5-20250929",
            "usage": {
                "input_tokens": 412,
                "cache_creation_input_tokens": 2048,
                "cache_read_input_tokens": 8192,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": 2048,
                    "ephemeral_1h_input_tokens": 0,
                },
                "output_tokens": 230,
                "server_tool_use": {"web_search_requests": 1, "web_fetch_requests": 0},
            },
        },
    )
    name = next(
        n for n in candidate_model_names("anthropic", usage.model) if ("anthropic", n) in prices
    )
    # 412 × $3/M = 0.001236; 8,192 × $0.30/M = 0.0024576; 2,048 × $3.75/M = 0.00768;
    # 230 × $15/M = 0.00345; 1 search × $0.01 = 0.01
    # total = 0.001236 + 0.0024576 + 0.00768 + 0.00345 + 0.01 = $0.0248236
    assert cost_for("anthropic", usage, prices[("anthropic", name)]) == D("0.0248236")


def test_it_finds_an_undated_price_for_a_new_snapshot():
    prices = shipped_prices()
    names = candidate_model_names("anthropic", "claude-haiku-4-5-20991231")
    found = [name for name in names if ("anthropic", name) in prices]
    assert found == ["claude-haiku-4-5"]


@pytest.mark.parametrize("bare_first", [True, False])
def test_a_provider_keyed_entry_beats_a_bare_one_of_the_same_name(bare_first):
    # The snapshot has "gemini/gemini-exp-1206" at $0 and a bare "gemini-exp-1206" at
    # $0.30/M for the same provider; the provider-keyed one is what LiteLLM prices that
    # provider's calls with, wherever it stands in the file.
    bare = ("llama-x", {"litellm_provider": "groq", "input_cost_per_token": D("0.0000003")})
    keyed = ("groq/llama-x", {"litellm_provider": "groq", "input_cost_per_token": D("0.0000001")})
    data = dict([bare, keyed] if bare_first else [keyed, bare])

    prices = litellm_to_prices(data)

    assert prices[("groq", "llama-x")].input_per_token == D("0.0000001")
