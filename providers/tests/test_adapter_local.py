from __future__ import annotations

import socket
from datetime import date
from pathlib import Path

import pytest

from providers.adapters.groq import GroqAdapter
from providers.adapters.ollama import OllamaAdapter
from providers.adapters.perplexity import PerplexityAdapter
from providers.http import ProviderError

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(kind: str, name: str) -> str:
    return (FIXTURES / kind / name).read_text()


def test_it_tests_a_groq_key_by_listing_models(httpserver):
    httpserver.expect_request("/openai/v1/models").respond_with_data(
        fixture("groq", "models.json"), content_type="application/json"
    )
    adapter = GroqAdapter(base_url=httpserver.url_for(""), secret="gsk_test", config={})
    assert adapter.test_connection() == "Connected to Groq (2 models available)"
    request, _ = httpserver.log[0]
    assert request.headers["Authorization"] == "Bearer gsk_test"


def test_it_accepts_a_groq_base_url_with_the_openai_prefix(httpserver):
    httpserver.expect_request("/openai/v1/models").respond_with_data(
        fixture("groq", "models.json"), content_type="application/json"
    )
    base = httpserver.url_for("/openai/v1")
    adapter = GroqAdapter(base_url=base, secret="gsk_test", config={})
    adapter.test_connection()
    assert httpserver.log[0][0].path == "/openai/v1/models"


def test_it_defaults_groq_to_the_public_api():
    assert GroqAdapter(base_url="", secret="k", config={}).base_url == "https://api.groq.com"


def test_it_reports_a_rejected_groq_key(httpserver):
    httpserver.expect_request("/openai/v1/models").respond_with_json(
        {"error": {"message": "Invalid API Key", "type": "invalid_request_error"}}, status=401
    )
    adapter = GroqAdapter(base_url=httpserver.url_for(""), secret="bad", config={})
    with pytest.raises(ProviderError) as info:
        adapter.test_connection()
    assert (info.value.message, info.value.permanent) == ("key rejected (401)", True)


def test_it_refuses_to_test_perplexity(httpserver):
    adapter = PerplexityAdapter(base_url="", secret="pplx-test", config={})
    with pytest.raises(ProviderError) as info:
        adapter.test_connection()
    assert info.value.message == "test not supported for Perplexity (no account API)"
    assert info.value.permanent is True


def test_it_tests_ollama_without_auth(httpserver):
    httpserver.expect_request("/api/tags").respond_with_data(
        fixture("ollama", "tags.json"), content_type="application/json"
    )
    adapter = OllamaAdapter(base_url=httpserver.url_for(""), secret="", config={})
    assert adapter.test_connection() == "Connected to Ollama (1 models installed)"
    request, _ = httpserver.log[0]
    assert "Authorization" not in request.headers


def test_it_reports_an_unreachable_ollama():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleeps: list[float] = []
    adapter = OllamaAdapter(
        base_url=f"http://127.0.0.1:{port}", secret="", config={}, sleep=sleeps.append
    )
    with pytest.raises(ProviderError) as info:
        adapter.test_connection()
    assert info.value.message == "Couldn't reach 127.0.0.1: connection refused"
    assert info.value.permanent is False
    assert len(sleeps) == 1  # an interactive test gives up after two tries


@pytest.mark.parametrize("adapter_class", [GroqAdapter, PerplexityAdapter, OllamaAdapter])
def test_it_does_not_sync_providers_without_a_usage_api(adapter_class):
    adapter = adapter_class(base_url="", secret="", config={})
    assert adapter_class.supports_sync is False
    with pytest.raises(NotImplementedError):
        adapter.fetch_daily_usage(start=date(2026, 8, 1), end=date(2026, 8, 2))
