"""The explicit allow-list: which client paths the proxy forwards, and where to.

Nothing outside this table is forwarded (no open relay), and the upstream host always comes from
settings (Provider.base_url_setting), never from the request.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Route:
    method: str
    upstream_path: str  # appended to the provider's base URL setting
    style: str = "sse"  # how a streamed answer is framed: "sse" or "ndjson" (Ollama native)
    records: bool = True  # False for read-only passthroughs such as model lists
    include_usage: bool = False  # force stream_options.include_usage on streamed calls
    # Bytes a complete stream always contains, when usage alone cannot tell a cut stream
    # (Anthropic reports usage in message_start, long before the end).
    end_marker: bytes | None = None


def _openai_style(prefix: str, *, embeddings: bool = True) -> dict[str, Route]:
    routes = {
        "v1/chat/completions": Route("POST", f"{prefix}v1/chat/completions", include_usage=True),
        "v1/completions": Route("POST", f"{prefix}v1/completions", include_usage=True),
        "v1/responses": Route("POST", f"{prefix}v1/responses"),
        "v1/models": Route("GET", f"{prefix}v1/models", records=False),
    }
    if embeddings:
        routes["v1/embeddings"] = Route("POST", f"{prefix}v1/embeddings")
    return routes


_GROQ = _openai_style("openai/", embeddings=False)
# Perplexity serves Sonar at /chat/completions (no /v1) and the Agent API at /v1/responses.
# Its stream carries usage unasked; stream_options is not documented there, so never added.
_PERPLEXITY_CHAT = Route("POST", "chat/completions")

ROUTES: dict[str, dict[str, Route]] = {
    "openai": _openai_style(""),
    # Clients may use Groq's own layout (base .../openai/v1) or the OpenAI one (.../v1).
    "groq": {**_GROQ, **{f"openai/{path}": route for path, route in _GROQ.items()}},
    "perplexity": {
        "v1/chat/completions": _PERPLEXITY_CHAT,
        "chat/completions": _PERPLEXITY_CHAT,
        "v1/responses": Route("POST", "v1/responses"),
    },
    "ollama": {
        **_openai_style(""),
        "api/chat": Route("POST", "api/chat", style="ndjson"),
        "api/generate": Route("POST", "api/generate", style="ndjson"),
        "api/embed": Route("POST", "api/embed", style="ndjson"),
        "api/tags": Route("GET", "api/tags", records=False),
    },
    "anthropic": {
        "v1/messages": Route("POST", "v1/messages", end_marker=b'"message_stop"'),
        "v1/models": Route("GET", "v1/models", records=False),
    },
}
