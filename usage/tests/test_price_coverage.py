"""The shipped price book prices what the product itself shows: the README's examples and the
demo data. An example that produced "unpriced" rows would teach a new user the wrong thing."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import time_machine
from django.conf import settings
from django.core.management import call_command

from accounts.tests.factories import UserFactory
from providers.models import Provider
from providers.registry import ADAPTERS
from usage.models import UsageRecord
from usage.services.prices import PriceBook

pytestmark = pytest.mark.django_db
README = Path(settings.BASE_DIR) / "README.md"
NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)

_BLOCK = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
# `groq = OpenAI(base_url=f"{tracker}/groq/openai/v1", …)`, `Anthropic(base_url=".../proxy/x")`
_CLIENT = re.compile(r"(\w+)\s*=\s*\w+\(\s*base_url=f?\"(?:\{tracker\}|[^\"]*/proxy)/(\w+)")
_CALL = re.compile(r"(\w+)\.[\w.]*create\(\s*model=\"([^\"]+)\"")
_MODEL = re.compile(r"(?:\bmodel\s*=\s*|\"model\"\s*:\s*)\"([^\"]+)\"")


def readme_models() -> list[tuple[str | None, str]]:
    """(provider kind or None if the example does not say, model) for every model named in a
    README code block."""
    found = []
    for block in _BLOCK.findall(README.read_text(encoding="utf-8")):
        clients = {name: kind for name, kind in _CLIENT.findall(block) if kind in ADAPTERS}
        called = {model: clients.get(client) for client, model in _CALL.findall(block)}
        for model in _MODEL.findall(block):
            found.append((called.get(model), model))
    return found


def test_it_finds_the_readme_examples():
    # Guards the extraction itself: the proxy and ingestion examples must be seen.
    models = readme_models()
    kinds = {kind for kind, _ in models}
    assert len(models) >= 3 and {"groq", "anthropic", None} <= kinds


def test_it_prices_every_model_the_readme_names():
    call_command("import_prices")  # the shipped snapshot, usage/data/litellm_model_prices.json
    book = PriceBook()
    providers = {p.slug: p for p in Provider.objects.all()}
    unpriced = []
    for kind, model in readme_models():
        kinds = [kind] if kind else list(providers)
        if not any(book.rule_for(provider=providers[k], model=model, at=NOW) for k in kinds):
            unpriced.append(f"{model} ({kind or 'any provider'})")
    assert unpriced == []


@time_machine.travel(NOW, tick=False)
def test_it_seeds_demo_data_with_no_unpriced_rows():
    call_command("import_prices")
    UserFactory(username="demo")
    call_command("seed_demo", "--user", "demo", "--days", "30")
    estimated = UsageRecord.objects.filter(source="estimated")
    assert estimated.count() > 50
    unpriced = estimated.filter(cost__isnull=True).values_list("model", flat=True).distinct()
    assert list(unpriced) == []
    assert not UsageRecord.objects.filter(cost__isnull=True).exists()
