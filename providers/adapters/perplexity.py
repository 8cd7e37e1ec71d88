"""Perplexity: no account API, so neither sync nor a connection test."""

from __future__ import annotations

from providers.adapters.base import ProviderAdapter
from providers.http import ProviderError


class PerplexityAdapter(ProviderAdapter):
    """Perplexity. Usage and cost arrive per request in ``usage.cost`` (§5), recorded by the proxy.

    The reference names no cheap authenticated endpoint (no usage, cost or model listing API);
    the only way to prove a key works would be a billed completion, so we refuse instead.
    """

    kind = "perplexity"
    label = "Perplexity"
    supports_sync = False
    default_base_url = "https://api.perplexity.ai"

    def test_connection(self) -> str:
        # Reference: provider-apis.md §0, §5 (no account API)
        raise ProviderError("test not supported for Perplexity (no account API)", permanent=True)
