"""Writes for provider accounts and their keys."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import User, Workspace
from audit.models import AuditEvent
from audit.services import (
    audit_changes,
    audit_record,
    audit_snapshot,
    audit_state,
    audit_update_action,
)
from providers.account_settings import settings_clean
from providers.models import IngestKey, Provider, ProviderAccount, hash_ingest_key

# Sentinel for "leave this secret as it is" (the form field was left empty / key omitted).
UNCHANGED = object()


def _apply_secret(account: ProviderAccount, field: str, value: Any) -> None:
    if value is UNCHANGED:
        return
    account.set_secret(field, value or None)


def account_has_usage(*, account: ProviderAccount) -> bool:
    from usage.models import UsageRecord

    return account.pk is not None and UsageRecord.objects.filter(account_id=account.pk).exists()


def account_provider_change_check(*, account: ProviderAccount, provider: Provider) -> None:
    """An account's provider is fixed once it has usage: its records, roll-ups, prices and
    reconciliation all belong to that provider, and moving them would file past spend under
    another one. Raises ValidationError on ``provider``; the one home of this rule."""
    if account.pk is None:
        return
    current = (
        ProviderAccount.objects.filter(pk=account.pk).values_list("provider_id", flat=True).first()
    )
    if current is not None and current != provider.pk and account_has_usage(account=account):
        raise ValidationError(
            {
                "provider": "This account already has usage, so its provider cannot change. "
                "Add a new account for the other provider instead."
            }
        )


def _settings_error(exc: ValidationError) -> ValidationError:
    # Setting errors are reported under "config", each naming its setting.
    return ValidationError(
        {"config": [f"{key}: {' '.join(msgs)}" for key, msgs in exc.message_dict.items()]}
    )


@transaction.atomic
def account_create(
    *,
    workspace: Workspace,
    provider: Provider,
    name: str,
    api_key: str | None = None,
    admin_key: str | None = None,
    config: dict | None = None,
    monthly_budget: Decimal | None = None,
    is_active: bool = True,
    is_demo: bool = False,
) -> ProviderAccount:
    """Create an account; ``config`` holds the provider's settings (missing ones: defaults)."""
    try:
        settings = settings_clean(kind=provider.slug, values=config)
    except ValidationError as exc:
        raise _settings_error(exc) from exc
    account = ProviderAccount(
        workspace=workspace,
        provider=provider,
        name=name,
        config=settings,
        monthly_budget=monthly_budget,
        is_active=is_active,
        is_demo=is_demo,
    )
    _apply_secret(account, "api_key", api_key)
    _apply_secret(account, "admin_key", admin_key)
    account.full_clean(exclude=["api_key", "admin_key"])
    account.save()
    audit_record(action=AuditEvent.Action.CREATED, obj=account, after=audit_snapshot(account))
    return account


@transaction.atomic
def account_update(
    *,
    account: ProviderAccount,
    api_key: Any = UNCHANGED,
    admin_key: Any = UNCHANGED,
    **fields: Any,
) -> ProviderAccount:
    """Update plain fields; a secret changes only when a new value (or None to clear) is given.

    ``config`` is merged into the stored settings: keys left out keep their value, None resets
    one to its default. A new provider starts from its own defaults, and is refused once the
    account has usage (account_provider_change_check).
    """
    allowed = {"name", "provider", "config", "monthly_budget", "is_active"}
    for key in fields:
        if key not in allowed:
            raise TypeError(f"account_update() got an unexpected field {key!r}")
    before = audit_state(account)
    provider = fields.get("provider", account.provider)
    account_provider_change_check(account=account, provider=provider)
    same_provider = provider.pk == account.provider_id
    try:
        settings = settings_clean(
            kind=provider.slug,
            values=fields.pop("config", None),
            base=account.config if same_provider else None,
        )
    except ValidationError as exc:
        raise _settings_error(exc) from exc
    for key, value in fields.items():
        setattr(account, key, value)
    account.config = settings
    _apply_secret(account, "api_key", api_key)
    _apply_secret(account, "admin_key", admin_key)
    account.full_clean(exclude=["api_key", "admin_key"])
    account.save()
    changes = audit_changes(before, account)
    audit_record(action=audit_update_action(changes), obj=account, changes=changes)
    return account


@transaction.atomic
def account_delete(*, account: ProviderAccount) -> None:
    audit_record(action=AuditEvent.Action.DELETED, obj=account, before=audit_snapshot(account))
    account.delete()


REQUESTS_PER_MINUTE_MAX = 1_000_000


def requests_per_minute_clean(value) -> int | None:
    """A key's request limit: None (no limit) or a whole number of calls, 1 to 1,000,000."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError({"requests_per_minute": "Enter a whole number of calls, or none."})
    if not 1 <= value <= REQUESTS_PER_MINUTE_MAX:
        raise ValidationError(
            {
                "requests_per_minute": (
                    f"Enter 1 to {REQUESTS_PER_MINUTE_MAX:,} calls a minute, or none for no limit."
                )
            }
        )
    return value


@transaction.atomic
def ingest_key_create(
    *,
    account: ProviderAccount,
    name: str = "",
    created_by: User | None = None,
    requests_per_minute: int | None = None,
) -> tuple[str, IngestKey]:
    """Returns the plaintext key (shown once) and the stored row (SHA-256 only)."""
    requests_per_minute = requests_per_minute_clean(requests_per_minute)
    raw = IngestKey.new_raw_key()
    key = IngestKey.objects.create(
        account=account,
        name=name,
        created_by=created_by,
        digest=hash_ingest_key(raw),
        hint=raw[:10],
        requests_per_minute=requests_per_minute,
    )
    audit_record(action=AuditEvent.Action.CREATED, obj=key, after=audit_snapshot(key))
    return raw, key


@transaction.atomic
def ingest_key_limit_set(*, key: IngestKey, requests_per_minute: int | None) -> IngestKey:
    """Set (or, with None, lift) the most proxied calls a key may make in a clock minute.

    The proxy reads the key afresh (providers/key_memory.py forgets a changed key), so the
    new limit applies from the next call; the current minute's count is kept."""
    requests_per_minute = requests_per_minute_clean(requests_per_minute)
    if key.requests_per_minute == requests_per_minute:
        return key
    before = audit_state(key)
    key.requests_per_minute = requests_per_minute
    key.save(update_fields=["requests_per_minute"])
    audit_record(action=AuditEvent.Action.UPDATED, obj=key, changes=audit_changes(before, key))
    return key


@transaction.atomic
def ingest_key_revoke(*, key: IngestKey) -> None:
    if key.revoked_at is None:
        before = audit_state(key)
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        audit_record(action=AuditEvent.Action.REVOKED, obj=key, changes=audit_changes(before, key))


# last_used_at is a hint for the keys page, not an audit log: one UPDATE a minute per key at
# most keeps the proxy's and ingestion's hot paths at a single statement.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def ingest_key_mark_used(*, key: IngestKey) -> None:
    """Note that a key was used now, at most once a minute. The key may be one a process
    remembers (providers/key_memory.py): its own copy is updated too, so the next request
    does not write again."""
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        IngestKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
