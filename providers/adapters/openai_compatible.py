"""A custom OpenAI-compatible endpoint (vLLM, LM Studio, llama.cpp server, Together, Fireworks…).

The upstream is the operator's: its URL is the OPENAI_COMPATIBLE_BASE_URL setting (the
environment), never a user's request or account field, so the proxy cannot be pointed at an
arbitrary host (no open relay, no SSRF). There is no billing API; usage is recorded per request.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from providers.adapters.base import ProviderAdapter, Setting, get_list
from providers.adapters.openai import OpenAIAdapter
from providers.http import ProviderError
from providers.proxy.routes import Route
from providers.ratelimits.readings import openai_style_reading

# The client uses the OpenAI layout (".../proxy/<kind>/v1/chat/completions"); the setting is the
# base URL one would give the OpenAI SDK, version path included, because that is what these
# servers document and some keep it under a prefix (Fireworks: .../inference/v1). So the
# upstream path carries no "v1/".
_ROUTES = {
    "v1/chat/completions": Route("POST", "chat/completions", include_usage=True),
    "v1/completions": Route("POST", "completions", include_usage=True),
    "v1/responses": Route("POST", "responses"),
    "v1/embeddings": Route("POST", "embeddings"),
    "v1/models": Route("GET", "models", records=False),
}


class OpenAICompatibleAdapter(ProviderAdapter):
    """One operator-defined OpenAI-compatible upstream; an API key only if it wants one.

    Priced from the price book by model name (Price rows the operator adds for this provider:
    LiteLLM cannot know what the endpoint serves or charges), or free when the account says the
    endpoint runs on its own hardware. An unpriced model stays unpriced (None), never $0.
    """

    kind = "openai_compatible"
    label = "OpenAI-compatible (custom)"
    supports_sync = False
    # No default host. A guess would send prompts, and a stored key, to whatever listens
    # there: vLLM's usual http://127.0.0.1:8000 is this tracker's own address (make run,
    # gunicorn), LM Studio listens on :1234 and llama.cpp on :8080. Empty means "not
    # configured": the proxy answers 503 naming the setting and the connection test says so.
    default_base_url = ""
    # Its clients are OpenAI SDKs pointed elsewhere, whose instrumentations name OpenAI.
    otel_provider_names = OpenAIAdapter.otel_provider_names
    catalogue_name = "OpenAI-compatible endpoint (custom)"
    description = (
        "Your own OpenAI-compatible server (vLLM, LM Studio, llama.cpp, Together, Fireworks…). "
        "The server's operator sets its URL (OPENAI_COMPATIBLE_BASE_URL, e.g. "
        "http://gpu-box:8000/v1); the API key is optional. Priced from the price book by model "
        "name, or free."
    )
    base_url_setting = "OPENAI_COMPATIBLE_BASE_URL"
    chart_colour, chart_pattern = "#a16207", "vertical"
    secret_field = "api_key"
    proxy_needs_key = False  # vLLM and LM Studio often run without one: optional, sent if stored
    proxy_routes = _ROUTES
    settings = (
        Setting(
            "free",
            bool,
            "Free (your own hardware)",
            "Record every request at $0. Off: each model is priced from the price book (Price "
            "rows for this provider, by model name); a model without one stays unpriced.",
            default=False,
        ),
    )
    # No compute rate as Ollama has: an OpenAI-shaped answer carries no run time, and the
    # proxy's wall time would bill a batching server (vLLM runs many requests at once on one
    # GPU) several times over for the same hour.

    @classmethod
    def costing(
        cls,
        usage: Any,
        price: Any,
        *,
        compute_rate_per_hour: Decimal | None = None,
        account_config: Mapping[str, Any] | None = None,
    ) -> Any:
        """$0 when the account marks the endpoint free; otherwise the base rule (its own cost
        figure if the answer has one, else the price book, else None)."""
        from usage.pricing import Costing, Rule

        if (account_config or {}).get("free") is True:
            return Costing(Rule.FREE, note="The account marks this endpoint free.")
        return super().costing(usage, price, account_config=account_config)

    @classmethod
    def rate_limit_reading(cls, headers: Mapping[str, str], *, now: datetime) -> Any | None:
        """Hosted OpenAI-compatible APIs (Together, Fireworks…) send OpenAI's x-ratelimit-*
        headers; a self-hosted server sends none, and then there is nothing to read."""
        reading = openai_style_reading(headers, now=now)
        return None if reading.empty else reading

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"} if self.secret else {}

    def test_connection(self) -> str:
        # Reference: the OpenAI API's GET /v1/models, which vLLM, LM Studio, llama.cpp server,
        # Together and Fireworks all serve (with the key when the server wants one).
        parts = urlsplit(self.base_url)  # host and port only: never a user:password@ part
        host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
        try:
            body = self._get("/models", max_tries=self.test_max_tries)
        except ProviderError as exc:
            if exc.status == 200 and exc.body_excerpt.lstrip().startswith("["):
                # The key was accepted; the list is a bare JSON array (Together's shape), which
                # the HTTP helper, expecting an object, calls malformed.
                return f"Connected to {host} (its model list is a plain array)"
            if exc.status == 404 and not self.base_url.endswith("/v1"):
                raise ProviderError(
                    f"{exc.message} at {host}: OPENAI_COMPATIBLE_BASE_URL usually ends in /v1",
                    permanent=True,
                    status=404,
                    error_class=exc.error_class,
                    detail=exc.detail,
                ) from exc
            raise
        count = len(get_list(body, "data"))
        return f"Connected to {host} ({count} models available)"
