"""Groq: connection test only; Groq has no public usage or cost API."""

from __future__ import annotations

from providers.adapters.base import ProviderAdapter, get_list


class GroqAdapter(ProviderAdapter):
    """Groq API key check. Usage is recorded per request (proxy), not synced (§0, §4).

    The Prometheus metrics API is Enterprise-only, so there is nothing to sync for most users.
    """

    kind = "groq"
    label = "Groq"
    supports_sync = False
    default_base_url = "https://api.groq.com"
    api_prefix = "/openai/v1"

    def _headers(self) -> dict[str, str]:
        # Reference: provider-apis.md §4 (bearer API key, OpenAI-compatible API)
        return {"Authorization": f"Bearer {self.secret}"}

    def test_connection(self) -> str:
        # Reference: provider-apis.md §4 (OpenAI-compatible base /openai/v1; listing models is free)
        body = self._get("/openai/v1/models", max_tries=self.test_max_tries)
        count = len(get_list(body, "data"))
        return f"Connected to Groq ({count} models available)"
