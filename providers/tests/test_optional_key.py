"""An upstream that takes calls with or without a key (``secret_field = "api_key"``,
``proxy_needs_key = False``): the connection test runs without a stored key and sends it when
one is stored; the form's help says the key is optional for it. Ollama stands in for such a
provider here (patched), as no registered provider of the base set is one."""

from __future__ import annotations

import pytest

from providers.adapters.groq import GroqAdapter
from providers.adapters.ollama import OllamaAdapter
from providers.adapters.openai import OpenAIAdapter
from providers.connection import AccountNotReady, adapter_for_account
from providers.forms import _key_help
from providers.tests.factories import AccountFactory, provider

pytestmark = pytest.mark.django_db


@pytest.fixture
def optional_key(monkeypatch):
    monkeypatch.setattr(OllamaAdapter, "secret_field", "api_key")
    assert OllamaAdapter.api_key_optional()


def test_it_builds_the_adapter_without_a_stored_key(optional_key):
    account = AccountFactory(provider=provider("ollama"))

    assert adapter_for_account(account).secret == ""


def test_it_hands_a_stored_key_to_the_adapter(optional_key):
    account = AccountFactory(provider=provider("ollama"), keys={"api_key": "sk-local-0000001"})

    assert adapter_for_account(account).secret == "sk-local-0000001"


def test_a_required_key_is_still_required():
    account = AccountFactory(provider=provider("groq"))

    with pytest.raises(AccountNotReady, match="Groq needs an API key for this."):
        adapter_for_account(account)


def test_only_an_api_key_the_upstream_can_do_without_is_optional():
    assert not OllamaAdapter.api_key_optional()  # it stores no key at all
    assert not GroqAdapter.api_key_optional()
    assert not OpenAIAdapter.api_key_optional()  # its admin key is never optional


def test_the_form_help_names_the_providers_for_which_the_key_is_optional(optional_key):
    api_help, _ = _key_help()

    assert api_help.startswith("Used by the proxy (OpenAI, Anthropic, Groq, Perplexity")
    assert "Ollama" not in api_help.partition(";")[0]  # not among those that need it
    assert "optional for Ollama" in api_help
    assert api_help.count(": sent only when stored") == 1
