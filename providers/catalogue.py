"""The provider catalogue: the six providers we know and how their data arrives.

Seeded by a data migration; `catalogue_sync()` also restores it where a test flushed the tables.
"""

from __future__ import annotations

# slug, name, has official API, base URL setting, description
PROVIDERS = [
    (
        "openai",
        "OpenAI",
        True,
        "OPENAI_BASE_URL",
        "Official daily costs and token usage via the organization Usage/Costs API (admin key).",
    ),
    (
        "anthropic",
        "Anthropic",
        True,
        "ANTHROPIC_BASE_URL",
        "Official daily cost and usage reports via the Admin API (admin key).",
    ),
    (
        "copilot",
        "GitHub Copilot",
        True,
        "GITHUB_API_URL",
        "Seats and premium requests via the GitHub REST API (token + organization).",
    ),
    (
        "groq",
        "Groq",
        False,
        "GROQ_BASE_URL",
        "No billing API: tracked per request through the proxy or ingestion API.",
    ),
    (
        "perplexity",
        "Perplexity",
        False,
        "PERPLEXITY_BASE_URL",
        "No billing API: each response carries its own cost; tracked per request.",
    ),
    (
        "ollama",
        "Ollama (local LLMs)",
        False,
        "OLLAMA_BASE_URL",
        "Local models: free by default, or priced at an operator-set compute rate.",
    ),
]


def catalogue_sync(provider_model=None) -> None:
    """Create or update the six catalogue rows (takes the historical model in migrations)."""
    if provider_model is None:
        from providers.models import Provider as provider_model
    for slug, name, official, setting, description in PROVIDERS:
        provider_model.objects.update_or_create(
            slug=slug,
            defaults={
                "name": name,
                "has_official_api": official,
                "supports_per_request": True,
                "supports_manual": True,
                "base_url_setting": setting,
                "description": description,
            },
        )
