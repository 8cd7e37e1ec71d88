"""Ollama (local): connection test only; a local server keeps no usage history."""

from __future__ import annotations

from decimal import Decimal

from providers.adapters.base import ProviderAdapter, Setting, get_list


class OllamaAdapter(ProviderAdapter):
    """A local or self-hosted Ollama server. No auth, no usage API (§8); usage comes per request."""

    kind = "ollama"
    label = "Ollama"
    supports_sync = False
    default_base_url = "http://localhost:11434"
    settings = (
        Setting(
            "compute_rate_per_hour",
            Decimal,
            "Compute rate (USD per hour)",
            "Your hardware/energy cost; requests are priced at this rate × their run time. "
            "Empty: local requests cost $0.",
            min_value=Decimal(0),
            max_value=Decimal(10_000),
        ),
    )

    def test_connection(self) -> str:
        # Reference: provider-apis.md §8 (default base http://localhost:11434, no auth)
        body = self._get("/api/tags", max_tries=self.test_max_tries)
        count = len(get_list(body, "models"))
        return f"Connected to Ollama ({count} models installed)"
