"""Google Gemini (the Gemini API, AI Studio keys): connection test and per-request usage.

Facts: shared/reference/providers-more.md §1. No usage or billing API for the Gemini API was
found (§1.4), so usage is recorded per request, through the proxy or the ingestion API.
"""

from __future__ import annotations

from typing import Any

from providers.adapters.base import ProviderAdapter, get_list
from providers.http import ErrorClass, ProviderError
from providers.proxy.routes import Route

# What the API answers an unknown or revoked key with (HTTP 400, reason API_KEY_INVALID).
_KEY_REJECTED = ("API_KEY_INVALID", "API key not valid")


def _native_routes(version: str) -> dict[str, Route]:
    """The native API under one version: the model is named in the path, not the body."""
    models = f"{version}/models"
    return {
        f"{models}/{{model}}:generateContent": Route("POST", f"{models}/{{model}}:generateContent"),
        # SSE with ?alt=sse (forwarded like any other parameter), else one JSON array. Every
        # event repeats the usage so far, so only the final one's finishReason tells a
        # whole stream from one cut short.
        f"{models}/{{model}}:streamGenerateContent": Route(
            "POST", f"{models}/{{model}}:streamGenerateContent", end_marker=b'"finishReason"'
        ),
        f"{models}/{{model}}:countTokens": Route(
            "POST", f"{models}/{{model}}:countTokens", records=False
        ),
        models: Route("GET", models, records=False),
    }


class GeminiAdapter(ProviderAdapter):
    """Google Gemini API key check; usage from ``usageMetadata`` (native) or ``usage``
    (the OpenAI-compatible endpoint), per request.

    Native usage (§1.1): ``promptTokenCount`` includes ``cachedContentTokenCount``;
    ``toolUsePromptTokenCount`` (tool results fed back) is input on top of it; output is
    ``candidatesTokenCount`` + ``thoughtsTokenCount``, thoughts being reasoning, billed as
    output.
    """

    kind = "gemini"
    secret_shapes = (r"\bAIza[0-9A-Za-z_\-]{30,}",)  # Google API keys
    label = "Google Gemini"
    supports_sync = False
    default_base_url = "https://generativelanguage.googleapis.com"
    api_prefix = "/v1beta"
    catalogue_name = "Google Gemini"
    description = "No billing API: tracked per request through the proxy or ingestion API."
    base_url_setting = "GEMINI_BASE_URL"
    chart_colour, chart_pattern = "#1a73e8", "none"
    proxy_routes = {
        # google-genai (3.6) calls v1 unless given api_version="v1beta"; the reference uses v1beta.
        **_native_routes("v1beta"),
        **_native_routes("v1"),
        # The OpenAI-compatible endpoint (§1.3): base URL .../v1beta/openai/.
        "v1beta/openai/chat/completions": Route(
            "POST", "v1beta/openai/chat/completions", include_usage=True
        ),
        "v1beta/openai/embeddings": Route("POST", "v1beta/openai/embeddings"),
        "v1beta/openai/models": Route("GET", "v1beta/openai/models", records=False),
    }
    # The google-genai SDK sends its key in x-goog-api-key, curl users often in ?key=.
    proxy_key_headers = ("x-goog-api-key",)
    proxy_key_query_param = "key"
    usage_object_keys = ("usageMetadata",)
    litellm_providers = ("gemini",)
    otel_provider_names = ("gcp.gemini", "gcp.gen_ai", "gemini", "google.generative-ai")
    litellm_key_prefixed = True

    @classmethod
    def proxy_auth_headers(cls, headers: dict[str, str], provider_key: str) -> None:
        # Reference: providers-more.md §0, §1 (x-goog-api-key; never ?key=, which ends up in
        # access logs). The OpenAI-compatible endpoint is documented with a Bearer key (§1.3);
        # Google's API-key header serves every method of the service, so one rule for both.
        if provider_key:
            headers["x-goog-api-key"] = provider_key

    @classmethod
    def usage_from_final_object(cls, body: dict) -> Any | None:
        """A native response (or stream event) with ``usageMetadata``, or that object bare
        (as the ingestion API may be sent it); None for anything else (OpenAI-compatible
        bodies carry ``usage`` instead)."""
        from usage.extraction.parsing import RequestUsage, count_of

        meta = body.get("usageMetadata")
        path = "usageMetadata"
        if not isinstance(meta, dict):
            if "promptTokenCount" not in body and "candidatesTokenCount" not in body:
                return None
            meta, path = body, "usage"
        prompt = count_of(meta.get("promptTokenCount"), f"{path}.promptTokenCount")
        cached = count_of(meta.get("cachedContentTokenCount"), f"{path}.cachedContentTokenCount")
        if cached > prompt:
            raise ValueError(f"{path}.promptTokenCount: {prompt} is less than the cached tokens")
        tool_prompt = count_of(
            meta.get("toolUsePromptTokenCount"), f"{path}.toolUsePromptTokenCount"
        )
        candidates = count_of(meta.get("candidatesTokenCount"), f"{path}.candidatesTokenCount")
        thoughts = count_of(meta.get("thoughtsTokenCount"), f"{path}.thoughtsTokenCount")
        model = body.get("modelVersion")
        model = model.removeprefix("models/") if isinstance(model, str) else ""
        response_id = body.get("responseId")
        return RequestUsage(
            model=model,
            response_id=response_id if isinstance(response_id, str) else "",
            input_tokens=prompt - cached + tool_prompt,
            cache_read_tokens=cached,
            output_tokens=candidates + thoughts,
            reasoning_tokens=thoughts,
            found=True,
        )

    @classmethod
    def fill_usage(cls, result: Any, usage: dict, path: str) -> None:
        """The OpenAI-compatible endpoint's ``usage``. Its ``completion_tokens`` has been seen
        to leave thinking out while ``total_tokens`` counts it (§1.3): what the total has on
        top of prompt + completion is reasoning, billed as output."""
        from usage.extraction.parsing import count_of, fill_openai_style

        fill_openai_style(result, usage, path)
        # Model names may come back as resource names, as the native API's do (UNCONFIRMED
        # here); the price book knows them without the prefix.
        result.model = result.model.removeprefix("models/")
        prompt = count_of(usage.get("prompt_tokens"), f"{path}.prompt_tokens")
        completion = count_of(usage.get("completion_tokens"), f"{path}.completion_tokens")
        total = count_of(usage.get("total_tokens"), f"{path}.total_tokens")
        unreported = total - prompt - completion
        if unreported > 0:
            result.output_tokens = completion + unreported
            result.reasoning_tokens = unreported

    def _headers(self) -> dict[str, str]:
        # Reference: providers-more.md §0, §1 (API key in x-goog-api-key)
        return {"x-goog-api-key": self.secret}

    def test_connection(self) -> str:
        # Reference: providers-more.md §1 (GET /v1beta/models lists the models the key may
        # use; free)
        try:
            body = self._get(
                "/v1beta/models", params={"pageSize": 1000}, max_tries=self.test_max_tries
            )
        except ProviderError as exc:
            # An unknown key is a 400 here, which would read as "request rejected".
            if exc.status == 400 and any(s in exc.body_excerpt for s in _KEY_REJECTED):
                raise ProviderError(
                    "key rejected (400): API key not valid",
                    permanent=True,
                    status=400,
                    body_excerpt=exc.body_excerpt,
                    error_class=ErrorClass.AUTH,
                ) from None
            raise
        count = len(get_list(body, "models"))
        return f"Connected to Google Gemini ({count} models available)"
