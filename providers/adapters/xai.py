"""xAI (Grok): connection test only; each response carries its own billed cost."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

from providers.adapters.base import ProviderAdapter, get_list
from providers.proxy.routes import Route

# usage.cost_in_usd_ticks: 1 USD = 10^10 ticks (providers-more.md §4).
TICKS_PER_USD = Decimal(10) ** 10


class XAIAdapter(ProviderAdapter):
    """xAI's OpenAI-shaped API (providers-more.md §4). Usage is recorded per request (proxy or
    ingestion API); no usage or billing API is known (UNCONFIRMED), so nothing syncs.

    Every response's ``usage.cost_in_usd_ticks`` is the amount xAI bills (after caching
    discounts, with server-side tool costs), so it is the request's cost; the price book is
    only the fallback for a body without it.
    """

    kind = "xai"
    secret_shapes = (r"\bxai-[A-Za-z0-9_\-]{12,}",)
    label = "xAI (Grok)"
    supports_sync = False
    default_base_url = "https://api.x.ai"
    api_prefix = "/v1"
    catalogue_name = "xAI (Grok)"
    description = "No billing API: each response carries its own cost; tracked per request."
    base_url_setting = "XAI_BASE_URL"
    chart_colour, chart_pattern = "#1f2937", "cross"
    # Chat completions (xAI calls it legacy) and the recommended Responses API (§4). Whether
    # a chat stream reports usage unasked is UNCONFIRMED; xAI accepts stream_options (live
    # calls with include_usage in BerriAI/litellm#39441), so the proxy asks, as for OpenAI.
    # Its usage chunk may come before a last chunk without usage (litellm#17136): the stream
    # reader keeps the last chunk that had usage.
    proxy_routes = {
        "v1/chat/completions": Route("POST", "v1/chat/completions", include_usage=True),
        "v1/responses": Route("POST", "v1/responses"),
        "v1/models": Route("GET", "v1/models", records=False),
    }
    litellm_providers = ("xai",)
    otel_provider_names = ("x_ai", "xai")
    litellm_key_prefixed = True

    @classmethod
    def fill_usage(cls, result: Any, usage: dict, path: str) -> None:
        """OpenAI-style counts (chat or Responses), plus xAI's own billed cost.

        Cached tokens are inside prompt_tokens (§4). Whether reasoning_tokens is inside
        completion_tokens is UNCONFIRMED; fill_openai_style counts reasoning larger than the
        output as reported apart and adds it. The ticks are an integer, so the dollar figure
        is exact: ticks / 10^10 in Decimal, never through a float.
        """
        from usage.extraction.parsing import count_of, fill_openai_style

        fill_openai_style(result, usage, path)
        ticks = usage.get("cost_in_usd_ticks")
        if ticks is not None:
            result.provider_cost = count_of(ticks, f"{path}.cost_in_usd_ticks") / TICKS_PER_USD

    @classmethod
    def costing_from_price_book(cls, usage: Any, price: Any) -> Any:
        """Without ticks: the standard rule, but the long-context tier starts AT its threshold.

        The snapshot's xai/ entries carry "_above_200k_tokens" rates, and LiteLLM 1.109.1 (where
        they come from) bills xAI's tier from the threshold itself (>=, its
        _INCLUSIVE_THRESHOLD_PROVIDERS in llm_cost_calc/utils.py) where every other provider's
        starts above it. A prompt of exactly 200,000 tokens is therefore long here.
        """
        from usage.pricing import standard_costing

        if price.long_context_threshold:
            # prompt > threshold - 1 is prompt >= threshold for whole token counts.
            threshold = price.long_context_threshold - 1
            price = dataclasses.replace(price, long_context_threshold=threshold)
        return standard_costing(usage, price)

    def _headers(self) -> dict[str, str]:
        # Reference: providers-more.md §4 (Authorization: Bearer KEY)
        return {"Authorization": f"Bearer {self.secret}"}

    def test_connection(self) -> str:
        # Reference: providers-more.md §4 (base https://api.x.ai/v1); a model list is unbilled
        body = self._get("/v1/models", max_tries=self.test_max_tries)
        count = len(get_list(body, "data"))
        return f"Connected to xAI ({count} models available)"
