"""Building an adapter for a stored account, and the "test connection" check."""

from __future__ import annotations

from dataclasses import dataclass

from providers.adapters.base import ProviderAdapter
from providers.crypto import SecretUnreadable
from providers.http import ProviderError
from providers.models import ProviderAccount
from providers.registry import get_adapter_class

# Which stored secret each provider's official API and connection test use.
_SECRET_FIELD = {
    "openai": "admin_key",
    "anthropic": "admin_key",
    "copilot": "admin_key",
    "groq": "api_key",
    "perplexity": "api_key",
    "ollama": None,
}


class AccountNotReady(Exception):
    """The account lacks what the adapter needs (a key, a setting)."""


def adapter_for_account(account: ProviderAccount, **kwargs) -> ProviderAdapter:
    kind = account.provider.slug
    field = _SECRET_FIELD.get(kind)
    secret = ""
    if field:
        sealed = getattr(account, field)
        if not sealed:
            label = "admin key / token" if field == "admin_key" else "API key"
            raise AccountNotReady(f"{account.provider.name} needs an {label} for this.")
        try:
            secret = sealed.reveal()
        except SecretUnreadable as exc:
            raise AccountNotReady(
                "The stored key cannot be decrypted with ENCRYPTION_KEYS; enter it again."
            ) from exc
    adapter_class = get_adapter_class(kind)
    return adapter_class(
        base_url=account.provider.base_url, secret=secret, config=account.config, **kwargs
    )


@dataclass(frozen=True)
class TestResult:
    ok: bool
    message: str
    http_status: int = 200


def account_test_connection(*, account: ProviderAccount) -> TestResult:
    try:
        adapter = adapter_for_account(account)
        message = adapter.test_connection()
    except AccountNotReady as exc:
        return TestResult(False, str(exc), 400)
    except NotImplementedError as exc:
        return TestResult(False, str(exc) or "Not supported for this provider yet.", 400)
    except ProviderError as exc:
        if exc.permanent and exc.status in (401, 403):
            ProviderAccount.objects.filter(pk=account.pk).update(
                needs_attention=True, last_sync_error=exc.message
            )
        return TestResult(False, exc.message, 502)
    if account.needs_attention:
        ProviderAccount.objects.filter(pk=account.pk).update(needs_attention=False)
    return TestResult(True, message)
