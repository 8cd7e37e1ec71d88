"""Building an adapter for a stored account, and the "test connection" check."""

from __future__ import annotations

from dataclasses import dataclass

from providers.adapters.base import ProviderAdapter
from providers.crypto import SecretUnreadable
from providers.fields import EncryptedSecretField
from providers.http import Budget, ErrorClass, ProviderError
from providers.models import ProviderAccount
from providers.redaction import redact, redacted_logger
from providers.registry import get_adapter_class

logger = redacted_logger(__name__)

# "Test connection" answers a person waiting on a page: a short total budget.
TEST_TIME_BUDGET_SECONDS = 20


class AccountNotReady(Exception):
    """The account lacks what the adapter needs (a key, a setting)."""


def account_secrets(*, account: ProviderAccount) -> tuple[str, ...]:
    """Every readable secret stored on the account (each encrypted field, whatever its name).

    These are what :func:`providers.redaction.redact` must remove from anything the account's
    provider calls produce, whichever key the call itself sent.
    """
    secrets = []
    for field in account._meta.concrete_fields:
        if not isinstance(field, EncryptedSecretField):
            continue
        sealed = getattr(account, field.attname)
        if not sealed:
            continue
        try:
            secrets.append(sealed.reveal() if hasattr(sealed, "reveal") else str(sealed))
        except SecretUnreadable:
            continue
    return tuple(secrets)


def adapter_for_account(account: ProviderAccount, **kwargs) -> ProviderAdapter:
    kind = account.provider.slug
    adapter_class = get_adapter_class(kind)
    field = adapter_class.secret_field  # which stored secret its API and the test use
    secret = ""
    if field:
        sealed = getattr(account, field)
        if not sealed and not adapter_class.api_key_optional():
            label = "admin key / token" if field == "admin_key" else "API key"
            raise AccountNotReady(f"{account.provider.name} needs an {label} for this.")
        try:
            secret = sealed.reveal() if sealed else ""
        except SecretUnreadable as exc:
            raise AccountNotReady(
                "The stored key cannot be decrypted with ENCRYPTION_KEYS; enter it again."
            ) from exc
    kwargs.setdefault("other_secrets", account_secrets(account=account))
    adapter = adapter_class(
        base_url=account.provider.base_url, secret=secret, config=account.config, **kwargs
    )
    if not adapter.base_url:  # neither the setting nor the adapter names a host
        raise AccountNotReady(account.provider.no_upstream_message())
    return adapter


@dataclass(frozen=True)
class TestResult:
    ok: bool
    message: str
    http_status: int = 200
    error_class: str = ""
    # The technical text behind a failure (redacted like the message), shown on demand.
    detail: str = ""

    @property
    def full_text(self) -> str:
        """The message, then its detail on the lines after (what the error display reads)."""
        return f"{self.message}\n{self.detail}" if self.detail else self.message


def account_test_connection(*, account: ProviderAccount, **adapter_options) -> TestResult:
    """One cheap authenticated call. The message is redacted of every secret of the account."""
    adapter_options.setdefault("budget", Budget(seconds=TEST_TIME_BUDGET_SECONDS))
    try:
        adapter = adapter_for_account(account, **adapter_options)
        message = adapter.test_connection()
    except AccountNotReady as exc:
        return TestResult(False, str(exc), 400, ErrorClass.CONFIG)
    except NotImplementedError as exc:
        return TestResult(
            False, str(exc) or "Not supported for this provider yet.", 400, ErrorClass.CONFIG
        )
    except ProviderError as exc:
        if exc.error_class == ErrorClass.AUTH:
            ProviderAccount.objects.filter(pk=account.pk).update(
                needs_attention=True, last_sync_error=exc.message
            )
        return TestResult(False, exc.message, 502, exc.error_class, exc.detail)
    except Exception as exc:  # an adapter bug: say so in one line; the log has the (redacted) rest
        logger.error(
            "test connection of account %s failed: %s",
            account.pk,
            redact(f"{type(exc).__name__}: {exc}", account_secrets(account=account)),
        )
        return TestResult(
            False, "Unexpected error while testing; see the server log.", 502, ErrorClass.INTERNAL
        )
    if account.needs_attention:
        ProviderAccount.objects.filter(pk=account.pk).update(needs_attention=False)
    # A success message quotes provider data (an organization name): redacted all the same.
    return TestResult(True, redact(message, account_secrets(account=account)))
