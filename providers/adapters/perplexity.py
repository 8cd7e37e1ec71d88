"""Perplexity: no account API, so neither sync nor a connection test."""

from __future__ import annotations

from typing import Any

from providers.adapters.base import ProviderAdapter
from providers.http import ProviderError
from providers.proxy.routes import Route

_CHAT = Route("POST", "chat/completions")


class PerplexityAdapter(ProviderAdapter):
    """Perplexity. Usage and cost arrive per request in ``usage.cost`` (§5), recorded by the proxy.

    The reference names no cheap authenticated endpoint (no usage, cost or model listing API);
    the only way to prove a key works would be a billed completion, so we refuse instead.
    """

    kind = "perplexity"
    secret_shapes = (r"\bpplx-[A-Za-z0-9_\-]{12,}",)
    label = "Perplexity"
    supports_sync = False
    default_base_url = "https://api.perplexity.ai"
    catalogue_name = "Perplexity"
    description = "No billing API: each response carries its own cost; tracked per request."
    base_url_setting = "PERPLEXITY_BASE_URL"
    chart_colour, chart_pattern = "#1c6f7a", "vertical"
    # Sonar at /chat/completions (no /v1) and the Agent API at /v1/responses. Its stream
    # carries usage unasked; stream_options is not documented there, so never added.
    proxy_routes = {
        "v1/chat/completions": _CHAT,
        "chat/completions": _CHAT,
        "v1/responses": Route("POST", "v1/responses"),
    }
    litellm_providers = ("perplexity",)
    otel_provider_names = ("perplexity",)
    litellm_key_prefixed = True

    def test_connection(self) -> str:
        # Reference: provider-apis.md §0, §5 (no account API)
        raise ProviderError("test not supported for Perplexity (no account API)", permanent=True)

    @classmethod
    def costing_from_price_book(cls, usage: Any, price: Any) -> Any:
        """Without its own ``usage.cost``: tokens plus the search fee. Sonar charges
        search_context_cost_per_query once per request (ref §5.3), deep research per query."""
        from usage.pricing import standard_costing

        return standard_costing(usage, price, search_per_request="deep-research" not in usage.model)
