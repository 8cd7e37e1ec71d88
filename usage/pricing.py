"""Pure cost rules: one RequestUsage × one Price -> USD, plus LiteLLM price-table import.

No database here; the price book model stores `Price` fields and calls these functions.
A cost of None means UNPRICED (unknown), never zero; Decimal("0") is a real price (Ollama).
Facts: `shared/reference/provider-apis.md` sections 5.3, 8, 9 and 10.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from usage.extraction import RequestUsage

SHIPPED_PRICES_PATH = Path(__file__).resolve().parent / "data" / "litellm_model_prices.json"
NS_PER_HOUR = Decimal(3_600_000_000_000)


@cache
def _litellm_providers() -> dict[str, str]:
    """LiteLLM's litellm_provider -> our provider kind (each adapter's ``litellm_providers``);
    everything else is skipped."""
    return {
        name: kind for kind, adapter in _adapters().items() for name in adapter.litellm_providers
    }


@cache
def _key_prefixed_kinds() -> tuple[str, ...]:
    """Kinds LiteLLM keys with a prefix ("<kind>/llama-3.1-8b-instant")."""
    return tuple(kind for kind, adapter in _adapters().items() if adapter.litellm_key_prefixed)


@cache
def _provider_prefixes() -> tuple[str, ...]:
    """Provider prefixes proxies put on model names: every kind with LiteLLM prices."""
    return tuple(f"{kind}/" for kind, adapter in _adapters().items() if adapter.litellm_providers)


@cache
def _adapters() -> dict:
    from providers.registry import ADAPTERS, get_adapter_class

    return {kind: get_adapter_class(kind) for kind in ADAPTERS}


# Dated snapshots: OpenAI "-2024-07-18", Anthropic "-20250929"; aliases "-latest", ":latest".
_SNAPSHOT_SUFFIX = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|-latest|:latest)$")


@dataclass(frozen=True)
class Price:
    """Unit prices in USD; None = not priced (different from an explicit 0)."""

    input_per_token: Decimal | None = None
    cache_read_per_token: Decimal | None = None
    cache_write_per_token: Decimal | None = None
    cache_write_1h_per_token: Decimal | None = None
    output_per_token: Decimal | None = None
    reasoning_per_token: Decimal | None = None  # only when reasoning is priced apart from output
    per_request: Decimal | None = None
    search_low: Decimal | None = None  # per search query, or per request for Perplexity Sonar
    search_medium: Decimal | None = None
    search_high: Decimal | None = None
    per_image: Decimal | None = None
    per_audio_second: Decimal | None = None
    per_seat_month: Decimal | None = None  # seat and credit lines are priced by the sync, not here
    per_credit: Decimal | None = None
    # Long-context tier: a request whose prompt is above `long_context_threshold` tokens is
    # priced at the *_long rates for every token category (see _long_context). None: no tier.
    long_context_threshold: int | None = None
    input_per_token_long: Decimal | None = None
    cache_read_per_token_long: Decimal | None = None
    cache_write_per_token_long: Decimal | None = None
    cache_write_1h_per_token_long: Decimal | None = None
    output_per_token_long: Decimal | None = None


# The long-context tier's fields; each rate stands in for the ordinary one its name ends with.
LONG_CONTEXT_RATES = (
    "input_per_token_long",
    "cache_read_per_token_long",
    "cache_write_per_token_long",
    "cache_write_1h_per_token_long",
    "output_per_token_long",
)
LONG_CONTEXT_FIELDS = ("long_context_threshold", *LONG_CONTEXT_RATES)


def _line(count: int | Decimal, unit_price: Decimal | None) -> Decimal | None:
    """count × price; a zero count costs nothing even unpriced, a non-zero one needs a price."""
    if not count:
        return Decimal(0)
    if unit_price is None:
        return None
    return count * unit_price


def _first(*prices: Decimal | None) -> Decimal | None:
    return next((price for price in prices if price is not None), None)


def _search_price(usage: RequestUsage, price: Price) -> Decimal | None:
    # Perplexity's default context size is "low" (ref §5.1); an unknown size prices as low too.
    size = usage.search_context_size or "low"
    by_size = {"low": price.search_low, "medium": price.search_medium, "high": price.search_high}
    return by_size.get(size, price.search_low)


def prompt_tokens(usage: RequestUsage) -> int:
    """Every input token of the request: uncached, cache reads and cache writes."""
    return (
        usage.input_tokens
        + usage.cache_read_tokens
        + usage.cache_write_tokens
        + usage.cache_write_1h_tokens
    )


def _long_context(usage: RequestUsage, price: Price) -> bool:
    """Whether the whole request is priced at the long-context tier.

    Matches LiteLLM 1.109.1, _get_token_base_cost and _prompt_exceeds_threshold in
    litellm/litellm_core_utils/llm_cost_calc/utils.py: the tier applies when
    ``usage.prompt_tokens > threshold``, strictly above, and LiteLLM's prompt_tokens counts
    cached input too (OpenAI and Gemini report it so; its Anthropic usage adds
    cache_read_input_tokens and cache_creation_input_tokens to input_tokens). LiteLLM compares
    with >= for one provider (xAI, _INCLUSIVE_THRESHOLD_PROVIDERS); here one rule serves all.
    """
    threshold = price.long_context_threshold
    return threshold is not None and prompt_tokens(usage) > threshold


def _token_lines(usage: RequestUsage, price: Price) -> list[Decimal | None]:
    input_rate = price.input_per_token
    cache_read = price.cache_read_per_token
    cache_write = price.cache_write_per_token
    cache_write_1h = price.cache_write_1h_per_token
    output_rate = price.output_per_token
    if _long_context(usage, price):
        # Every category at its long rate; one without a long rate keeps its ordinary rate,
        # as LiteLLM 1.109.1 does (get_cost_per_unit(tier key, default=the ordinary rate)).
        input_rate = _first(price.input_per_token_long, input_rate)
        cache_read = _first(price.cache_read_per_token_long, cache_read)
        cache_write = _first(price.cache_write_per_token_long, cache_write)
        cache_write_1h = _first(price.cache_write_1h_per_token_long, cache_write_1h)
        output_rate = _first(price.output_per_token_long, output_rate)
    # An absent cache price falls back to the input price (and a 1-hour write to the 5-minute
    # write price) - LiteLLM 1.109.1 does the same in _get_token_base_cost: "a provider that
    # publishes no cache price bills cached tokens as ordinary input". An explicit 0 stays 0.
    # In the long tier that is the long input rate, as in LiteLLM.
    cache_read = _first(cache_read, input_rate)
    cache_write = _first(cache_write, input_rate)
    cache_write_1h = _first(cache_write_1h, cache_write)
    lines = [
        _line(usage.input_tokens, input_rate),
        _line(usage.cache_read_tokens, cache_read),
        _line(usage.cache_write_tokens, cache_write),
        _line(usage.cache_write_1h_tokens, cache_write_1h),
    ]
    if price.reasoning_per_token is not None and usage.reasoning_tokens:
        # Reasoning is inside output_tokens: take it out before pricing the rest as output.
        reasoning = min(usage.reasoning_tokens, usage.output_tokens)
        # LiteLLM has no long-context reasoning rate: reasoning priced apart keeps its rate.
        lines.append(_line(usage.output_tokens - reasoning, output_rate))
        lines.append(_line(reasoning, price.reasoning_per_token))
    else:
        lines.append(_line(usage.output_tokens, output_rate))
    return lines


def cost_for(
    kind: str,
    usage: RequestUsage,
    price: Price | None,
    *,
    compute_rate_per_hour: Decimal | None = None,
    account_config: Mapping[str, Any] | None = None,
) -> Decimal | None:
    """USD cost of one request, or None when it cannot be priced (never a made-up 0).

    The provider's adapter decides (``ProviderAdapter.price``): by default
    :func:`standard_cost`; a provider with its own rules (its own cost figure, a local compute
    rate, premium requests) overrides it. `compute_rate_per_hour` is a user's hardware/energy
    rate for local providers; `account_config` the account's stored settings, for a rule that
    depends on one of them.
    """
    from providers.registry import ADAPTERS, get_adapter_class

    if kind not in ADAPTERS:
        return None if price is None else standard_cost(usage, price)
    return get_adapter_class(kind).price(
        usage, price, compute_rate_per_hour=compute_rate_per_hour, account_config=account_config
    )


def standard_cost(
    usage: RequestUsage, price: Price, *, search_per_request: bool = False
) -> Decimal | None:
    """Each category × its price; reasoning apart only when reasoning_per_token is set;
    per_request, searches, images and audio seconds on top. None if a counted category has no
    price. `search_per_request`: the search fee is charged once per request, not per query.
    """
    lines = _token_lines(usage, price)
    if price.per_request is not None:
        # A request fee is an optional surcharge: absent means the model has none, so
        # request_count alone never makes a request unpriced.
        lines.append(usage.request_count * price.per_request)
    search_price = _search_price(usage, price)
    if search_per_request:
        if search_price is not None:
            lines.append(usage.request_count * search_price)
    else:
        lines.append(_line(usage.search_queries, search_price))
    lines.append(_line(usage.images, price.per_image))
    lines.append(_line(usage.audio_seconds, price.per_audio_second))

    if any(line is None for line in lines):
        return None
    return sum(lines, Decimal(0))


def candidate_model_names(kind: str, model: str) -> list[str]:
    """Names to try in the price book, most specific first, without duplicates.

    Usage APIs report dated snapshots ("claude-sonnet-4-5-20250929") and proxies add provider
    prefixes, while price tables key on the bare alias (ref §11 item 10).
    """
    if not model:
        return []
    names = [model]
    bare = model
    prefixes = _provider_prefixes()
    while bare.startswith(prefixes):  # "groq/openai/gpt-oss-120b" strips twice
        bare = bare.split("/", 1)[1]
        names.append(bare)
    for name in list(names):
        undated = name
        while (match := _SNAPSHOT_SUFFIX.search(undated)) and match.start() > 0:
            undated = undated[: match.start()]
            names.append(undated)
    if kind in _key_prefixed_kinds():
        prefix = f"{kind}/"
        names += [prefix + name for name in list(names) if not name.startswith(prefix)]
    return list(dict.fromkeys(names))


def _price_value(value: Any, key: str) -> Decimal | None:
    """A LiteLLM number as Decimal; never through binary float arithmetic."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, (int, float, str)):
        return Decimal(str(value))
    raise ValueError(f"{key}: expected a number, got {value!r}")


# Our Price field <- LiteLLM keys, first present wins.
_LITELLM_FIELDS: dict[str, tuple[str, ...]] = {
    "input_per_token": ("input_cost_per_token",),
    "cache_read_per_token": ("cache_read_input_token_cost",),
    "cache_write_per_token": ("cache_creation_input_token_cost",),
    "cache_write_1h_per_token": ("cache_creation_input_token_cost_above_1hr",),
    "output_per_token": ("output_cost_per_token",),
    "reasoning_per_token": ("output_cost_per_reasoning_token",),
    # Old "online" Perplexity models charge per request; perplexity/search per query (= request).
    "per_request": ("input_cost_per_request", "input_cost_per_query"),
    # Image models keyed by size/quality ("1024-x-1024/gpt-image-1.5") store the price of one
    # generated image under input_cost_per_image.
    "per_image": ("output_cost_per_image", "input_cost_per_image"),
    "per_audio_second": ("input_cost_per_second",),
}


# LiteLLM's prompt-size tier keys, "<rate key>_above_<N>[k]_tokens" (1.109.1 ships 100k, 128k,
# 200k and 272k tiers). Anchored at the end, so the service-tier variants ("..._tokens_priority",
# "_flex", "_ultrafast", "_batches", "_decisions") are left out: they price how a request was
# served (priority or flex processing, the batch API), not how long its prompt was, and a
# recorded request does not say which service tier served it. The per-character, image, audio
# and video "_above_128k_tokens" keys are left out too: LiteLLM's token pricing
# (_get_token_base_cost) reads only these five rates, and so do we.
_LITELLM_TIER_KEY = re.compile(
    r"^(input_cost_per_token|cache_read_input_token_cost|cache_creation_input_token_cost_above_1hr"
    r"|cache_creation_input_token_cost|output_cost_per_token)_above_(\d+)(k?)_tokens$"
)
_LITELLM_TIER_FIELDS: dict[str, str] = {
    "input_cost_per_token": "input_per_token_long",
    "cache_read_input_token_cost": "cache_read_per_token_long",
    "cache_creation_input_token_cost": "cache_write_per_token_long",
    "cache_creation_input_token_cost_above_1hr": "cache_write_1h_per_token_long",
    "output_cost_per_token": "output_per_token_long",
}


def _litellm_long_context(entry: dict, key: str) -> dict[str, int | Decimal]:
    """The long-context tier of one LiteLLM entry as Price fields ({} when it has none).

    As in LiteLLM 1.109.1 (_get_token_base_cost), any of the five rates' "_above_" keys marks
    the threshold, not only the input one; a rate without its own key keeps its ordinary rate
    (_token_lines). LiteLLM applies every threshold a prompt is above, lowest first, each
    one's rates over the last; a Price holds one tier, so of two thresholds the lower is kept
    (no entry in the 1.109.1 snapshot has two: usage/tests/test_price_tiers.py checks).
    """
    tiers: dict[int, dict[str, int | Decimal]] = {}
    for name, value in entry.items():
        match = _LITELLM_TIER_KEY.match(name)
        if match is None or value is None:
            continue
        rate_key, number, thousands = match.groups()
        threshold = int(number) * (1000 if thousands else 1)
        rate = _price_value(value, f"{key}.{name}")
        tiers.setdefault(threshold, {})[_LITELLM_TIER_FIELDS[rate_key]] = rate
    if not tiers:
        return {}
    threshold = min(tiers)
    return {"long_context_threshold": threshold, **tiers[threshold]}


def litellm_to_prices(data: dict) -> dict[tuple[str, str], Price]:
    """Map LiteLLM's model_prices_and_context_window.json (parsed with parse_float=Decimal)
    to {(kind, model name): Price} for our providers; entries with no price at all are skipped.
    """
    prices: dict[tuple[str, str], Price] = {}
    from_prefixed_key: set[tuple[str, str]] = set()
    litellm_providers = _litellm_providers()
    key_prefixed = _key_prefixed_kinds()
    for key, entry in data.items():
        if key == "sample_spec" or not isinstance(entry, dict):
            continue
        kind = litellm_providers.get(entry.get("litellm_provider"))
        if kind is None:
            continue
        name = key
        # Strip once only: "perplexity/perplexity/sonar" is a different model from "sonar".
        prefixed = kind in key_prefixed and name.startswith(f"{kind}/")
        if prefixed:
            name = name[len(kind) + 1 :]
        elif (kind, name) in from_prefixed_key:
            # "gemini/x" and a bare "x" of the same provider can disagree (the snapshot's
            # gemini-exp-1206): the provider-keyed entry is the one LiteLLM prices that
            # provider's calls with, whichever comes first in the file.
            continue
        values: dict[str, int | Decimal | None] = {}
        for field_name, keys in _LITELLM_FIELDS.items():
            present = next((k for k in keys if entry.get(k) is not None), None)
            if present is not None:
                values[field_name] = _price_value(entry[present], f"{key}.{present}")
        search = entry.get("search_context_cost_per_query")
        if isinstance(search, dict):
            for size in ("low", "medium", "high"):
                field = f"search_context_size_{size}"
                values[f"search_{size}"] = _price_value(search.get(field), f"{key}.{field}")
        values.update(_litellm_long_context(entry, key))
        price = Price(**values)
        if any(getattr(price, f.name) is not None for f in fields(Price)):
            prices[(kind, name)] = price
            if prefixed:
                from_prefixed_key.add((kind, name))
    return prices
