"""Normalise one provider response body (or its `usage` object) into a RequestUsage.

Facts and field names: `shared/reference/provider-apis.md` sections 4-8 and the table in §10.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any

from providers.adapters.base import UsageFormat
from providers.registry import ADAPTERS, get_adapter_class

SEARCH_CONTEXT_SIZES = ("low", "medium", "high")

# Keys only our own normalised form uses; provider usage objects never carry them, so their
# presence tells a normalised dict apart from an OpenAI Responses or Anthropic usage object.
_NORMALISED_ONLY = frozenset(
    {
        "cache_read_tokens",
        "cache_write_tokens",
        "cache_write_1h_tokens",
        "request_count",
        "search_queries",
        "images",
        "audio_seconds",
        "total_duration_ns",
    }
)
_ENVELOPE_KEYS = frozenset({"usage", "choices", "object", "type", "done"})
_TOKEN_KEYS = frozenset({"prompt_tokens", "completion_tokens", "input_tokens", "output_tokens"})


@dataclass
class RequestUsage:
    """Normalised usage of one request (or of a stream so far)."""

    model: str = ""
    response_id: str = ""
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    request_count: int = 1
    search_queries: int = 0
    images: int = 0
    audio_seconds: Decimal = Decimal(0)
    total_duration_ns: int = 0
    provider_cost: Decimal | None = None
    search_context_size: str | None = None
    found: bool = False


def _decimal(value: Any, field: str) -> Decimal:
    """A finite, non-negative Decimal from int/Decimal/str (float via its repr, never binary)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise ValueError(f"{field}: expected a number, got {value!r}")
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{field}: expected a number, got {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"{field}: expected a finite number, got {value!r}")
    if number < 0:
        raise ValueError(f"{field}: must not be negative, got {value!r}")
    return number


def _count(value: Any, field: str) -> int:
    """A non-negative whole count; None (JSON null) and a missing field both mean 0."""
    if value is None:
        return 0
    if type(value) is int and value >= 0:  # nearly always: skip the Decimal round trip
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        number = Decimal(value)
    else:
        number = _decimal(value, field)
    if number < 0:
        raise ValueError(f"{field}: must not be negative, got {value!r}")
    if number != number.to_integral_value():
        raise ValueError(f"{field}: expected a whole number, got {value!r}")
    return int(number)


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


# For adapters reading their own usage shapes: the same field checks and error paths.
count_of = _count
dict_of = _dict


def _size(value: Any) -> str | None:
    text = value.strip().lower() if isinstance(value, str) else None
    return text if text in SEARCH_CONTEXT_SIZES else None


def usage_format(kind: str) -> str:
    """How the provider reports usage (its adapter's ``usage_format``); ValueError if unknown."""
    if kind not in ADAPTERS:
        raise ValueError(f"kind: unknown provider kind {kind!r}")
    return get_adapter_class(kind).usage_format


@cache
def usage_envelope_paths() -> tuple[str, ...]:
    """Every provider's extra usage locations ("key.subkey"), in registry order."""
    paths = (path for kind in ADAPTERS for path in get_adapter_class(kind).usage_envelope_paths)
    return tuple(dict.fromkeys(paths))


@cache
def envelope_keys() -> frozenset[str]:
    """Top-level keys of those locations: a body with one is a provider's, not our own form."""
    return frozenset(path.partition(".")[0] for path in usage_envelope_paths())


def _unwrap(kind: str, body: dict) -> dict:
    """Step from a stream event or wrapper to the object that carries `usage`."""
    event = body.get("type")
    messages = usage_format(kind) == UsageFormat.MESSAGES
    if messages and event == "message_start" and isinstance(body.get("message"), dict):
        return body["message"]
    if isinstance(event, str) and event.startswith("response.") and "response" in body:
        return _dict(body["response"])  # OpenAI Responses streaming event
    return body


def _usage_object(body: dict) -> tuple[dict | None, str]:
    """The usage dict inside a response body (and its path, for errors); None if none (yet)."""
    usage = body.get("usage")
    if isinstance(usage, dict):
        return usage, "usage"
    # Envelopes providers declare (usage_envelope_paths), e.g. a stream's final chunk.
    for path in usage_envelope_paths():
        key, _, sub = path.partition(".")
        inner = _dict(_dict(body.get(key)).get(sub))
        if "prompt_tokens" in inner or "completion_tokens" in inner:
            return inner, path
    if _TOKEN_KEYS & body.keys():  # the body is a bare usage object
        return body, "usage"
    return None, "usage"


def carries_usage(kind: str, body: dict) -> bool:
    """Whether a response body or stream event holds usage: a `usage` object, a declared
    envelope, or one of the provider's own usage_object_keys."""
    if _usage_object(body)[0] is not None:
        return True
    return any(isinstance(body.get(key), dict) for key in _usage_object_keys(kind))


def usage_raw(kind: str, body: dict) -> dict | None:
    """The usage object of a response body as the provider sent it (kept for audit)."""
    usage = body.get("usage")
    if isinstance(usage, dict):
        return usage
    for key in _usage_object_keys(kind):
        if isinstance(body.get(key), dict):
            return body[key]
    return None


def last_usage_body(kind: str, items: list) -> dict | None:
    """A stream sent whole as one JSON array of events: the last one carrying usage (counts
    in a stream are cumulative), or None."""
    return next(
        (item for item in reversed(items) if isinstance(item, dict) and carries_usage(kind, item)),
        None,
    )


def _usage_object_keys(kind: str) -> tuple[str, ...]:
    return get_adapter_class(kind).usage_object_keys if kind in ADAPTERS else ()


def extract_usage(kind: str, body: dict) -> RequestUsage:
    """Normalise one provider response body, its bare `usage` object, or our own counts.

    Raises ValueError naming the field when a count is negative or not a number.
    """
    usage_format(kind)  # ValueError for an unknown kind
    if not isinstance(body, dict):
        raise ValueError(f"body: expected a JSON object, got {type(body).__name__}")
    # A response body can share a name with our fields (Perplexity's top-level "images" list
    # of search images), so a body with a provider's usage/choices is never our own form.
    envelopes = _ENVELOPE_KEYS | envelope_keys()
    if _NORMALISED_ONLY & body.keys() and not envelopes & body.keys():
        return _from_normalised(body)
    body = _unwrap(kind, body)
    adapter = get_adapter_class(kind)
    final = adapter.usage_from_final_object(body)
    if final is not None:  # a provider's own final object rather than a usage envelope
        return final
    usage, path = _usage_object(body)
    result = RequestUsage(model=str(body.get("model") or ""), response_id=str(body.get("id") or ""))
    if usage is None:
        return result
    adapter.fill_usage(result, usage, path)
    result.found = True
    return result


def fill_openai_style(result: RequestUsage, usage: dict, path: str) -> None:
    """OpenAI chat/completions/embeddings/Responses shapes, also Groq, Perplexity, Copilot.

    OpenAI counts cached input INSIDE prompt_tokens/input_tokens, so uncached input is
    prompt - cached - cache_write (ref §6, §10).
    """
    if "prompt_tokens" in usage or "completion_tokens" in usage:
        names = ("prompt_tokens", "prompt_tokens_details", "completion_tokens")
        out_details_name = "completion_tokens_details"
    else:  # Responses API, and Perplexity's Agent API which copies its shape
        names = ("input_tokens", "input_tokens_details", "output_tokens")
        out_details_name = "output_tokens_details"
    total_name, details_name, output_name = names
    details = _dict(usage.get(details_name))
    total_in = _count(usage.get(total_name), f"{path}.{total_name}")
    # Perplexity's Agent API names them cache_read/cache_creation_input_tokens; its example's
    # input_cost (806 × $3/M for input 1830 with 1024 cached) shows they are included too.
    read_key = "cached_tokens" if "cached_tokens" in details else "cache_read_input_tokens"
    write_key = (
        "cache_write_tokens" if "cache_write_tokens" in details else "cache_creation_input_tokens"
    )
    cached = _count(details.get(read_key), f"{path}.{details_name}.{read_key}")
    written = _count(details.get(write_key), f"{path}.{details_name}.{write_key}")
    if cached + written > total_in:
        raise ValueError(
            f"{path}.{total_name}: {total_in} is less than cached + cache-write tokens"
        )
    result.input_tokens = total_in - cached - written
    result.cache_read_tokens = cached
    result.cache_write_tokens = written

    out_path = f"{path}.{out_details_name}.reasoning_tokens"
    reasoning = _count(_dict(usage.get(out_details_name)).get("reasoning_tokens"), out_path)
    if not reasoning:  # Perplexity reports reasoning_tokens at the top of usage
        reasoning = _count(usage.get("reasoning_tokens"), f"{path}.reasoning_tokens")
    output = _count(usage.get(output_name), f"{path}.{output_name}")
    # Reasoning is part of output everywhere (ref §10). A provider reporting more reasoning than
    # output must have counted it apart (UNCONFIRMED for Perplexity deep research): add it.
    result.output_tokens = output if reasoning <= output else output + reasoning
    result.reasoning_tokens = reasoning

    result.search_queries = _count(usage.get("num_search_queries"), f"{path}.num_search_queries")
    web_search = _dict(_dict(usage.get("tool_calls_details")).get("web_search"))
    if not result.search_queries and "invocation" in web_search:
        field = f"{path}.tool_calls_details.web_search.invocation"
        result.search_queries = _count(web_search["invocation"], field)
    result.search_context_size = _size(usage.get("search_context_size"))
    cost = usage.get("cost")
    if isinstance(cost, dict) and cost.get("total_cost") is not None:
        result.provider_cost = _decimal(cost["total_cost"], f"{path}.cost.total_cost")
    elif cost is not None and not isinstance(cost, dict):
        result.provider_cost = _decimal(cost, f"{path}.cost")


def _from_normalised(body: dict) -> RequestUsage:
    """Counts already in our field names (e.g. from a client SDK hook or a test)."""
    counts = {
        name: _count(body.get(name), name)
        for name in (
            "input_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "cache_write_1h_tokens",
            "output_tokens",
            "reasoning_tokens",
            "search_queries",
            "images",
            "total_duration_ns",
        )
    }
    if counts["reasoning_tokens"] > counts["output_tokens"]:
        raise ValueError("reasoning_tokens: must not exceed output_tokens (it is part of output)")
    requests = body.get("request_count")
    provider_cost = body.get("provider_cost")
    audio = body.get("audio_seconds")
    return RequestUsage(
        model=str(body.get("model") or ""),
        response_id=str(body.get("response_id") or ""),
        request_count=1 if requests is None else _count(requests, "request_count"),
        audio_seconds=Decimal(0) if audio is None else _decimal(audio, "audio_seconds"),
        provider_cost=None if provider_cost is None else _decimal(provider_cost, "provider_cost"),
        search_context_size=_size(body.get("search_context_size")),
        found=True,
        **counts,
    )
