"""Official usage sync: fetch an account's window from its provider, then write it at once.

The fetch runs with no transaction open and within a total time budget
(SYNC_TIME_BUDGET_SECONDS: every request's timeout is bounded by what is left); the write of
the whole window is one transaction. Synced buckets are upserted on their natural key with the
new value, so the same window synced twice, concurrently, or again after a worker was killed
mid-run (django-q2 delivers at least once) leaves identical rows and totals.

A worker is never held by a failing provider: a task sync tries each request once and hands a
temporary failure (rate limit, timeout, 5xx, network, garbled body) to a later task, scheduled
with backoff, up to SYNC_MAX_ATTEMPTS tries in all.

A running run renews a lease (``heartbeat_at``) as it works. One silent for SYNC_LEASE_SECONDS
lost its worker: it is marked failed (``stale``) by the next claim or "Sync now", and a run only
writes while it is still the account's running run, so at most one run per account writes.

Every call leaves a SyncRun: succeeded with its counts, failed with a structured error class and
a redacted message, or skipped because another run holds the account.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from providers.connection import AccountNotReady, account_secrets, adapter_for_account
from providers.http import Budget, ErrorClass, ProviderError
from providers.models import ProviderAccount, RateLimitHit, SyncStatus
from providers.ratelimits.services import ratelimit_hit_record
from providers.redaction import redact, redacted_logger, secrets_redacted
from providers.registry import get_adapter_class
from usage.models import SyncRun
from usage.services.records import usage_lines_replace_window

logger = redacted_logger(__name__)

RESYNC_DAYS = 3  # providers revise recent buckets
ACTIVE = (SyncRun.Status.QUEUED, SyncRun.Status.RUNNING)
SKIPPED_MESSAGE = "skipped: already running"
STALE_MESSAGE = "The worker stopped before finishing (no heartbeat for {seconds} s); sync again."
MAX_RETRY_DELAY_SECONDS = 3600
HEARTBEAT_EVERY = timedelta(seconds=5)


def stale_after() -> timedelta:
    """How long a running run may go without a heartbeat before it must have lost its worker."""
    return timedelta(seconds=settings.SYNC_LEASE_SECONDS)


def queued_stale_after() -> timedelta:
    # A queued run nobody picked up within a redelivery period is not coming (no cluster).
    return timedelta(seconds=settings.Q_CLUSTER.get("retry", 360))


def account_supports_sync(account: ProviderAccount) -> bool:
    try:
        return get_adapter_class(account.provider.slug).supports_sync
    except ValueError:
        return False


def run_is_stale(run: SyncRun, *, now: datetime | None = None) -> bool:
    """A queued or running run that no worker is going to finish."""
    now = now or timezone.now()
    if run.status == SyncRun.Status.RUNNING:
        last_sign_of_life = run.heartbeat_at or run.started_at
        return last_sign_of_life is None or last_sign_of_life <= now - stale_after()
    if run.status == SyncRun.Status.QUEUED:
        return run.created_at <= now - queued_stale_after()
    return False


def _expire_stale_runs(*, account: ProviderAccount, now: datetime, keep: int | None = None) -> None:
    """Mark the account's stale queued/running runs failed (``stale``). Call under its lock."""
    stale = [
        run.pk
        for run in account.sync_runs.filter(status__in=ACTIVE).exclude(pk=keep)
        if run_is_stale(run, now=now)
    ]
    if stale:
        SyncRun.objects.filter(pk__in=stale).update(
            status=SyncRun.Status.FAILED,
            finished_at=now,
            error_class=ErrorClass.STALE,
            error_message=STALE_MESSAGE.format(seconds=settings.SYNC_LEASE_SECONDS),
        )


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
    adding another, so clicking twice does not queue two syncs; a stale one is marked failed
    and a new run is queued.
    """
    now = timezone.now()
    with transaction.atomic():
        account = ProviderAccount.objects.select_for_update().get(pk=account.pk)
        _expire_stale_runs(account=account, now=now)
        live = account.sync_runs.filter(status__in=ACTIVE).order_by("-created_at", "-id").first()
        if live is not None:
            return live, False
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
    *,
    account_id: int,
    run_id: int | None,
    days: int | None,
    trigger: str,
    attempt: int = 1,
    retry_of: int | None = None,
) -> SyncRun | None:
    """Mark a run as running, or record it as skipped when another run holds the account.

    Returns None for a redelivered task whose run already finished or is still running, and
    for a retry that a later run has made pointless.
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
        if retry_of is not None and account.sync_runs.filter(pk__gt=retry_of).exists():
            return None  # someone synced (or is syncing) since the failure: nothing to retry
        run = SyncRun.objects.filter(pk=run_id, account=account).first() if run_id else None
        if run is None:
            start, end = sync_window(account=account, days=days, today=now.date())
            run = SyncRun(
                account=account,
                window_start=start,
                window_end=end,
                trigger=trigger,
                attempt=attempt,
            )
        elif run.status == SyncRun.Status.RUNNING and run_is_stale(run, now=now):
            # The broker redelivered a task whose worker was killed: run it again.
            pass
        elif run.status != SyncRun.Status.QUEUED:
            return None
        _expire_stale_runs(account=account, now=now, keep=run.pk)
        live = account.sync_runs.filter(status=SyncRun.Status.RUNNING).exclude(pk=run.pk)
        if live.exists():
            run.status = SyncRun.Status.SKIPPED
            run.error_message = SKIPPED_MESSAGE
            run.started_at = run.finished_at = now
            run.save()
            return run
        run.status = SyncRun.Status.RUNNING
        run.started_at = run.heartbeat_at = now
        run.finished_at = None
        run.save()
        ProviderAccount.objects.filter(pk=account.pk).update(last_sync_status=SyncStatus.RUNNING)
        run.account = account
        return run


def sync_run_heartbeat(*, run_id: int, at: datetime | None = None) -> bool:
    """Renew a running run's lease. False when the run is no longer running (marked stale)."""
    at = at or timezone.now()
    return bool(
        SyncRun.objects.filter(pk=run_id, status=SyncRun.Status.RUNNING).update(heartbeat_at=at)
    )


def _heartbeat(run: SyncRun):
    """A Budget.on_request hook: renew the lease at most every HEARTBEAT_EVERY."""
    last = {"at": run.heartbeat_at}

    # Often enough that a live run never looks stale, whatever SYNC_LEASE_SECONDS is.
    every = min(HEARTBEAT_EVERY, stale_after() / 4)

    def beat() -> None:
        now = timezone.now()
        if last["at"] is None or now - last["at"] >= every:
            sync_run_heartbeat(run_id=run.pk, at=now)
            last["at"] = now

    return beat


def sync_error_summary(exc: Exception, *, secrets: tuple[str, ...]) -> tuple[str, str, str]:
    """(error class, one-line message, full message for the run log), all redacted.

    The one place a sync failure becomes text: the message is what a person reads first
    (account list, status cell), the full text adds the technical detail and the provider's
    body excerpt (sync history).
    """
    if isinstance(exc, ProviderError):
        error_class, short = exc.error_class, exc.message
        # An HTTP answer's detail is the provider's own message: short, and worth the first
        # line. Without an answer it is an exception's text: for the details only.
        if exc.status is not None and exc.detail and exc.detail[:200] not in short:
            short = f"{short}: {exc.detail[:200]}"
        full = short
        if exc.status is None and exc.detail:
            full = f"{full}\nDetail: {exc.detail}"
        if exc.body_excerpt:
            full = f"{full}\nResponse excerpt: {exc.body_excerpt}"
    elif isinstance(exc, AccountNotReady):
        error_class, short = ErrorClass.CONFIG, str(exc)
        full = short
    else:
        error_class = ErrorClass.INTERNAL
        short = f"Internal error while syncing ({type(exc).__name__}); see the server log."
        full = f"{short}\nDetail: {exc}"
    return error_class, redact(short, secrets), redact(full, secrets)


def _finish_failed(
    run: SyncRun,
    exc: Exception,
    *,
    needs_attention: bool,
    secrets: tuple[str, ...],
    retry_later: bool = False,
) -> bool:
    """Record the failure on the run and the account. False if the run was no longer ours.

    With ``retry_later`` a temporary provider failure also schedules its retry, in the same
    transaction: a worker killed in between must not leave a failed run that nothing will
    try again (it used to be written just after the commit).
    """
    error_class, short, full = sync_error_summary(exc, secrets=secrets)
    now = timezone.now()
    with transaction.atomic():
        mine = SyncRun.objects.filter(pk=run.pk, status=SyncRun.Status.RUNNING).update(
            status=SyncRun.Status.FAILED,
            finished_at=now,
            error_class=error_class,
            error_message=full,
        )
        if mine:
            fields = {
                "last_sync_at": now,
                "last_sync_status": SyncStatus.FAILED,
                "last_sync_error": short,
            }
            if needs_attention:
                fields["needs_attention"] = True
            ProviderAccount.objects.filter(pk=run.account_id).update(**fields)
            if retry_later and isinstance(exc, ProviderError):
                sync_retry_schedule(run=run, exc=exc)
    run.refresh_from_db()
    return bool(mine)


def sync_retry_delay(*, attempt: int, retry_after: int | None = None) -> int:
    """Seconds before try ``attempt + 1``: base × 2^(attempt-1), at least the provider's
    Retry-After, at most an hour."""
    delay = settings.SYNC_RETRY_BASE_SECONDS * 2 ** (attempt - 1)
    if retry_after:
        delay = max(delay, retry_after)
    return min(delay, MAX_RETRY_DELAY_SECONDS)


def sync_retry_schedule(*, run: SyncRun, exc: ProviderError) -> datetime | None:
    """Schedule a later task to try a temporarily failed run again; None if it will not be.

    A django-q2 ONCE schedule (the cluster's scheduler starts it within ~30 s of next_run)
    named after the run, so a redelivered task cannot schedule the same retry twice.
    """
    from django_q.models import Schedule
    from django_q.tasks import schedule

    if exc.permanent or run.attempt >= settings.SYNC_MAX_ATTEMPTS:
        return None
    delay = sync_retry_delay(attempt=run.attempt, retry_after=exc.retry_after)
    next_run = timezone.now() + timedelta(seconds=delay)
    name = f"sync-retry-run-{run.pk}"
    if Schedule.objects.filter(name=name).exists():
        return run.next_retry_at
    schedule(
        "usage.tasks.sync_account",
        run.account_id,
        name=name,
        schedule_type=Schedule.ONCE,
        next_run=next_run,
        days=(run.window_end - run.window_start).days,
        attempt=run.attempt + 1,
        retry_of=run.pk,
    )
    SyncRun.objects.filter(pk=run.pk).update(next_retry_at=next_run)
    run.next_retry_at = next_run
    return next_run


def usage_sync(
    *,
    account_id: int,
    days: int | None = None,
    run_id: int | None = None,
    trigger: str = "schedule",
    adapter_options: dict | None = None,
    retry_later: bool = False,
    attempt: int = 1,
    retry_of: int | None = None,
) -> SyncRun | None:
    """Sync one account's official usage. Returns the run, or None for a stale redelivery.

    Never raises for a provider or data problem: the run records it. Auth failures (401/403)
    mark the account needs_attention and are not retried. With ``retry_later`` (the task path)
    each request is tried once and a temporary failure schedules a later task; without it (a
    command run by a person) the HTTP wrapper retries in place, within the time budget.
    """
    run = _claim(
        account_id=account_id,
        run_id=run_id,
        days=days,
        trigger=trigger,
        attempt=attempt,
        retry_of=retry_of,
    )
    if run is None or run.status == SyncRun.Status.SKIPPED:
        return run
    secrets = account_secrets(account=run.account)
    # Everything below (messages, log lines, tracebacks) is redacted of the account's secrets.
    with secrets_redacted(secrets):
        return _sync_claimed(
            run, secrets=secrets, adapter_options=adapter_options, retry_later=retry_later
        )


def _sync_claimed(
    run: SyncRun, *, secrets: tuple[str, ...], adapter_options: dict | None, retry_later: bool
) -> SyncRun:
    account, account_id = run.account, run.account_id
    options = dict(adapter_options or {})
    options.setdefault(
        "budget",
        Budget(
            seconds=settings.SYNC_TIME_BUDGET_SECONDS,
            max_tries=1 if retry_later else None,
        ),
    )
    options["budget"].on_request = _heartbeat(run)
    options["budget"].on_rate_limited = _rate_limit_counter(account_id)
    try:
        if not account_supports_sync(account):
            raise AccountNotReady(f"{account.provider.name} has no official usage API.")
        adapter = adapter_for_account(account, **options)
        lines = adapter.fetch_daily_usage(start=run.window_start, end=run.window_end)
    except ProviderError as exc:
        auth = exc.error_class == ErrorClass.AUTH
        _finish_failed(run, exc, needs_attention=auth, secrets=secrets, retry_later=retry_later)
        logger.warning(
            "sync of account %s failed (%s): %s", account_id, run.error_class, run.error_message
        )
        return run
    except AccountNotReady as exc:
        _finish_failed(run, exc, needs_attention=account_supports_sync(account), secrets=secrets)
        return run
    except Exception as exc:  # an adapter bug must still end the run, not leave it "running"
        _finish_failed(run, exc, needs_attention=False, secrets=secrets)
        logger.exception("sync of account %s failed", account_id)
        return run

    try:
        with transaction.atomic():
            # Serialises writers of one account; a run marked stale meanwhile (its lease ran
            # out and a newer run took over) must not write: the newer run owns the account.
            ProviderAccount.objects.select_for_update().filter(pk=account.pk).first()
            if not sync_run_heartbeat(run_id=run.pk):
                logger.warning(
                    "sync run %s of account %s lost its lease; its results were dropped",
                    run.pk,
                    account_id,
                )
                run.refresh_from_db()
                return run
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
                next_retry_at=None,
            )
            ProviderAccount.objects.filter(pk=account.pk).update(
                last_sync_at=now,
                last_sync_status=SyncStatus.SUCCEEDED,
                last_sync_error="",
                needs_attention=False,
            )
    except Exception as exc:  # any write failure is recorded; the rollback leaves nothing partial
        _finish_failed(run, exc, needs_attention=False, secrets=secrets)
        logger.exception("writing sync of account %s failed", account_id)
        return run
    run.refresh_from_db()
    _after_sync(account_id=account.pk)
    return run


def _rate_limit_counter(account_id: int):
    """Counts each 429 a usage or cost API answers (model "": not a model's limit)."""

    def count(exc: ProviderError) -> None:
        ratelimit_hit_record(
            account_id=account_id, source=RateLimitHit.Source.SYNC, at=timezone.now()
        )

    return count


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
