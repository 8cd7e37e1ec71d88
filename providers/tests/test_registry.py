from __future__ import annotations

import dataclasses
import sys
from datetime import date
from decimal import Decimal

import pytest

from providers import registry
from providers.adapters.base import ProviderAdapter, UsageLine, merge_lines


def test_it_lists_every_kind_as_choices():
    # Every registered kind in registry order, so a provider added by its one registry line
    # needs no edit here; the first six keep their places.
    choices = registry.adapter_choices()
    assert choices == [(kind, label) for kind, (label, _) in registry.ADAPTERS.items()]
    assert choices[:6] == [
        ("openai", "OpenAI"),
        ("anthropic", "Anthropic"),
        ("copilot", "GitHub Copilot"),
        ("groq", "Groq"),
        ("perplexity", "Perplexity"),
        ("ollama", "Ollama"),
    ]
    assert [kind for kind, _ in choices] == list(registry.ADAPTERS)
    assert all(label for _, label in choices)


@pytest.mark.parametrize("kind", list(registry.ADAPTERS))
def test_it_loads_an_adapter_class_matching_its_entry(kind):
    adapter_class = registry.get_adapter_class(kind)
    assert issubclass(adapter_class, ProviderAdapter)
    assert adapter_class.kind == kind
    assert adapter_class.label == registry.ADAPTERS[kind][0]


def test_it_imports_adapters_lazily(monkeypatch):
    registry.get_adapter_class.cache_clear()
    monkeypatch.delitem(sys.modules, "providers.adapters.ollama", raising=False)
    registry.adapter_choices()
    assert "providers.adapters.ollama" not in sys.modules
    registry.get_adapter_class("ollama")
    assert "providers.adapters.ollama" in sys.modules


def test_it_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match="unknown provider kind: 'no-such-provider'"):
        registry.get_adapter_class("no-such-provider")


def test_it_lists_the_syncable_kinds():
    assert registry.syncable_kinds() == ["openai", "anthropic", "copilot"]


def test_it_keeps_usage_line_fields_in_step_with_the_model():
    names = [f.name for f in dataclasses.fields(UsageLine)]
    assert names == [
        "day",
        "model",
        "line_item",
        "input_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "cache_write_1h_tokens",
        "output_tokens",
        "reasoning_tokens",
        "request_count",
        "seats",
        "search_queries",
        "images",
        "audio_seconds",
        "credits",
        "cost",
        "currency",
        "raw",
    ]


def test_it_refuses_an_empty_line_item():
    with pytest.raises(ValueError):
        UsageLine(day=date(2026, 8, 1), model="", line_item="")


def test_it_merges_lines_with_the_same_key():
    day = date(2026, 8, 1)
    a = UsageLine(
        day=day, model="m", line_item="x", input_tokens=1, cost=Decimal("0.1"), raw={"a": 1}
    )
    b = UsageLine(day=day, model="m", line_item="x", input_tokens=2, cost=None, raw={"b": 2})
    c = UsageLine(day=day, model="m", line_item="y", output_tokens=5)
    merged = merge_lines([a, b, c])
    assert [(ln.line_item, ln.input_tokens, ln.cost) for ln in merged] == [
        ("x", 3, Decimal("0.1")),  # $0.1 + unpriced part = $0.1
        ("y", 0, None),  # every part unpriced: stays None
    ]
    assert merged[0].raw == {"merged": [{"a": 1}, {"b": 2}]}


def test_it_never_shows_the_secret_in_repr():
    adapter = registry.get_adapter_class("openai")(
        base_url="https://api.openai.com", secret="sk-admin-secret", config={}
    )
    assert "sk-admin-secret" not in repr(adapter)


def test_an_adapter_that_overrides_price_instead_of_costing_is_refused():
    with pytest.raises(TypeError, match="override costing"):
        type("Bad", (ProviderAdapter,), {"price": classmethod(lambda cls, *a, **k: None)})
