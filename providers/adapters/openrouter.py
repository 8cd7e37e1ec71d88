"""OpenRouter: one OpenAI-shaped API in front of many vendors; each response carries its cost."""

from __future__ import annotations

from providers.adapters.base import ProviderAdapter, get_dict, get_str, to_decimal
from providers.proxy.routes import Route
from providers.redaction import redact

_PREFIX = "api/v1/"


class OpenRouterAdapter(ProviderAdapter):
    """OpenRouter (providers-more.md §5). Usage is recorded per request (proxy or ingestion API).

    Model names are ``vendor/model`` (``anthropic/claude-sonnet-4.5``) and are recorded exactly
    as the response (or, failing that, the request) names them: they are OpenRouter's models,
    never turned into another provider's name.

    Cost: ``usage.cost`` (credits; 1 credit = 1 USD) is what OpenRouter charged, and when present
    it IS the cost (read into ``provider_cost``, which beats any price book: the base adapter's
    rule). Usage accounting is always on, so every response and the last SSE chunk of every
    stream carry it. For BYOK calls ``cost`` is OpenRouter's own charge; the upstream's
    ``cost_details.upstream_inference_cost`` is billed on the user's own vendor account (kept
    in the record's raw usage, not added, so it is not counted twice). Without ``usage.cost``
    a call is priced from the price book by its full ``vendor/model`` name if an operator added
    a price for it, and is otherwise unpriced (None), never $0. The shipped LiteLLM snapshot has
    no ``openrouter`` entries; a full LiteLLM file keys them ``openrouter/<vendor>/<model>``,
    which ``litellm_key_prefixed`` turns into the ``vendor/model`` name.

    Cached input (``prompt_tokens_details.cached_tokens``), cache writes (``cache_write_tokens``)
    and reasoning (``completion_tokens_details.reasoning_tokens``) are recorded as counts even
    when the cost comes from ``usage.cost``.
    """

    kind = "openrouter"
    secret_shapes = (r"\bsk-or-v1-[A-Za-z0-9]{16,}",)
    label = "OpenRouter"
    supports_sync = False
    default_base_url = "https://openrouter.ai"
    api_prefix = "/api/v1"
    catalogue_name = "OpenRouter"
    description = "Each response carries its own cost in credits (USD); tracked per request."
    base_url_setting = "OPENROUTER_BASE_URL"
    chart_colour, chart_pattern = "#475569", "dots"
    # Clients use base URL {proxy}/proxy/openrouter/api/v1, as with OpenRouter itself. Usage
    # comes unasked in the last chunk (stream_options is deprecated there and has no effect),
    # so the proxy leaves the client's body as it is.
    proxy_routes = {
        f"{_PREFIX}chat/completions": Route("POST", f"{_PREFIX}chat/completions"),
        f"{_PREFIX}completions": Route("POST", f"{_PREFIX}completions"),
        f"{_PREFIX}models": Route("GET", f"{_PREFIX}models", records=False),
    }
    # Its app attribution headers (optional; they credit the calling app on OpenRouter).
    proxy_forwarded_headers = ("http-referer", "x-title")
    litellm_providers = ("openrouter",)
    otel_provider_names = ("openrouter",)
    litellm_key_prefixed = True

    def _headers(self) -> dict[str, str]:
        # Reference: providers-more.md §0, §5 (Authorization: Bearer sk-or-v1-…)
        return {"Authorization": f"Bearer {self.secret}"}

    def test_connection(self) -> str:
        # Reference: providers-more.md §5 (GET /api/v1/key, any key: label, limit, usage)
        data = get_dict(self._get("/api/v1/key", max_tries=self.test_max_tries), "data")
        details = []
        # The label is the key's name, or a masked preview of it: never shown whole.
        if label := redact(get_str(data, "label"), self.secrets):
            details.append(f'key "{label}"')
        # Figures are JSON numbers parsed as Decimal: shown as sent, never through a float.
        limit = data.get("limit")
        if limit is None:
            details.append("no credit limit")
        else:
            details.append(f"limit ${to_decimal(limit, 'limit', data)}")
            if data.get("limit_remaining") is not None:
                remaining = to_decimal(data["limit_remaining"], "limit_remaining", data)
                details.append(f"${remaining} left")
        if data.get("usage") is not None:
            details.append(f"${to_decimal(data['usage'], 'usage', data)} used")
        return f"Connected to OpenRouter ({', '.join(details)})"
