"""The explicit allow-list: which client paths the proxy forwards, and where to.

Each provider's table lives on its adapter (``proxy_routes``). Nothing outside it is forwarded
(no open relay), and the upstream host always comes from settings (Provider.base_url_setting),
never from the request.
"""

from __future__ import annotations

from collections.abc import Mapping
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


def openai_style_routes(prefix: str = "", *, embeddings: bool = True) -> dict[str, Route]:
    """The OpenAI API layout (chat, completions, responses, models, embeddings) under prefix."""
    routes = {
        "v1/chat/completions": Route("POST", f"{prefix}v1/chat/completions", include_usage=True),
        "v1/completions": Route("POST", f"{prefix}v1/completions", include_usage=True),
        "v1/responses": Route("POST", f"{prefix}v1/responses"),
        "v1/models": Route("GET", f"{prefix}v1/models", records=False),
    }
    if embeddings:
        routes["v1/embeddings"] = Route("POST", f"{prefix}v1/embeddings")
    return routes


def routes_for(kind: str) -> Mapping[str, Route] | None:
    """The provider's allow-list (its adapter's ``proxy_routes``); None when it has no proxy."""
    from providers.registry import ADAPTERS, get_adapter_class

    if kind not in ADAPTERS:
        return None
    return get_adapter_class(kind).proxy_routes or None
