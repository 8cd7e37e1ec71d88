"""Official usage sync: fetch an account's window from its provider, then write it at once.

The fetch runs with no transaction open (it can take minutes of provider time); the write of
the whole window is one transaction. Synced buckets are upserted on their natural key with the
new value, so the same window synced twice, concurrently, or again after a worker was killed
mid-run (django-q2 delivers at least once) leaves identical rows and totals.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from providers.connection import AccountNotReady, adapter_for_account
from providers.http import ProviderError
from providers.models import ProviderAccount, SyncStatus
from usage.models import SyncRun
from usage.services.records import usage_lines_replace_window

logger = logging.getLogger(__name__)

RESYNC_DAYS = 3  # providers revise recent buckets


def _stale_after() -> timedelta:
    # A run "running" for longer than a task may live belongs to a killed worker.
    return timedelta(seconds=settings.Q_CLUSTER.get("timeout", 300))


def sync_window(*, account: ProviderAccount, days: int | None, today: date) -> tuple[date, date]:
    """[start, end) in UTC days: today included, N days back."""
    end = today + timedelta(days=1)
    if days is None:
        has_synced = account.sync_runs.filter(status=SyncRun.Status.SUCCEEDED).exists()
        days = RESYNC_DAYS if has_synced else settings.SYNC_BACKFILL_DAYS
    return end - timedelta(days=days), end


def sync_run_queue(
    *, account: ProviderAccount, trigger: str = "manual", days: int | None = None
) -> SyncRun:
    """Record a queued run (what "Sync now" shows until a worker picks it up)."""
    start, end = sync_window(account=account, days=days, today=timezone.now().date())
    return SyncRun.objects.create(
        account=account, window_start=start, window_end=end, trigger=trigger
    )


def _claim(
    *, account_id: int, run_id: int | None, days: int | None, trigger: str
) -> SyncRun | None:
    """Mark a run as running, or record it as skipped when another run holds the account."""
    now = timezone.now()
    with transaction.atomic():
        # Locks the account row (SQLite: the whole database), so two claims serialise.
        account = (
            ProviderAccount.objects.select_for_update()
            .select_related("provider")
            .get(pk=account_id)
        )
        start, end = sync_window(account=account, days=days, today=now.date())
        run = SyncRun.objects.filter(pk=run_id, account=account).first() if run_id else None
        if run is None:
            run = SyncRun(account=account, window_start=start, window_end=end, trigger=trigger)
        elif run.status != SyncRun.Status.QUEUED:
            # A redelivered task whose run already finished or is running elsewhere.
            return None
        running = account.sync_runs.filter(status=SyncRun.Status.RUNNING).exclude(pk=run.pk)
        live = running.filter(started_at__gt=now - _stale_after())
        if live.exists():
            run.status = SyncRun.Status.SKIPPED
            run.error_message = "skipped: already running"
            run.started_at = run.finished_at = now
            run.save()
            return run
        running.update(
            status=SyncRun.Status.FAILED,
            finished_at=now,
            error_class="Abandoned",
            error_message="the worker stopped before finishing (re-run by a later sync)",
        )
        run.status = SyncRun.Status.RUNNING
        run.started_at = now
        run.save()
        account.last_sync_status = SyncStatus.RUNNING
        account.save(update_fields=["last_sync_status"])
        return run


def _finish_failed(run: SyncRun, exc: Exception, *, needs_attention: bool) -> None:
    message = str(exc)
    if isinstance(exc, ProviderError) and exc.body_excerpt:
        message = f"{message}\nResponse excerpt: {exc.body_excerpt}"
    now = timezone.now()
    with transaction.atomic():
        SyncRun.objects.filter(pk=run.pk).update(
            status=SyncRun.Status.FAILED,
            finished_at=now,
            error_class=type(exc).__name__,
            error_message=message,
        )
        fields = {
            "last_sync_at": now,
            "last_sync_status": SyncStatus.FAILED,
            "last_sync_error": str(exc),
        }
        if needs_attention:
            fields["needs_attention"] = True
        ProviderAccount.objects.filter(pk=run.account_id).update(**fields)
    run.refresh_from_db()


def usage_sync(
    *,
    account_id: int,
    days: int | None = None,
    run_id: int | None = None,
    trigger: str = "schedule",
    adapter_options: dict | None = None,
) -> SyncRun | None:
    """Sync one account's official usage. Returns the run, or None for a stale redelivery."""
    run = _claim(account_id=account_id, run_id=run_id, days=days, trigger=trigger)
    if run is None or run.status == SyncRun.Status.SKIPPED:
        return run
    account = run.account
    try:
        adapter = adapter_for_account(account, **(adapter_options or {}))
        if not adapter.supports_sync:
            raise AccountNotReady(f"{account.provider.name} has no official usage API.")
        lines = adapter.fetch_daily_usage(start=run.window_start, end=run.window_end)
    except ProviderError as exc:
        auth = exc.permanent and exc.status in (401, 403)
        _finish_failed(run, exc, needs_attention=auth)
        logger.warning("sync of account %s failed: %s", account_id, exc.message)
        return run
    except AccountNotReady as exc:
        _finish_failed(run, exc, needs_attention=True)
        return run

    try:
        with transaction.atomic():
            counts = usage_lines_replace_window(
                account=account, start=run.window_start, end=run.window_end, lines=lines
            )
            now = timezone.now()
            SyncRun.objects.filter(pk=run.pk).update(
                status=SyncRun.Status.SUCCEEDED,
                finished_at=now,
                fetched=counts.fetched,
                created=counts.created,
                updated=counts.updated + counts.deleted,
            )
            ProviderAccount.objects.filter(pk=account.pk).update(
                last_sync_at=now,
                last_sync_status=SyncStatus.SUCCEEDED,
                last_sync_error="",
                needs_attention=False,
            )
    except Exception as exc:  # noqa: BLE001 - any write failure is recorded; nothing partial stays
        _finish_failed(run, exc, needs_attention=False)
        logger.exception("writing sync of account %s failed", account_id)
        return run
    run.refresh_from_db()
    _after_sync(account_id=account.pk)
    return run


def _after_sync(*, account_id: int) -> None:
    """Hook for what must follow new figures (budget alerts evaluate here)."""
    try:
        from alerts.services import alerts_evaluate_for_account
    except ImportError:
        return
    alerts_evaluate_for_account(account_id=account_id)
