"""Mistral (La Plateforme): connection test only; Mistral has no public usage or cost API."""

from __future__ import annotations

from typing import Any

from providers.adapters.base import ProviderAdapter, get_list
from providers.proxy.routes import Route

# Where else a cached-prompt count may sit when prompt_tokens_details.cached_tokens is absent,
# in the order tried (see MistralAdapter.fill_usage).
_OTHER_CACHED_COUNTS = (("prompt_token_details", "cached_tokens"), (None, "num_cached_tokens"))


class MistralAdapter(ProviderAdapter):
    """Mistral's OpenAI-shaped API (providers-more.md §2). Usage is recorded per request (proxy
    or ingestion API), not synced: no usage or billing API was found (UNCONFIRMED)."""

    kind = "mistral"
    label = "Mistral"
    supports_sync = False
    default_base_url = "https://api.mistral.ai"
    api_prefix = "/v1"
    catalogue_name = "Mistral"
    description = "No billing API: tracked per request through the proxy or ingestion API."
    base_url_setting = "MISTRAL_BASE_URL"
    chart_colour, chart_pattern = "#b45309", "none"
    # Mistral puts usage on a stream's final chunk unasked (§2, release note 2024-01-16) and
    # rejects fields it does not know with 422 extra_forbidden - stream_options.include_usage
    # among them (third-party report, dnakov/anon-kode#53) - so the proxy never adds it here.
    proxy_routes = {
        "v1/chat/completions": Route("POST", "v1/chat/completions"),
        "v1/embeddings": Route("POST", "v1/embeddings"),
        "v1/models": Route("GET", "v1/models", records=False),
    }
    # Token-based "by size" rate limits (§2; header names seen in third-party parsers only).
    proxy_returned_header_prefixes = ("ratelimitbysize-", "x-ratelimitbysize-")
    litellm_providers = ("mistral",)
    otel_provider_names = ("mistral_ai", "mistralai", "mistral")
    litellm_key_prefixed = True

    @classmethod
    def fill_usage(cls, result: Any, usage: dict, path: str) -> None:
        """OpenAI-style counts, with the cached-prompt count found wherever Mistral put it.

        Mistral's prompt-caching docs show ``prompt_tokens_details.cached_tokens`` inside
        ``prompt_tokens`` (prompt 1013, cached 1008), and a live call reported in symfony/ai#2343
        agrees (801 with 768 cached), so it is read first. Its SDK schema (§2) also defines
        ``prompt_token_details`` (sic) and a top-level ``num_cached_tokens``, meaning
        UNCONFIRMED: taken as the same count of the same prompt, used only when the documented
        field is absent - never added to it, which would count one cache hit twice.
        """
        from usage.extraction.parsing import count_of, dict_of, fill_openai_style

        details = dict_of(usage.get("prompt_tokens_details"))
        if details.get("cached_tokens") is None:
            for parent, key in _OTHER_CACHED_COUNTS:
                holder = dict_of(usage.get(parent)) if parent else usage
                if holder.get(key) is not None:
                    where = f"{path}.{parent}.{key}" if parent else f"{path}.{key}"
                    cached = count_of(holder[key], where)  # an error names the field sent
                    usage = {**usage, "prompt_tokens_details": {**details, "cached_tokens": cached}}
                    break
        fill_openai_style(result, usage, path)

    def _headers(self) -> dict[str, str]:
        # Reference: providers-more.md §2 (Authorization: Bearer KEY)
        return {"Authorization": f"Bearer {self.secret}"}

    def test_connection(self) -> str:
        # Reference: providers-more.md §2 (base https://api.mistral.ai/v1); a model list is unbilled
        body = self._get("/v1/models", max_tries=self.test_max_tries)
        count = len(get_list(body, "data"))
        return f"Connected to Mistral ({count} models available)"
