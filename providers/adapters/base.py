"""What every provider adapter shares: the line it returns and the base class.

An adapter fetches and parses; it never touches the database. It returns :class:`UsageLine`
objects, one per UTC day × model × line item, money as ``Decimal``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from datetime import time as dtime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

import requests

from providers.http import (
    Budget,
    ErrorClass,
    JsonResponse,
    ProviderError,
    Sleep,
    get_json,
    get_response,
)
from providers.redaction import secrets_redacted

ZERO = Decimal(0)

# Numeric fields summed when several provider results collapse onto one line.
_SUMMED = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
    "request_count",
    "seats",
    "search_queries",
    "images",
    "audio_seconds",
    "credits",
)


@dataclass(frozen=True)
class UsageLine:
    """One UTC day × model × line item of usage and/or money.

    Field names match the usage record model. ``input_tokens`` is uncached input only;
    ``output_tokens`` includes reasoning. ``cost`` is USD, or None on token-only lines whose money
    arrives on separate cost lines. ``raw`` keeps the provider's result for audit.
    """

    day: date
    model: str
    line_item: str
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    request_count: int = 0
    seats: Decimal = ZERO
    search_queries: int = 0
    images: int = 0
    audio_seconds: Decimal = ZERO
    credits: Decimal = ZERO
    cost: Decimal | None = None
    currency: str = "USD"
    raw: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.line_item:
            raise ValueError("UsageLine.line_item must not be empty")


def jsonable(value: Any) -> Any:
    """Copy ``value`` with every Decimal turned into a string, so ``raw`` survives a JSONField."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def merge_lines(lines: Iterable[UsageLine]) -> list[UsageLine]:
    """Sum lines sharing (day, model, line_item), e.g. one result per workspace.

    The usage record is unique on that key, so duplicates would overwrite each other. Costs add
    up when present; a line stays unpriced (None) only if every part was.
    """
    merged: dict[tuple[date, str, str], UsageLine] = {}
    for line in lines:
        key = (line.day, line.model, line.line_item)
        prev = merged.get(key)
        if prev is None:
            merged[key] = line
            continue
        changes: dict[str, Any] = {f: getattr(prev, f) + getattr(line, f) for f in _SUMMED}
        if prev.cost is None and line.cost is None:
            changes["cost"] = None
        else:
            changes["cost"] = (prev.cost or ZERO) + (line.cost or ZERO)
        parts = prev.raw["merged"] if "merged" in prev.raw else [prev.raw]
        changes["raw"] = {"merged": [*parts, line.raw]}
        merged[key] = dataclasses.replace(prev, **changes)
    return sorted(merged.values(), key=lambda ln: (ln.day, ln.model, ln.line_item))


# --- shape checks: a provider changing its response must fail loudly, not record zeros ---


def shape_error(what: str, obj: Any) -> ProviderError:
    return ProviderError(
        f"unexpected response shape: {what}",
        body_excerpt=json.dumps(jsonable(obj), default=str),
        error_class=ErrorClass.MALFORMED,
    )


def get_list(obj: Mapping[str, Any], key: str) -> list[Any]:
    value = obj.get(key)
    if not isinstance(value, list):
        raise shape_error(f"{key!r} should be a list", obj)
    return value


def get_dict(obj: Any, key: str, *, required: bool = True) -> dict[str, Any]:
    value = obj.get(key) if isinstance(obj, Mapping) else None
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise shape_error(f"{key!r} should be an object", obj)
    return value


def get_int(obj: Mapping[str, Any], key: str, *, required: bool = False) -> int:
    """An integer count; missing or null is 0 unless ``required``."""
    value = obj.get(key)
    if value is None and not required:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise shape_error(f"{key!r} should be an integer", obj)
    if isinstance(value, Decimal):
        if value != value.to_integral_value():
            raise shape_error(f"{key!r} should be an integer", obj)
        return int(value)
    return value


def to_decimal(value: Any, what: str, obj: Any) -> Decimal:
    """Money or a quantity sent as a JSON number (already Decimal) or a numeric string."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise shape_error(f"{what} should be a number", obj)
    try:
        result = Decimal(str(value))
    except InvalidOperation as exc:
        raise shape_error(f"{what} should be a number", obj) from exc
    if not result.is_finite():
        raise shape_error(f"{what} should be a finite number", obj)
    return result


def get_str(obj: Mapping[str, Any], key: str) -> str:
    """An optional label; null or missing is ""."""
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise shape_error(f"{key!r} should be a string", obj)
    return value


@dataclass(frozen=True)
class Setting:
    """One non-secret setting an account of a provider has, declared by the provider's adapter.

    The account form, the API serializer, the admin and the service's validation are all derived
    from these declarations (providers/account_settings.py), so a provider's settings live in its
    adapter module alone. Values are stored in ``ProviderAccount.config`` under ``name``:
    ``str`` and ``bool`` as themselves, ``Decimal`` as a plain decimal string.
    """

    name: str
    type: type  # str, bool or Decimal
    label: str
    help_text: str = ""
    required: bool = False
    default: Any = None
    max_length: int = 200  # str only
    min_value: Decimal | None = None  # Decimal only
    max_value: Decimal | None = None  # Decimal only
    decimal_places: int = 6  # Decimal only


def utc_midnight(day: date) -> datetime:
    return datetime.combine(day, dtime.min, tzinfo=UTC)


def utc_today() -> date:
    return datetime.now(UTC).date()


class UsageFormat:
    """How a provider reports usage (ProviderAdapter.usage_format)."""

    CHAT = "chat"  # OpenAI-style usage (chat/completions, Responses, embeddings)
    MESSAGES = "messages"  # Messages-style: input excludes cache; usage in message_start/delta
    LOCAL = "local"  # a local server's final object (prompt_eval_count, eval_count, durations)


class ProviderAdapter:
    """Base class: holds the connection settings and the authenticated GET helper.

    Subclasses set ``kind``, ``label``, ``supports_sync`` and ``default_base_url``, provide
    ``_headers()`` and implement ``test_connection`` (and ``fetch_daily_usage`` if they sync).
    """

    kind: ClassVar[str] = ""
    label: ClassVar[str] = ""
    supports_sync: ClassVar[bool] = False
    default_base_url: ClassVar[str] = ""
    # A path prefix the adapter appends itself; stripped if a user pasted it into base_url.
    api_prefix: ClassVar[str] = ""
    # An interactive "test connection" should fail fast rather than back off for seconds.
    test_max_tries: ClassVar[int] = 2
    # The non-secret settings an account of this provider has (read from ``self.config``).
    settings: ClassVar[tuple[Setting, ...]] = ()
    # The calls that reach the provider: each runs with the account's secrets registered for
    # redaction, so any ProviderError raised inside (by the HTTP wrapper or a shape check)
    # carries no secret, whoever called the adapter.
    _redacted_methods: ClassVar[tuple[str, ...]] = ("test_connection", "fetch_daily_usage")

    # --- Catalogue facts (providers.catalogue.catalogue_sync writes them to Provider rows) ---
    catalogue_name: ClassVar[str] = ""  # the Provider row's name; the label when empty
    description: ClassVar[str] = ""
    # The Django setting holding the upstream base URL (the proxy and the adapter read it).
    base_url_setting: ClassVar[str] = ""
    # That setting's default when it differs from default_base_url.
    base_url_setting_default: ClassVar[str] = ""
    chart_colour: ClassVar[str] = "#2457d6"
    chart_pattern: ClassVar[str] = "none"

    # --- Accounts ---
    # The stored secret the official API and the connection test use ("admin_key",
    # "api_key"), or None when the provider needs none.
    secret_field: ClassVar[str | None] = "api_key"
    # What its admin key looks like, for the account form's help ("Acme sk-admin-…").
    admin_key_hint: ClassVar[str] = ""
    # Regular expressions matching its keys' shapes, so a key of it is redacted from any log
    # line or error text even when it is not the secret of the call at hand
    # (providers/redaction.py). Empty when its keys have no recognisable shape.
    secret_shapes: ClassVar[tuple[str, ...]] = ()

    # --- Proxy ---
    # Allow-listed client path -> Route (providers.proxy.routes.Route); empty: no proxy.
    proxy_routes: ClassVar[Mapping[str, Any]] = {}
    # False when the upstream takes calls without a key (a local server). With secret_field
    # "api_key" that key is then optional: sent when stored (see api_key_optional).
    proxy_needs_key: ClassVar[bool] = True
    # Response header name prefixes of this provider the proxy hands back (rate limits, ids).
    proxy_returned_header_prefixes: ClassVar[tuple[str, ...]] = ()
    # Request headers of this provider's API a client may pass on (versions, betas, org ids).
    proxy_forwarded_headers: ClassVar[tuple[str, ...]] = ()
    # Where else this provider's clients put their key (its SDKs' own header, a query
    # parameter): the proxy takes the ingest key from there too. The query parameter is taken
    # out of every forwarded query string, whatever authenticated the call: it is ours.
    proxy_key_headers: ClassVar[tuple[str, ...]] = ()
    proxy_key_query_param: ClassVar[str] = ""

    @classmethod
    def proxy_error_body(cls, kind: str, message: str) -> dict:
        """A refusal of the proxy's own (a budget spent, a rate limit) shaped as this
        provider's errors, so its SDK raises its usual error class with our message. The
        OpenAI shape; providers whose SDKs read another override it."""
        return {"error": {"message": message, "type": kind, "param": None, "code": kind}}

    # --- Usage extraction and pricing ---
    # How usage reads from a response body or stream: one of UsageFormat's values.
    usage_format: ClassVar[str] = "chat"
    # Where else a body may carry an OpenAI-style usage object, as "key.subkey" paths (a
    # stream's final chunk); read only when it holds prompt/completion token counts.
    usage_envelope_paths: ClassVar[tuple[str, ...]] = ()
    # Top-level keys under which this provider's own response shape carries its usage (read
    # by usage_from_final_object): a stream event holding one replaces the usage kept so far,
    # and that object alone is kept for audit.
    usage_object_keys: ClassVar[tuple[str, ...]] = ()
    # LiteLLM ``litellm_provider`` values whose prices are this provider's.
    litellm_providers: ClassVar[tuple[str, ...]] = ()
    # LiteLLM keys this provider's models as "<kind>/<model>" (stripped once on import).
    litellm_key_prefixed: ClassVar[bool] = False
    # OpenTelemetry `gen_ai.provider.name` (and older `gen_ai.system`) values that name this
    # provider: spans saying so may be ingested with an ingest key of its accounts (usage.otlp).
    otel_provider_names: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def api_key_optional(cls) -> bool:
        """An API key the upstream may or may not want (a self-hosted server with or without
        one): the proxy and the connection test send it when one is stored, and go without."""
        return cls.secret_field == "api_key" and not cls.proxy_needs_key

    @classmethod
    def proxy_auth_headers(cls, headers: dict[str, str], provider_key: str) -> None:
        """Put the provider key where the upstream expects it (Bearer by default)."""
        if provider_key:
            headers["Authorization"] = f"Bearer {provider_key}"

    @classmethod
    def usage_from_final_object(cls, body: dict) -> Any | None:
        """A RequestUsage when ``body`` is the provider's own final object rather than an
        envelope with a ``usage`` object (usage.extraction.extract_usage asks first)."""
        return None

    @classmethod
    def fill_usage(cls, result: Any, usage: dict, path: str) -> None:
        """Read a response's ``usage`` object (at ``path``, for errors) into ``result``, a
        RequestUsage. Default: the OpenAI-compatible shapes."""
        from usage.extraction.parsing import fill_openai_style

        fill_openai_style(result, usage, path)

    @classmethod
    def rate_limit_reading(cls, headers: Mapping[str, str], *, now: datetime) -> Any | None:
        """What a proxied response's headers say about this provider's rate limits: a
        providers.ratelimits.readings.RateLimitReading, or None when they say nothing.

        Never raises; a malformed value is read as absent. The default reads only the standard
        ``retry-after`` of a 429; providers that send their limits override this.
        """
        from providers.ratelimits.readings import RateLimitReading, lowered, retry_at

        reading = RateLimitReading(retry_at=retry_at(lowered(headers), now=now))
        return None if reading.empty else reading

    @classmethod
    def price(
        cls,
        usage: Any,
        price: Any,
        *,
        compute_rate_per_hour: Decimal | None = None,
        account_config: Mapping[str, Any] | None = None,
    ) -> Decimal | None:
        """USD cost of one request (usage.pricing.RequestUsage × Price); None = unpriced.

        The total of :meth:`costing`, which providers with their own rules override.
        """
        return cls.costing(
            usage, price, compute_rate_per_hour=compute_rate_per_hour, account_config=account_config
        ).total

    @classmethod
    def costing(
        cls,
        usage: Any,
        price: Any,
        *,
        compute_rate_per_hour: Decimal | None = None,
        account_config: Mapping[str, Any] | None = None,
    ) -> Any:
        """The itemised cost of one request (a usage.pricing.Costing): what is summed for the
        cost and shown to explain it.

        The provider's own cost figure, when its response carries one (Perplexity, OpenRouter,
        xAI), beats any price book. Otherwise the price book prices it
        (:meth:`costing_from_price_book`); without a price row it is unpriced. Providers with
        other rules (a local compute rate, an account setting: ``account_config`` is the
        account's stored settings) override this.
        """
        from usage.pricing import Costing, CostLine, Rule, standard_costing

        if usage.provider_cost is not None:
            own = usage.provider_cost
            return Costing(Rule.PROVIDER_COST, (CostLine("provider_cost", 1, own, own),))
        if price is None:
            return standard_costing(usage, None)
        return cls.costing_from_price_book(usage, price)

    @classmethod
    def costing_from_price_book(cls, usage: Any, price: Any) -> Any:
        """The default: each token category × its price (the long-context tier's rates when
        the prompt is past it), plus request fees, searches (per query), images and audio
        seconds."""
        from usage.pricing import standard_costing

        return standard_costing(usage, price)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The cost is the total of costing(): an override of price() would be bypassed by the
        # cost explanation, so refuse it.
        if "price" in cls.__dict__:
            raise TypeError(f"{cls.__name__}: override costing() rather than price()")
        for name in cls._redacted_methods:
            if name in cls.__dict__:
                setattr(cls, name, _with_secrets_redacted(cls.__dict__[name]))

    def __init__(
        self,
        *,
        base_url: str,
        secret: str,
        config: dict[str, Any],
        session: requests.Session | None = None,
        sleep: Sleep = time.sleep,
        budget: Budget | None = None,
        other_secrets: Iterable[str] = (),
    ) -> None:
        url = (base_url or self.default_base_url).rstrip("/")
        if self.api_prefix and url.endswith(self.api_prefix):
            url = url[: -len(self.api_prefix)]
        self.base_url = url
        self.secret = secret
        self.config = dict(config or {})
        self.session = session or requests.Session()
        self.sleep = sleep
        self.budget = budget
        # Every secret of the account, not only the one this adapter sends.
        self.secrets = tuple(s for s in (secret, *other_secrets) if s)

    def __repr__(self) -> str:
        # Never show the secret.
        return f"<{type(self).__name__} {self.base_url}>"

    def _headers(self) -> dict[str, str]:
        return {}

    def _get(
        self, path: str, *, params: Mapping[str, Any] | None = None, max_tries: int = 4
    ) -> dict[str, Any]:
        return get_json(
            self.session,
            self.base_url + path,
            headers=self._headers(),
            params=params,
            max_tries=max_tries,
            sleep=self.sleep,
            budget=self.budget,
        )

    def _get_response(
        self, path: str, *, params: Mapping[str, Any] | None = None, max_tries: int = 4
    ) -> JsonResponse:
        return get_response(
            self.session,
            self.base_url + path,
            headers=self._headers(),
            params=params,
            max_tries=max_tries,
            sleep=self.sleep,
            budget=self.budget,
        )

    def test_connection(self) -> str:
        """Make one cheap authenticated call; return a message or raise ProviderError."""
        raise NotImplementedError

    def fetch_daily_usage(self, *, start: date, end: date) -> list[UsageLine]:
        """Return usage lines for UTC days ``start`` (inclusive) to ``end`` (exclusive)."""
        raise NotImplementedError(f"{self.label or type(self).__name__} does not sync usage")


def _with_secrets_redacted(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: ProviderAdapter, *args: Any, **kwargs: Any) -> Any:
        with secrets_redacted(self.secrets):
            return method(self, *args, **kwargs)

    return wrapper
