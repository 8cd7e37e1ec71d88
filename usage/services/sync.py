"""Official usage sync: fetch an account's window from its provider, then write it at once.

The fetch runs with no transaction open (it can take minutes of provider time); the write of
the whole window is one transaction. Synced buckets are upserted on their natural key with the
new value, so the same window synced twice, concurrently, or again after a worker was killed
mid-run (django-q2 delivers at least once) leaves identical rows and totals.

Every call leaves a SyncRun: succeeded with its counts, failed with the error (and an excerpt of
the provider's body for bad data), or skipped because another run holds the account.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from providers.connection import AccountNotReady, adapter_for_account
from providers.http import ProviderError, provider_message
from providers.models import ProviderAccount, SyncStatus
from providers.registry import get_adapter_class
from usage.models import SyncRun
from usage.services.records import usage_lines_replace_window

logger = logging.getLogger(__name__)

RESYNC_DAYS = 3  # providers revise recent buckets
ACTIVE = (SyncRun.Status.QUEUED, SyncRun.Status.RUNNING)
SKIPPED_MESSAGE = "skipped: already running"


def stale_after() -> timedelta:
    """How long a run may stay "running" before it must belong to a killed worker.

    django-q2 kills a task after `timeout` seconds, so a run older than that is no longer
    running anywhere; `retry` (longer than `timeout`) is when the broker redelivers it.
    """
    return timedelta(seconds=settings.Q_CLUSTER.get("timeout", 300))


def queued_stale_after() -> timedelta:
    # A queued run nobody picked up within a redelivery period is not coming (no cluster).
    return timedelta(seconds=settings.Q_CLUSTER.get("retry", 360))


def account_supports_sync(account: ProviderAccount) -> bool:
    try:
        return get_adapter_class(account.provider.slug).supports_sync
    except ValueError:
        return False


def run_is_stale(run: SyncRun, *, now=None) -> bool:
    """A queued or running run that no worker is going to finish."""
    now = now or timezone.now()
    if run.status == SyncRun.Status.RUNNING:
        return run.started_at is None or run.started_at <= now - stale_after()
    if run.status == SyncRun.Status.QUEUED:
        return run.created_at <= now - queued_stale_after()
    return False


def sync_window(*, account: ProviderAccount, days: int | None, today: date) -> tuple[date, date]:
    """[start, end) in UTC days: today included, N days back.

    Without `days`: the last RESYNC_DAYS days, or SYNC_BACKFILL_DAYS for an account that has
    never synced successfully.
    """
    end = today + timedelta(days=1)
    if days is None:
        has_synced = account.sync_runs.filter(status=SyncRun.Status.SUCCEEDED).exists()
        days = RESYNC_DAYS if has_synced else getattr(settings, "SYNC_BACKFILL_DAYS", 30)
    if days < 1:
        raise ValueError("days must be at least 1")
    return end - timedelta(days=days), end


def sync_run_queue(
    *, account: ProviderAccount, trigger: str = "manual", days: int | None = None
) -> tuple[SyncRun, bool]:
    """Record a queued run (what "Sync now" shows until a worker picks it up).

    Returns (run, created). A live queued or running run of the account is returned instead of
    adding another, so clicking twice does not queue two syncs.
    """
    now = timezone.now()
    with transaction.atomic():
        account = ProviderAccount.objects.select_for_update().get(pk=account.pk)
        for run in account.sync_runs.filter(status__in=ACTIVE).order_by("-created_at", "-id"):
            if not run_is_stale(run, now=now):
                return run, False
        start, end = sync_window(account=account, days=days, today=now.date())
        run = SyncRun.objects.create(
            account=account, window_start=start, window_end=end, trigger=trigger
        )
        ProviderAccount.objects.filter(pk=account.pk).update(last_sync_status=SyncStatus.QUEUED)
    return run, True


def sync_request(*, account: ProviderAccount) -> tuple[SyncRun, bool]:
    """ "Sync now": queue a run and hand it to the django-q2 cluster."""
    from django_q.tasks import async_task

    from usage.tasks import run_inline

    run, created = sync_run_queue(account=account, trigger="manual")
    if created:
        async_task(
            "usage.tasks.sync_account",
            account.pk,
            run.pk,
            task_name=f"sync-account-{account.pk}-run-{run.pk}",
            group="usage-sync",
            sync=run_inline(),
        )
    return run, created


def _claim(
    *, account_id: int, run_id: int | None, days: int | None, trigger: str
) -> SyncRun | None:
    """Mark a run as running, or record it as skipped when another run holds the account.

    Returns None for a redelivered task whose run already finished or is still running.
    """
    now = timezone.now()
    with transaction.atomic():
        # Locks the account row (SQLite: an IMMEDIATE transaction locks the database), so two
        # claims of one account serialise and the second sees the first one's running run.
        account = (
            ProviderAccount.objects.select_for_update()
            .select_related("provider")
            .get(pk=account_id)
        )
        run = SyncRun.objects.filter(pk=run_id, account=account).first() if run_id else None
        if run is None:
            start, end = sync_window(account=account, days=days, today=now.date())
            run = SyncRun(account=account, window_start=start, window_end=end, trigger=trigger)
        elif run.status == SyncRun.Status.RUNNING and run_is_stale(run, now=now):
            # The broker redelivered a task whose worker was killed: run it again.
            pass
        elif run.status != SyncRun.Status.QUEUED:
            return None
        running = account.sync_runs.filter(status=SyncRun.Status.RUNNING).exclude(pk=run.pk)
        live = running.filter(started_at__gt=now - stale_after())
        if live.exists():
            run.status = SyncRun.Status.SKIPPED
            run.error_message = SKIPPED_MESSAGE
            run.started_at = run.finished_at = now
            run.save()
            return run
        running.update(
            status=SyncRun.Status.FAILED,
            finished_at=now,
            error_class="Abandoned",
            error_message="the worker stopped before finishing; a later sync re-fetched the days",
        )
        run.status = SyncRun.Status.RUNNING
        run.started_at = now
        run.finished_at = None
        run.save()
        ProviderAccount.objects.filter(pk=account.pk).update(last_sync_status=SyncStatus.RUNNING)
        run.account = account
        return run


def _redact(text: str, secret: str) -> str:
    # Providers sometimes echo (part of) the key back; it must never reach a page or a log.
    if secret and len(secret) >= 8:
        text = text.replace(secret, "[redacted]")
    return text


def _error_text(exc: Exception) -> tuple[str, str]:
    """(short message for the account, full message for the run log)."""
    if isinstance(exc, ProviderError):
        short = exc.message
        detail = provider_message(exc.body_excerpt)
        if detail and detail[:200] not in short:
            short = f"{short}: {detail[:200]}"
        full = short
        if exc.body_excerpt:
            full = f"{short}\nResponse excerpt: {exc.body_excerpt}"
        return short, full
    text = str(exc) or type(exc).__name__
    return text, text


def _finish_failed(run: SyncRun, exc: Exception, *, needs_attention: bool, secret: str) -> None:
    short, full = _error_text(exc)
    short, full = _redact(short, secret), _redact(full, secret)
    now = timezone.now()
    with transaction.atomic():
        SyncRun.objects.filter(pk=run.pk).update(
            status=SyncRun.Status.FAILED,
            finished_at=now,
            error_class=type(exc).__name__,
            error_message=full,
        )
        fields = {
            "last_sync_at": now,
            "last_sync_status": SyncStatus.FAILED,
            "last_sync_error": short,
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
    """Sync one account's official usage. Returns the run, or None for a stale redelivery.

    Never raises for a provider or data problem: the run records it. Auth failures (401/403)
    mark the account needs_attention and are not retried; temporary failures were already
    retried (bounded) by providers.http.
    """
    run = _claim(account_id=account_id, run_id=run_id, days=days, trigger=trigger)
    if run is None or run.status == SyncRun.Status.SKIPPED:
        return run
    account = run.account
    secret = ""
    try:
        if not account_supports_sync(account):
            raise AccountNotReady(f"{account.provider.name} has no official usage API.")
        adapter = adapter_for_account(account, **(adapter_options or {}))
        secret = adapter.secret
        lines = adapter.fetch_daily_usage(start=run.window_start, end=run.window_end)
    except ProviderError as exc:
        auth = exc.permanent and exc.status in (401, 403)
        _finish_failed(run, exc, needs_attention=auth, secret=secret)
        logger.warning("sync of account %s failed: %s", account_id, run.error_message)
        return run
    except AccountNotReady as exc:
        _finish_failed(run, exc, needs_attention=account_supports_sync(account), secret=secret)
        return run
    except Exception as exc:  # an adapter bug must still end the run, not leave it "running"
        _finish_failed(run, exc, needs_attention=False, secret=secret)
        logger.exception("sync of account %s failed", account_id)
        return run

    try:
        with transaction.atomic():
            # Serialises writers of one account (a stale run re-claimed while the old worker
            # still writes), so the second sees the first's rows and upserts over them.
            ProviderAccount.objects.select_for_update().filter(pk=account.pk).first()
            counts = usage_lines_replace_window(
                account=account, start=run.window_start, end=run.window_end, lines=lines
            )
            now = timezone.now()
            SyncRun.objects.filter(pk=run.pk).update(
                status=SyncRun.Status.SUCCEEDED,
                finished_at=now,
                fetched=counts.fetched,
                created=counts.created,
                # A line the provider stopped reporting was removed: a change, like an update.
                updated=counts.updated + counts.deleted,
                error_class="",
                error_message="",
            )
            ProviderAccount.objects.filter(pk=account.pk).update(
                last_sync_at=now,
                last_sync_status=SyncStatus.SUCCEEDED,
                last_sync_error="",
                needs_attention=False,
            )
    except Exception as exc:  # any write failure is recorded; the rollback leaves nothing partial
        _finish_failed(run, exc, needs_attention=False, secret=secret)
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
    try:
        alerts_evaluate_for_account(account_id=account_id)
    except Exception:  # the sync itself succeeded; alerting has its own retries and logs
        logger.exception("alert evaluation after sync of account %s failed", account_id)
