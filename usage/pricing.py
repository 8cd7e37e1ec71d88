"""Pure cost rules: one RequestUsage × one Price -> USD, plus LiteLLM price-table import.

No database here; the price book model stores `Price` fields and calls these functions.
A cost of None means UNPRICED (unknown), never zero; Decimal("0") is a real price (Ollama).
Facts: `shared/reference/provider-apis.md` sections 5.3, 8, 9 and 10.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

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
_NO_PRICE = Price()  # every category without a price: what a request without a price row gets


class CostLine(NamedTuple):
    """One billed category of a request: count × unit_price = amount.

    A cost is the sum of its lines' amounts (:func:`lines_total`) and an explanation shows the
    same lines, so what is shown is what was added up. unit_price None: the category was
    counted but has no price, which makes the whole request unpriced. `category` is one of
    CATEGORIES.
    """

    category: str
    count: int | Decimal
    unit_price: Decimal | None
    amount: Decimal | None


# Every category a line can have; token categories are priced per token (shown per million).
TOKEN_CATEGORIES = (
    "input",
    "cache_read",
    "cache_write",
    "cache_write_1h",
    "output",
    "output_excl_reasoning",
    "reasoning",
)
CATEGORIES = (
    *TOKEN_CATEGORIES,
    "request_fee",
    "search",  # per search query
    "search_per_request",  # a search fee charged once per request (Perplexity Sonar)
    "image",
    "audio_second",
    "provider_cost",  # the provider's own cost figure for the request
    "compute_time",  # a local model's run time × the account's compute rate per hour
    "premium_request",  # a request billed at a per-request price, not by tokens
)


class Rule:
    """How a request's cost was arrived at (Costing.rule)."""

    PRICE_BOOK = "price_book"  # price book row × usage categories
    NO_PRICE = "no_price"  # no price row for the model at the request's time: unpriced
    PROVIDER_COST = "provider_cost"  # the provider's own figure in its response
    FREE = "free"  # $0 by the provider's rule (a local model, an endpoint marked free)
    COMPUTE_RATE = "compute_rate"  # run time × the account's compute rate
    PER_REQUEST = "per_request"  # request count × the price row's per-request price


class Costing(NamedTuple):
    """A request's cost as its itemised lines, and the rule that produced them.

    `total` is the cost: the sum of the lines' amounts, None (unpriced) when a line has no
    price or no price row applied. `long_context`: the price row's long-context tier applied.
    Built on every priced request: keep it cheap (tuples, no formatting here).
    """

    rule: str
    lines: tuple[CostLine, ...] | list[CostLine] = ()
    long_context: bool = False
    note: str = ""  # the provider's rule in a sentence, where the rule alone does not say it

    @property
    def total(self) -> Decimal | None:
        if self.rule == Rule.NO_PRICE:
            return None
        return lines_total(self.lines)


def lines_total(lines: Iterable[CostLine]) -> Decimal | None:
    """The sum of the lines' amounts; None if any counted category has no price."""
    total = Decimal(0)
    for line in lines:
        if line.amount is None:
            return None
        total += line.amount
    return total


def _add(
    lines: list[CostLine], category: str, count: int | Decimal, unit_price: Decimal | None
) -> None:
    """count × price as a line; a zero count costs nothing even unpriced, so it adds no line."""
    if count:
        amount = None if unit_price is None else count * unit_price
        lines.append(CostLine(category, count, unit_price, amount))


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


def _token_lines(usage: RequestUsage, price: Price, lines: list[CostLine]) -> bool:
    """Append the token categories' lines; returns whether the long-context tier applied."""
    input_rate = price.input_per_token
    cache_read = price.cache_read_per_token
    cache_write = price.cache_write_per_token
    cache_write_1h = price.cache_write_1h_per_token
    output_rate = price.output_per_token
    long_context = _long_context(usage, price)
    if long_context:
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
    _add(lines, "input", usage.input_tokens, input_rate)
    _add(lines, "cache_read", usage.cache_read_tokens, cache_read)
    _add(lines, "cache_write", usage.cache_write_tokens, cache_write)
    _add(lines, "cache_write_1h", usage.cache_write_1h_tokens, cache_write_1h)
    if price.reasoning_per_token is not None and usage.reasoning_tokens:
        # Reasoning is inside output_tokens: take it out before pricing the rest as output.
        reasoning = min(usage.reasoning_tokens, usage.output_tokens)
        # LiteLLM has no long-context reasoning rate: reasoning priced apart keeps its rate.
        _add(lines, "output_excl_reasoning", usage.output_tokens - reasoning, output_rate)
        _add(lines, "reasoning", reasoning, price.reasoning_per_token)
    else:
        _add(lines, "output", usage.output_tokens, output_rate)
    return long_context


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
    return costing_for(
        kind,
        usage,
        price,
        compute_rate_per_hour=compute_rate_per_hour,
        account_config=account_config,
    ).total


def costing_for(
    kind: str,
    usage: RequestUsage,
    price: Price | None,
    *,
    compute_rate_per_hour: Decimal | None = None,
    account_config: Mapping[str, Any] | None = None,
) -> Costing:
    """The itemised cost of one request (see :func:`cost_for`): its lines and rule."""
    from providers.registry import ADAPTERS, get_adapter_class

    if kind not in ADAPTERS:
        return standard_costing(usage, price)
    return get_adapter_class(kind).costing(
        usage, price, compute_rate_per_hour=compute_rate_per_hour, account_config=account_config
    )


def standard_costing(
    usage: RequestUsage, price: Price | None, *, search_per_request: bool = False
) -> Costing:
    """Each category × its price; reasoning apart only when reasoning_per_token is set;
    per_request, searches, images and audio seconds on top. Unpriced if a counted category has
    no price. `search_per_request`: the search fee is charged once per request, not per query.
    Without a price row: Rule.NO_PRICE, with the counted categories' lines (no unit prices).
    """
    rule = Rule.PRICE_BOOK
    if price is None:
        rule, price = Rule.NO_PRICE, _NO_PRICE
    lines: list[CostLine] = []
    long_context = _token_lines(usage, price, lines)
    if price.per_request is not None:
        # A request fee is an optional surcharge: absent means the model has none, so
        # request_count alone never makes a request unpriced.
        _add(lines, "request_fee", usage.request_count, price.per_request)
    search_price = _search_price(usage, price)
    if search_per_request:
        if search_price is not None:
            _add(lines, "search_per_request", usage.request_count, search_price)
    else:
        _add(lines, "search", usage.search_queries, search_price)
    _add(lines, "image", usage.images, price.per_image)
    _add(lines, "audio_second", usage.audio_seconds, price.per_audio_second)
    return Costing(rule, lines, long_context)


def standard_cost(
    usage: RequestUsage, price: Price, *, search_per_request: bool = False
) -> Decimal | None:
    """The total of :func:`standard_costing`: USD, None if a counted category has no price."""
    return standard_costing(usage, price, search_per_request=search_per_request).total


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
