"""Ollama (local): connection test only; a local server keeps no usage history."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from providers.adapters.base import ProviderAdapter, Setting, UsageFormat, get_list
from providers.proxy.routes import Route, openai_style_routes

# Counts of a native final object (any of them means the body is one).
_METRICS = ("prompt_eval_count", "eval_count", "total_duration", "eval_duration")
_FREE_NOTE = (
    "A local model on your own hardware: free unless the account sets a compute rate per hour."
)


class OllamaAdapter(ProviderAdapter):
    """A local or self-hosted Ollama server. No auth, no usage API (§8); usage comes per request."""

    kind = "ollama"
    label = "Ollama"
    supports_sync = False
    default_base_url = "http://localhost:11434"
    catalogue_name = "Ollama (local LLMs)"
    description = "Local models: free by default, or priced at an operator-set compute rate."
    base_url_setting = "OLLAMA_BASE_URL"
    base_url_setting_default = "http://127.0.0.1:11434"
    chart_colour, chart_pattern = "#4b5563", "zigzag"
    secret_field = None
    proxy_needs_key = False
    proxy_routes = {
        **openai_style_routes(),
        "api/chat": Route("POST", "api/chat", style="ndjson"),
        "api/generate": Route("POST", "api/generate", style="ndjson"),
        "api/embed": Route("POST", "api/embed", style="ndjson"),
        "api/tags": Route("GET", "api/tags", records=False),
    }
    usage_format = UsageFormat.LOCAL
    litellm_providers = ("ollama",)
    otel_provider_names = ("ollama",)
    litellm_key_prefixed = True
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

    @classmethod
    def usage_from_final_object(cls, body: dict) -> Any | None:
        """The native final object; zero counts are omitted (omitempty), so missing = 0 (ref §8).
        None when the body is no native object (the OpenAI-compatible routes)."""
        from usage.extraction.parsing import RequestUsage, count_of

        if "done" not in body and not any(key in body for key in _METRICS):
            return None
        return RequestUsage(
            model=str(body.get("model") or ""),
            input_tokens=count_of(body.get("prompt_eval_count"), "prompt_eval_count"),
            output_tokens=count_of(body.get("eval_count"), "eval_count"),
            total_duration_ns=count_of(body.get("total_duration"), "total_duration"),
            found=body.get("done") is True or any(key in body for key in _METRICS),
        )

    @classmethod
    def costing(
        cls,
        usage: Any,
        price: Any,
        *,
        compute_rate_per_hour: Decimal | None = None,
        account_config: Mapping[str, Any] | None = None,
    ) -> Any:
        """Local and free, so 0 whatever the price book says; with an operator's compute rate
        (hardware/energy), rate × the request's total_duration (a line counted in seconds)."""
        from usage.pricing import NS_PER_HOUR, Costing, CostLine, Rule

        if compute_rate_per_hour is None:
            return Costing(Rule.FREE, note=_FREE_NOTE)
        ns = usage.total_duration_ns
        amount = compute_rate_per_hour * ns / NS_PER_HOUR
        seconds = Decimal(ns).scaleb(-9)
        line = CostLine("compute_time", seconds, compute_rate_per_hour, amount)
        return Costing(Rule.COMPUTE_RATE, (line,))

    def test_connection(self) -> str:
        # Reference: provider-apis.md §8 (default base http://localhost:11434, no auth)
        body = self._get("/api/tags", max_tries=self.test_max_tries)
        count = len(get_list(body, "models"))
        return f"Connected to Ollama ({count} models installed)"
