"""DeepSeek: OpenAI-compatible chat with cache-hit/miss input counts; balance check only."""

from __future__ import annotations

from typing import Any

from providers.adapters.base import ProviderAdapter, get_list, get_str, shape_error, to_decimal
from providers.proxy.routes import Route

# DeepSeek serves its API at the root and under /v1 alike ("the v1 has no relationship with
# the model's version"); both client layouts go to the root paths, so an operator's
# DEEPSEEK_BASE_URL may end in /v1 or not.
_CHAT = Route("POST", "chat/completions", include_usage=True)
_MODELS = Route("GET", "models", records=False)


class DeepSeekAdapter(ProviderAdapter):
    """DeepSeek API (providers-more.md §3). No usage or cost API, only the account balance, so
    usage is recorded per request (proxy or ingestion API).

    Input is billed at two rates: ``prompt_cache_hit_tokens`` at the cache rate and
    ``prompt_cache_miss_tokens`` at the full rate (prompt_tokens = hit + miss). Those two are
    read in preference to ``prompt_tokens_details.cached_tokens``: they are the figures the bill
    is made of, DeepSeek has always sent them, while ``cached_tokens`` is a later
    OpenAI-compatibility copy that older responses (and bodies ingested from older clients)
    lack; without it every cache hit would be priced at the full input rate, 10× too much.
    ``completion_tokens_details.reasoning_tokens`` (deepseek-reasoner) is inside
    ``completion_tokens`` and priced as output unless the price book gives reasoning a price.

    Prices: LiteLLM lists DeepSeek's models both bare (``deepseek-chat``) and prefixed
    (``deepseek/deepseek-chat``); with ``litellm_key_prefixed`` both land on the bare name, and
    the two entries carry the same rates in the shipped snapshot (checked by the tests).
    """

    kind = "deepseek"
    secret_shapes = (r"\bsk-[A-Za-z0-9_\-]{12,}",)
    label = "DeepSeek"
    supports_sync = False
    default_base_url = "https://api.deepseek.com"
    api_prefix = "/v1"
    catalogue_name = "DeepSeek"
    description = "No usage API: tracked per request through the proxy or ingestion API."
    base_url_setting = "DEEPSEEK_BASE_URL"
    chart_colour, chart_pattern = "#4d6bfe", "horizontal"
    # Its streams report usage only when asked (OpenAI style): include_usage is forced.
    proxy_routes = {
        "chat/completions": _CHAT,
        "v1/chat/completions": _CHAT,
        "models": _MODELS,
        "v1/models": _MODELS,
    }
    litellm_providers = ("deepseek",)
    otel_provider_names = ("deepseek",)
    litellm_key_prefixed = True

    @classmethod
    def fill_usage(cls, result: Any, usage: dict, path: str) -> None:
        """OpenAI-style counts, then DeepSeek's own hit/miss split of the prompt when sent."""
        from usage.extraction.parsing import count_of, fill_openai_style

        fill_openai_style(result, usage, path)
        hit_name, miss_name = "prompt_cache_hit_tokens", "prompt_cache_miss_tokens"
        if hit_name not in usage and miss_name not in usage:
            return
        prompt = count_of(usage.get("prompt_tokens"), f"{path}.prompt_tokens")
        hit = count_of(usage.get(hit_name), f"{path}.{hit_name}")
        miss = count_of(usage.get(miss_name), f"{path}.{miss_name}")
        # One of the two missing: the rest of the prompt is the other.
        if miss_name not in usage:
            miss = prompt - hit
        elif hit_name not in usage:
            hit = prompt - miss
        if hit < 0 or miss < 0:
            raise ValueError(f"{path}.prompt_tokens: {prompt} is less than the cache hit or miss")
        result.cache_read_tokens = hit
        result.input_tokens = miss

    def _headers(self) -> dict[str, str]:
        # Reference: providers-more.md §0, §3 (bearer API key)
        return {"Authorization": f"Bearer {self.secret}"}

    def test_connection(self) -> str:
        # Reference: providers-more.md §3 (GET /user/balance, balances as strings)
        body = self._get("/user/balance", max_tries=self.test_max_tries)
        balances = []
        for info in get_list(body, "balance_infos"):
            if not isinstance(info, dict):
                raise shape_error("'balance_infos' should hold objects", body)
            total = to_decimal(info.get("total_balance"), "total_balance", info)
            balances.append(f"{total} {get_str(info, 'currency')}".strip())
        message = "Connected to DeepSeek"
        if balances:
            message += f" (balance {', '.join(balances)})"
        if body.get("is_available") is False:
            message += "; the balance is too low for API calls"
        return message
