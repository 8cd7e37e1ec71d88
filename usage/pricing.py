"""Pure cost rules: one RequestUsage × one Price -> USD, plus LiteLLM price-table import.

No database here; the price book model stores `Price` fields and calls these functions.
A cost of None means UNPRICED (unknown), never zero; Decimal("0") is a real price (Ollama).
Facts: `shared/reference/provider-apis.md` sections 5.3, 8, 9 and 10.
"""

from __future__ import annotations

import re
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


def _token_lines(usage: RequestUsage, price: Price) -> list[Decimal | None]:
    # An absent cache price falls back to the input price (and a 1-hour write to the 5-minute
    # write price) - LiteLLM 1.109.1 does the same in _get_token_base_cost: "a provider that
    # publishes no cache price bills cached tokens as ordinary input". An explicit 0 stays 0.
    cache_read = _first(price.cache_read_per_token, price.input_per_token)
    cache_write = _first(price.cache_write_per_token, price.input_per_token)
    cache_write_1h = _first(price.cache_write_1h_per_token, cache_write)
    lines = [
        _line(usage.input_tokens, price.input_per_token),
        _line(usage.cache_read_tokens, cache_read),
        _line(usage.cache_write_tokens, cache_write),
        _line(usage.cache_write_1h_tokens, cache_write_1h),
    ]
    if price.reasoning_per_token is not None and usage.reasoning_tokens:
        # Reasoning is inside output_tokens: take it out before pricing the rest as output.
        reasoning = min(usage.reasoning_tokens, usage.output_tokens)
        lines.append(_line(usage.output_tokens - reasoning, price.output_per_token))
        lines.append(_line(reasoning, price.reasoning_per_token))
    else:
        lines.append(_line(usage.output_tokens, price.output_per_token))
    return lines


def cost_for(
    kind: str,
    usage: RequestUsage,
    price: Price | None,
    *,
    compute_rate_per_hour: Decimal | None = None,
) -> Decimal | None:
    """USD cost of one request, or None when it cannot be priced (never a made-up 0).

    The provider's adapter decides (``ProviderAdapter.price``): by default
    :func:`standard_cost`; a provider with its own rules (its own cost figure, a local compute
    rate, premium requests) overrides it. `compute_rate_per_hour` is a user's hardware/energy
    rate for local providers.
    """
    from providers.registry import ADAPTERS, get_adapter_class

    if kind not in ADAPTERS:
        return None if price is None else standard_cost(usage, price)
    return get_adapter_class(kind).price(usage, price, compute_rate_per_hour=compute_rate_per_hour)


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


def litellm_to_prices(data: dict) -> dict[tuple[str, str], Price]:
    """Map LiteLLM's model_prices_and_context_window.json (parsed with parse_float=Decimal)
    to {(kind, model name): Price} for our providers; entries with no price at all are skipped.
    """
    prices: dict[tuple[str, str], Price] = {}
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
        if kind in key_prefixed and name.startswith(f"{kind}/"):
            name = name[len(kind) + 1 :]
        values: dict[str, Decimal | None] = {}
        for field_name, keys in _LITELLM_FIELDS.items():
            present = next((k for k in keys if entry.get(k) is not None), None)
            if present is not None:
                values[field_name] = _price_value(entry[present], f"{key}.{present}")
        search = entry.get("search_context_cost_per_query")
        if isinstance(search, dict):
            for size in ("low", "medium", "high"):
                field = f"search_context_size_{size}"
                values[f"search_{size}"] = _price_value(search.get(field), f"{key}.{field}")
        price = Price(**values)
        if any(getattr(price, f.name) is not None for f in fields(Price)):
            prices[(kind, name)] = price
    return prices
