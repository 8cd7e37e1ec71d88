"""django-q2 entry points: thin wrappers over services, safe to run more than once."""

from __future__ import annotations

from django.conf import settings
from django.db.models import QuerySet
from django_q.tasks import async_task

from providers.models import ProviderAccount
from providers.registry import syncable_kinds
from usage.services.sync import usage_sync


def sync_account(
    account_id: int,
    run_id: int | None = None,
    days: int | None = None,
    attempt: int = 1,
    retry_of: int | None = None,
) -> str:
    """Sync one account. Provider and data errors end up on the SyncRun, not as a task failure.

    Returning normally matters: django-q2 would otherwise count a permanent error (a rejected
    key) as a failure worth redelivering. A temporary failure is not retried here (the worker
    is freed at once): the service schedules this task again (``attempt``, ``retry_of``).
    The result holds no provider text, so nothing secret lands in django-q2's task table.
    """
    if not ProviderAccount.objects.filter(pk=account_id).exists():
        return f"account {account_id}: deleted"
    if retry_of is not None:
        trigger = "retry"
    else:
        trigger = "manual" if run_id else "schedule"
    run = usage_sync(
        account_id=account_id,
        run_id=run_id,
        days=days,
        trigger=trigger,
        retry_later=True,
        attempt=attempt,
        retry_of=retry_of,
    )
    if run is None:
        return f"account {account_id}: already handled"
    outcome = f"{run.status} ({run.error_class})" if run.error_class else run.status
    return f"account {account_id}: {outcome}"


def syncable_accounts() -> QuerySet[ProviderAccount]:
    return ProviderAccount.objects.filter(
        is_active=True, provider__slug__in=syncable_kinds(), admin_key__isnull=False
    ).order_by("pk")


def sync_all_accounts() -> int:
    """One task per account, so a failing or slow account never delays the others."""
    ids = list(syncable_accounts().values_list("pk", flat=True))
    for account_id in ids:
        async_task(
            "usage.tasks.sync_account",
            account_id,
            task_name=f"sync-account-{account_id}",
            group="usage-sync",
            sync=run_inline(),
        )
    return len(ids)


def run_inline() -> bool:
    # django-q2 reads Q_CLUSTER once at import; reading it per call lets tests and one-off
    # scripts switch to sync mode with an ordinary settings override.
    return bool(settings.Q_CLUSTER.get("sync", False))


def raw_history_maintain() -> str:
    """Scheduled daily: make the coming months' partitions, then apply RAW_RETENTION_DAYS."""
    from usage.services.history import partitions_create_ahead, raw_history_prune

    made = partitions_create_ahead()
    pruned = raw_history_prune()
    gone = f"; records before {pruned.before:%Y-%m-%d} removed" if pruned.before else ""
    return (
        f"{len(made)} partitions made, {pruned.months} dropped, "
        f"{pruned.records} records and {pruned.keys} request keys deleted{gone}"
    )
