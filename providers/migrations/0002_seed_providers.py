from django.db import migrations

PROVIDERS = [
    # slug, name, official API, base URL setting, description
    ("openai", "OpenAI", True, "OPENAI_BASE_URL",
     "Official daily costs and token usage via the organization Usage/Costs API (admin key)."),
    ("anthropic", "Anthropic", True, "ANTHROPIC_BASE_URL",
     "Official daily cost and usage reports via the Admin API (admin key)."),
    ("copilot", "GitHub Copilot", True, "GITHUB_API_URL",
     "Seats and premium requests via the GitHub REST API (token + organization)."),
    ("groq", "Groq", False, "GROQ_BASE_URL",
     "No billing API: tracked per request through the proxy or ingestion API."),
    ("perplexity", "Perplexity", False, "PERPLEXITY_BASE_URL",
     "No billing API: each response carries its own cost; tracked per request."),
    ("ollama", "Ollama (local LLMs)", False, "OLLAMA_BASE_URL",
     "Local models: free by default, or priced at an operator-set compute rate."),
]


def seed(apps, schema_editor):
    Provider = apps.get_model("providers", "Provider")
    for slug, name, official, setting, description in PROVIDERS:
        Provider.objects.update_or_create(
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


class Migration(migrations.Migration):
    dependencies = [("providers", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
