"""The explicit allow-list: which client paths the proxy forwards, and where to.

Each provider's table lives on its adapter (``proxy_routes``). Nothing outside it is forwarded
(no open relay), and the upstream host always comes from settings (Provider.base_url_setting),
never from the request.

A route key may hold one ``{model}`` segment (APIs that name the model in the path rather than
the body): the client's path matches it when that segment is a plain model name, which then
takes the place of ``{model}`` in the upstream path too. Exact keys are looked up first, so
a table without patterns costs one dict lookup as before.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

MODEL = "{model}"
# A model name as a path segment: no "/", no "..", no ":" (it separates a method, as in
# "models/{model}:generate"); Django has already decoded any percent-escapes.
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,199}")


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


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """A client path's route, the upstream path it goes to, and the model the path named."""

    route: Route
    upstream_path: str
    model: str = ""


def routes_for(kind: str) -> Mapping[str, Route] | None:
    """The provider's allow-list (its adapter's ``proxy_routes``); None when it has no proxy."""
    from providers.registry import ADAPTERS, get_adapter_class

    if kind not in ADAPTERS:
        return None
    return get_adapter_class(kind).proxy_routes or None


@cache
def _model_patterns(kind: str) -> tuple[tuple[str, str, Route], ...]:
    """(prefix, suffix, route) of each ``{model}`` key, the longest fixed part first, so a
    pattern with a suffix wins over a shorter one that would take it into the model name."""
    routes = routes_for(kind) or {}
    patterns = [(*key.split(MODEL, 1), route) for key, route in routes.items() if MODEL in key]
    return tuple(sorted(patterns, key=lambda p: len(p[0]) + len(p[1]), reverse=True))


def route_for(kind: str, path: str) -> RouteMatch | None:
    """The route a client path takes (None: not forwarded). Exact keys first; ``{model}``
    patterns only when that misses."""
    routes = routes_for(kind)
    if routes is None:
        return None
    route = routes.get(path)
    if route is not None:
        return RouteMatch(route, route.upstream_path)
    for prefix, suffix, route in _model_patterns(kind):
        if path.startswith(prefix) and path.endswith(suffix):
            model = path[len(prefix) : len(path) - len(suffix)]
            if _MODEL_NAME.fullmatch(model):
                return RouteMatch(route, route.upstream_path.replace(MODEL, model), model)
    return None
