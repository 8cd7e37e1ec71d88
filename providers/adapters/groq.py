"""Groq: connection test only; Groq has no public usage or cost API."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from providers.adapters.base import ProviderAdapter, get_list
from providers.proxy.routes import openai_style_routes
from providers.ratelimits.readings import openai_style_reading

_ROUTES = openai_style_routes("openai/", embeddings=False)


class GroqAdapter(ProviderAdapter):
    """Groq API key check. Usage is recorded per request (proxy), not synced (§0, §4).

    The Prometheus metrics API is Enterprise-only, so there is nothing to sync for most users.
    """

    kind = "groq"
    secret_shapes = (r"\bgsk_[A-Za-z0-9_]{12,}",)
    label = "Groq"
    supports_sync = False
    default_base_url = "https://api.groq.com"
    api_prefix = "/openai/v1"
    catalogue_name = "Groq"
    description = "No billing API: tracked per request through the proxy or ingestion API."
    base_url_setting = "GROQ_BASE_URL"
    chart_colour, chart_pattern = "#c2410c", "horizontal"
    # Clients may use Groq's own layout (base .../openai/v1) or the OpenAI one (.../v1).
    proxy_routes = {
        **_ROUTES,
        **{f"openai/{path}": route for path, route in _ROUTES.items()},
    }
    litellm_providers = ("groq",)
    otel_provider_names = ("groq",)
    # Its streams put usage in x_groq.usage on the final chunk (ref §4); non-streaming
    # x_groq.usage only holds dram/sram cache counters, hence the token-count condition.
    usage_envelope_paths = ("x_groq.usage",)
    proxy_returned_header_prefixes = ("x-groq-",)
    litellm_key_prefixed = True

    @classmethod
    def rate_limit_reading(cls, headers: Mapping[str, str], *, now: datetime) -> Any | None:
        """OpenAI's six x-ratelimit-* headers on every response, but the requests limit is
        per day (RPD) and the tokens limit per minute; retry-after (seconds) only on 429."""
        # Reference: provider-apis.md §4 "Rate-limit headers"; providers-more.md §6 "Groq"
        reading = openai_style_reading(headers, now=now)
        return None if reading.empty else reading

    def _headers(self) -> dict[str, str]:
        # Reference: provider-apis.md §4 (bearer API key, OpenAI-compatible API)
        return {"Authorization": f"Bearer {self.secret}"}

    def test_connection(self) -> str:
        # Reference: provider-apis.md §4 (OpenAI-compatible base /openai/v1; listing models is free)
        body = self._get("/openai/v1/models", max_tries=self.test_max_tries)
        count = len(get_list(body, "data"))
        return f"Connected to Groq ({count} models available)"
