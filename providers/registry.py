"""Provider kinds and their adapters.

A new provider = one adapter module + one line here + one test file. Adapter modules are
imported on first use, so loading the registry (e.g. for form choices) imports no vendor code.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from providers.adapters.base import ProviderAdapter

ADAPTERS: dict[str, tuple[str, str]] = {
    "openai": ("OpenAI", "providers.adapters.openai.OpenAIAdapter"),
    "anthropic": ("Anthropic", "providers.adapters.anthropic.AnthropicAdapter"),
    "copilot": ("GitHub Copilot", "providers.adapters.copilot.CopilotAdapter"),
    "groq": ("Groq", "providers.adapters.groq.GroqAdapter"),
    "perplexity": ("Perplexity", "providers.adapters.perplexity.PerplexityAdapter"),
    "ollama": ("Ollama", "providers.adapters.ollama.OllamaAdapter"),
    "gemini": ("Google Gemini", "providers.adapters.gemini.GeminiAdapter"),
    "mistral": ("Mistral", "providers.adapters.mistral.MistralAdapter"),
    "deepseek": ("DeepSeek", "providers.adapters.deepseek.DeepSeekAdapter"),
    "xai": ("xAI (Grok)", "providers.adapters.xai.XAIAdapter"),
    "openrouter": ("OpenRouter", "providers.adapters.openrouter.OpenRouterAdapter"),
    "openai_compatible": (
        "OpenAI-compatible (custom)",
        "providers.adapters.openai_compatible.OpenAICompatibleAdapter",
    ),
}


@cache
def get_adapter_class(kind: str) -> type[ProviderAdapter]:
    """Import and return the adapter class for ``kind``; ValueError for an unknown kind."""
    try:
        _, dotted = ADAPTERS[kind]
    except KeyError:
        raise ValueError(f"unknown provider kind: {kind!r}") from None
    module_path, _, class_name = dotted.rpartition(".")
    return getattr(importlib.import_module(module_path), class_name)


def adapter_choices() -> list[tuple[str, str]]:
    """(kind, label) pairs for model and form ``choices``."""
    return [(kind, label) for kind, (label, _) in ADAPTERS.items()]


def syncable_kinds() -> list[str]:
    """Kinds whose adapter can fetch daily usage (imports each adapter once)."""
    return [kind for kind in ADAPTERS if get_adapter_class(kind).supports_sync]


def base_url_settings() -> dict[str, str]:
    """Each provider's upstream base URL setting name -> its default (read by settings.py)."""
    settings = {}
    for kind in ADAPTERS:
        adapter = get_adapter_class(kind)
        if adapter.base_url_setting:
            settings[adapter.base_url_setting] = (
                adapter.base_url_setting_default or adapter.default_base_url
            )
    return settings


@cache
def kinds_for_otel_provider(name: str) -> frozenset[str]:
    """The provider kinds an OpenTelemetry `gen_ai.provider.name` (or `gen_ai.system`) value
    names: each adapter's ``otel_provider_names`` (imports each adapter once). Compared
    without case; empty for a name no adapter claims.

    A name no adapter claims is tried again without what follows its first dot: the Vercel AI
    SDK's `gen_ai.system` is its provider id, `<provider>.<api>` ("openai.chat",
    "anthropic.messages"), while dotted well-known names ("gcp.gemini") match whole first.
    """
    wanted = name.strip().lower()
    kinds = frozenset(
        kind for kind in ADAPTERS if wanted in get_adapter_class(kind).otel_provider_names
    )
    if not kinds and "." in wanted:
        return kinds_for_otel_provider(wanted.partition(".")[0])
    return kinds
