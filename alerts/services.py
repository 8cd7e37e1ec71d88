"""Writes for budgets, alerts and notifications.

Evaluation runs within 60 s of every change in spend (``alerts_evaluation_request``, below),
right after every sync (usage.services.sync calls ``alerts_evaluate_for_account``), when a
budget is saved, and every 15 minutes (``alerts.tasks.evaluate_all``). Every alert has
a dedupe key unique per workspace, so evaluating again — or twice at once — never fires twice:

* thresholds: ``<target>:<YYYY-MM>:<threshold>:<amount>`` — once per budget month; the month
  is the calendar month in the workspace's time zone, so it resets there. Editing the amount makes
  a new budget as far as alerts go, so its thresholds can fire again.
* forecast: ``<target>:<YYYY-MM>:forecast:<amount>``.
* anomalies: ``anomaly:<detector>:<account>:<model>:<day>``.

Each new alert is sent to each active channel of its workspace by its own django-q2 task, so a
failing webhook never holds up an email.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import partial

import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule

from accounts.models import Workspace
from alerts import selectors
from alerts.anomalies import (
    Anomaly,
    detect_cache_collapse,
    detect_pricier_model_switch,
    detect_spend_spikes,
)
from alerts.enforcement import enforced_budgets_forget, enforced_spend_refresh
from alerts.forecast import budget_forecast_message, format_usd
from alerts.models import Alert, Budget, EvaluationDue, NotificationChannel, NotificationDelivery
from alerts.ratelimits import ratelimit_alerts
from alerts.webhooks import FORMATS, Notice, WebhookURLError, validate_webhook_url, webhook_body
from audit.models import AuditEvent
from audit.services import audit_changes, audit_record, audit_snapshot, audit_state
from costtracker.queue import task_enqueue_on_commit
from providers.models import IngestKey, Provider, ProviderAccount
from usage import bounds
from usage.selectors import today_for

logger = logging.getLogger(__name__)

DEDUPE_KEY_MAX = 200
THRESHOLD_MIN, THRESHOLD_MAX = 1, 1000
ANOMALY_WINDOW_DAYS = 14
# Only the last few days are judged, so a first sync that backfills months of history does not
# raise an alert for every old spike; three days covers official figures that arrive late.
ANOMALY_LOOKBACK_DAYS = 3
WEBHOOK_TIMEOUT = (5, 10)  # connect, read (seconds)
# Longer than any one try can take (the webhook's timeouts, or an email's): a try started
# longer ago than this whose outcome was never written died with its worker.
NOTIFY_TRY_SECONDS = 60


# --- alerts ----------------------------------------------------------------------------------


def _dedupe_key(raw: str) -> str:
    if len(raw) <= DEDUPE_KEY_MAX:
        return raw
    # Long model names: keep a readable prefix and a digest of the whole key.
    return f"{raw[:135]}~{hashlib.sha256(raw.encode()).hexdigest()}"


def alert_fire(
    *,
    workspace: Workspace,
    kind: str,
    dedupe_key: str,
    message: str,
    budget: Budget | None = None,
    account: ProviderAccount | None = None,
    threshold: int | None = None,
    period: date | None = None,
    data: dict | None = None,
    listed: bool = True,
) -> tuple[Alert, bool]:
    """The alert with this dedupe key, created if it does not exist yet. (alert, created).

    get_or_create recovers from the IntegrityError of a concurrent insert by reading the row
    the other writer made, so two evaluations at once still fire one alert.
    """
    return Alert.objects.get_or_create(
        workspace=workspace,
        dedupe_key=_dedupe_key(dedupe_key),
        defaults={
            "kind": kind,
            "message": message,
            "budget": budget,
            "account": account,
            "threshold": threshold,
            "period": period,
            "data": data or {},
            "listed": listed,
            # A row kept only for its key (a threshold passed silently) needs no attention.
            "acknowledged_at": None if listed else timezone.now(),
        },
    )


def alert_manual_create(
    *, workspace: Workspace, message: str, account: ProviderAccount | None = None
) -> Alert:
    """A note a member files themselves (POST /api/alerts)."""
    message = (message or "").strip()
    if not message:
        raise ValidationError({"message": "Enter a message."})
    if account is not None and account.workspace_id != workspace.pk:
        raise ValidationError({"account": "Not one of your accounts."})
    alert, _ = alert_fire(
        workspace=workspace,
        kind=Alert.Kind.MANUAL,
        dedupe_key=f"manual:{uuid.uuid4()}",
        message=message,
        account=account,
    )
    return alert


def alert_acknowledge(*, alert: Alert) -> Alert:
    if alert.acknowledged_at is None:
        alert.acknowledged_at = timezone.now()
        alert.save(update_fields=["acknowledged_at"])
    return alert


def alert_unacknowledge(*, alert: Alert) -> Alert:
    if alert.acknowledged_at is not None:
        alert.acknowledged_at = None
        alert.save(update_fields=["acknowledged_at"])
    return alert


def alerts_acknowledge(*, workspace: Workspace, ids) -> int:
    """Acknowledge several of the workspace's alerts at once; others' ids are ignored.

    Returns how many were newly acknowledged (already acknowledged ones keep their time).
    """
    return Alert.objects.filter(workspace=workspace, pk__in=list(ids), acknowledged_at=None).update(
        acknowledged_at=timezone.now()
    )


def alert_delete(*, alert: Alert) -> None:
    alert.delete()


def alert_url(alert: Alert) -> str:
    """The alert's page in the app, for emails and webhooks (SITE_URL + path)."""
    base = str(getattr(settings, "SITE_URL", "") or "http://127.0.0.1:8000").rstrip("/")
    return base + reverse("alert-detail", args=[alert.pk])


# --- budgets ---------------------------------------------------------------------------------


def thresholds_clean(value) -> list[int]:
    """A non-empty list of whole percentages 1..1000, deduplicated and sorted."""
    if not isinstance(value, (list, tuple)) or not value:
        raise ValidationError("Give a list of percentages, e.g. [80, 100].")
    cleaned = set()
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int):
            raise ValidationError(f"{item!r} is not a whole number.")
        if not THRESHOLD_MIN <= item <= THRESHOLD_MAX:
            raise ValidationError(
                f"{item} is out of range: thresholds are {THRESHOLD_MIN} to {THRESHOLD_MAX} %."
            )
        cleaned.add(item)
    return sorted(cleaned)


# The fields naming what each scope covers; every other target field stays empty.
_SCOPE_FIELDS = {
    Budget.Scope.OVERALL: (),
    Budget.Scope.PROVIDER: ("provider",),
    Budget.Scope.ACCOUNT: ("account",),
    Budget.Scope.INGEST_KEY: ("ingest_key",),
    Budget.Scope.TAG: ("tag", "tag_value"),
}
_TARGET_FIELDS = ("provider", "account", "ingest_key", "tag", "tag_value")
# Public: the budget form leaves the other scopes' pickers out by the same table.
BUDGET_SCOPE_FIELDS = _SCOPE_FIELDS
_MISSING = {
    "provider": "Choose the provider this budget covers.",
    "account": "Choose the account this budget covers.",
    "ingest_key": "Choose the ingest key this budget covers.",
    "tag": "Choose the tag (project, user or feature) this budget covers.",
    "tag_value": "Enter the tag value this budget covers.",
}


def _target_value(budget: Budget, name: str):
    return getattr(budget, f"{name}_id" if name in ("provider", "account", "ingest_key") else name)


def _budget_validate(budget: Budget) -> None:
    errors: dict[str, str] = {}
    scope = budget.scope
    if scope not in Budget.Scope.values:
        raise ValidationError({"scope": f"Choose one of {', '.join(Budget.Scope.values)}."})
    if budget.period not in Budget.Period.values:
        raise ValidationError({"period": f"Choose one of {', '.join(Budget.Period.values)}."})
    budget.tag_value = (budget.tag_value or "").strip()
    for name in _TARGET_FIELDS:
        given = _target_value(budget, name) not in (None, "")
        if name in _SCOPE_FIELDS[scope] and not given:
            errors[name] = _MISSING[name]
        elif name not in _SCOPE_FIELDS[scope] and given:
            what = Budget.Scope(scope).label.lower()
            errors[name] = f"A budget for {what} has no {name.replace('_', ' ')}."
    if budget.tag and budget.tag not in Budget.Tag.values:
        errors["tag"] = f"Choose one of {', '.join(Budget.Tag.values)}."
    if budget.tag_value and (problem := bounds.tag_problem(budget.tag_value)):
        errors["tag_value"] = problem
    if budget.account_id is not None and budget.account.workspace_id != budget.workspace_id:
        errors["account"] = "Not one of your accounts."
    if (
        budget.ingest_key_id is not None
        and budget.ingest_key.account.workspace_id != budget.workspace_id
    ):
        errors["ingest_key"] = "Not one of your ingest keys."
    if budget.refuse_unpriced and not budget.enforced:
        errors["refuse_unpriced"] = "Only an enforced budget refuses calls."
    if not errors:
        _budget_check_unique(budget)
    try:
        budget.thresholds = thresholds_clean(budget.thresholds)
    except ValidationError as exc:
        errors["thresholds"] = exc.messages[0]
    if errors:
        raise ValidationError(errors)
    budget.full_clean()


def _budget_check_unique(budget: Budget) -> None:
    """One budget per target and period: a second one would alert twice for the same spend."""
    target = {name: _target_value(budget, name) or None for name in _TARGET_FIELDS}
    same = Budget.objects.filter(
        workspace_id=budget.workspace_id,
        scope=budget.scope,
        period=budget.period,
        provider_id=target["provider"],
        account_id=target["account"],
        ingest_key_id=target["ingest_key"],
        tag=budget.tag,
        tag_value=budget.tag_value,
    ).exclude(pk=budget.pk)
    if same.exists():
        field = (_SCOPE_FIELDS[budget.scope] or ("scope",))[-1]
        target = budget.target_label[0].lower() + budget.target_label[1:]
        raise ValidationError(
            {
                field: (
                    f"You already have a {budget.period} budget for {target}; "
                    "edit that one instead."
                )
            }
        )


def _budget_save(budget: Budget) -> None:
    """Save; a concurrent duplicate that slipped past the check becomes the same field error."""
    try:
        with transaction.atomic():
            budget.save()
    except IntegrityError:
        _budget_check_unique(budget)
        raise


def _threshold_alert_fields(*, target, status, threshold: int) -> dict:
    """Dedupe key, message and data of one threshold alert (one definition for every caller)."""
    period = target.period_key(status.period)
    return {
        "kind": Alert.Kind.THRESHOLD,
        "dedupe_key": f"{target.key}:{period}:{threshold}:{target.amount}",
        "message": (
            f"{target.label}: {format_usd(status.spent)} spent {target.period_word}, "
            f"{status.percent}% of the {format_usd(target.amount)} budget "
            f"(alert at {threshold}%)."
            + (
                " The proxy refuses the calls it covers until the period ends."
                if target.enforced and status.spent >= target.amount
                else ""
            )
        ),
        "threshold": threshold,
        "budget": target.budget,
        "account": target.account,
        "period": status.period,
        "data": {
            "scope": target.scope,
            "target": target.label,
            "amount": str(target.amount),
            "spent": str(status.spent),
            "percent": str(status.percent),
            "threshold": threshold,
            "period": target.period,
            "enforced": target.enforced,
        },
    }


def _forecast_dedupe_key(*, target, period: date) -> str:
    return f"{target.key}:{target.period_key(period)}:forecast:{target.amount}"


def _budget_thresholds_settle(*, budget: Budget) -> None:
    """A budget saved already past several thresholds alerts once, for the highest.

    The lower ones are recorded as passed (unlisted, acknowledged rows with their usual dedupe
    key), so they neither alert now nor later this month; so is the forecast alert when spend
    is already over the amount. The evaluation that follows fires the highest one as usual.
    """
    # As stored (10 becomes 10.00), so the dedupe keys match the evaluation's.
    budget = selectors.budget_get_for_workspace(workspace=budget.workspace, pk=budget.pk)
    status = selectors.budget_status_for(workspace=budget.workspace, budget=budget)
    target = status.target
    crossed = [t for t in target.thresholds if status.spent * 100 >= target.amount * t]
    for threshold in crossed[:-1]:
        fields = _threshold_alert_fields(target=target, status=status, threshold=threshold)
        alert_fire(workspace=budget.workspace, listed=False, **fields)
    if target.forecast_alert and crossed and status.spent >= target.amount:
        # Already over: "on track to exceed" would only repeat the threshold alert.
        alert_fire(
            workspace=budget.workspace,
            kind=Alert.Kind.FORECAST,
            dedupe_key=_forecast_dedupe_key(target=target, period=status.period),
            message=f"{target.label}: already over the budget when it was saved.",
            budget=target.budget,
            account=target.account,
            period=status.period,
            listed=False,
        )


def _enforcement_renew(budget: Budget) -> None:
    """This process's proxy reads the workspace's enforced budgets again once the change
    commits (other processes within ENFORCED_CACHE_SECONDS)."""
    workspace_id = budget.workspace_id
    transaction.on_commit(lambda: enforced_budgets_forget(workspace_id))


@transaction.atomic
def budget_create(
    *,
    workspace: Workspace,
    scope: str,
    amount: Decimal,
    provider: Provider | None = None,
    account: ProviderAccount | None = None,
    ingest_key: IngestKey | None = None,
    tag: str = "",
    tag_value: str = "",
    period: str = Budget.Period.MONTHLY,
    thresholds: list[int] | None = None,
    forecast_alert: bool = True,
    enforced: bool = False,
    refuse_unpriced: bool = False,
) -> Budget:
    """Save a budget and evaluate it right away, so one already tripped shows its alert (and,
    when enforced, stops the calls it covers at once)."""
    budget = Budget(
        workspace=workspace,
        scope=scope,
        amount=amount,
        provider=provider,
        account=account,
        ingest_key=ingest_key,
        tag=tag or "",
        tag_value=tag_value or "",
        period=period,
        thresholds=thresholds if thresholds is not None else [80, 100],
        forecast_alert=forecast_alert,
        enforced=enforced,
        refuse_unpriced=refuse_unpriced,
    )
    _budget_validate(budget)
    _budget_save(budget)
    _budget_thresholds_settle(budget=budget)
    _enforcement_renew(budget)
    audit_record(action=AuditEvent.Action.CREATED, obj=budget, after=audit_snapshot(budget))
    alerts_evaluate_for_workspace(workspace=workspace)
    return budget


_BUDGET_FIELDS = (
    "scope",
    "amount",
    "provider",
    "account",
    "ingest_key",
    "tag",
    "tag_value",
    "period",
    "thresholds",
    "forecast_alert",
    "enforced",
    "refuse_unpriced",
)


@transaction.atomic
def budget_update(*, budget: Budget, **changes) -> Budget:
    """Change any of _BUDGET_FIELDS."""
    unknown = set(changes) - set(_BUDGET_FIELDS)
    if unknown:
        raise TypeError(f"budget_update() got unexpected fields {sorted(unknown)}")
    before = audit_state(budget)
    for name, value in changes.items():
        setattr(budget, name, value)
    _budget_validate(budget)
    _budget_save(budget)
    _budget_thresholds_settle(budget=budget)
    _enforcement_renew(budget)
    audit_record(
        action=AuditEvent.Action.UPDATED, obj=budget, changes=audit_changes(before, budget)
    )
    alerts_evaluate_for_workspace(workspace=budget.workspace)
    return budget


@transaction.atomic
def budget_delete(*, budget: Budget) -> None:
    audit_record(action=AuditEvent.Action.DELETED, obj=budget, before=audit_snapshot(budget))
    _enforcement_renew(budget)
    budget.delete()


def _budget_alerts(*, workspace: Workspace, today: date) -> list[Alert]:
    created: list[Alert] = []
    statuses = selectors.budget_statuses(workspace=workspace, today=today)
    # What the proxy's check reads, set to what the roll-ups say: one budget a transaction, in
    # budget order, after the caller's transaction (a budget saved), so no evaluation ever holds
    # one budget's row while waiting for another's, which a proxied call may hold.
    enforced = sorted((s for s in statuses if s.target.enforced), key=lambda s: s.target.budget.pk)
    for status in enforced:
        transaction.on_commit(
            partial(
                enforced_spend_refresh,
                workspace=workspace,
                target=status.target,
                period_start=status.period,
            ),
            robust=True,
        )
    for status in statuses:
        target = status.target
        common = {"budget": target.budget, "account": target.account, "period": status.period}
        base_data = {
            "scope": target.scope,
            "target": target.label,
            "amount": str(target.amount),
            "spent": str(status.spent),
            "percent": str(status.percent),
        }
        for threshold in target.thresholds:
            if status.spent * 100 < target.amount * threshold:
                continue
            fields = _threshold_alert_fields(target=target, status=status, threshold=threshold)
            alert, new = alert_fire(workspace=workspace, **fields)
            if new:
                created.append(alert)
        if not target.forecast_alert:
            continue
        forecast = selectors.target_forecast(workspace=workspace, target=target, today=today)
        text = budget_forecast_message(forecast, target.amount, today)
        if text is None:
            continue
        alert, new = alert_fire(
            workspace=workspace,
            kind=Alert.Kind.FORECAST,
            dedupe_key=_forecast_dedupe_key(target=target, period=status.period),
            message=f"{target.label}: {text}",
            data={
                **base_data,
                "projected_total": str(forecast.projected_total),
                "low": str(forecast.low),
                "high": str(forecast.high),
                "method": forecast.method,
            },
            **common,
        )
        if new:
            created.append(alert)
    return created


def _anomaly_k() -> Decimal:
    return Decimal(str(getattr(settings, "ANOMALY_K", 3)))


def _anomaly_alerts(*, workspace: Workspace, today: date) -> list[Alert]:
    """Spikes, pricier-model switches and cache collapses per account and model."""
    k = _anomaly_k()
    window = ANOMALY_WINDOW_DAYS
    cutoff = today - timedelta(days=ANOMALY_LOOKBACK_DAYS - 1)
    # Roll-up days are UTC days, which may already be tomorrow in the workspace.
    data = selectors.account_model_days(
        workspace=workspace, start=cutoff - timedelta(days=window), end=today + timedelta(days=2)
    )
    accounts = ProviderAccount.objects.in_bulk(list(data))
    created: list[Alert] = []
    for account_id, per_model in data.items():
        found: list[tuple[str, Anomaly]] = []
        for model, days in per_model.items():
            costs = {d: v.cost for d, v in days.items()}
            for anomaly in detect_spend_spikes(
                costs, k=k, window=window, last_only=False, key=model
            ):
                found.append((model, anomaly))
            for anomaly in detect_cache_collapse(
                {d: v.cache_read_tokens for d, v in days.items()},
                {d: v.input_tokens for d, v in days.items()},
                k=k,
                window=window,
                last_only=False,
                key=model,
            ):
                found.append((model, anomaly))
        for anomaly in detect_pricier_model_switch(
            {m: {d: v.cost for d, v in days.items()} for m, days in per_model.items()},
            {m: {d: v.tokens for d, v in days.items()} for m, days in per_model.items()},
            k=k,
            window=window,
            last_only=False,
        ):
            found.append((anomaly.key, anomaly))
        account = accounts[account_id]
        for model, anomaly in found:
            if anomaly.day < cutoff:
                continue
            alert, new = alert_fire(
                workspace=workspace,
                kind=Alert.Kind.ANOMALY,
                dedupe_key=f"anomaly:{anomaly.kind}:{account_id}:{model}:{anomaly.day}",
                message=f"{account.name}, {model or 'no model'}: {anomaly.message}",
                account=account,
                data={
                    "detector": anomaly.kind,
                    "account_id": account_id,
                    "model": model,
                    "day": anomaly.day.isoformat(),
                    "observed": str(anomaly.observed),
                    "baseline": str(anomaly.baseline),
                    "threshold": str(anomaly.threshold),
                    "k": str(k),
                    "window_days": window,
                },
            )
            if new:
                created.append(alert)
    return created


def alerts_evaluate_for_workspace(*, workspace: Workspace, now=None) -> list[Alert]:
    """Evaluate every budget, forecast and anomaly rule; return the alerts that are new."""
    today = today_for(workspace, now=now)
    created = _budget_alerts(workspace=workspace, today=today) + _anomaly_alerts(
        workspace=workspace, today=today
    )
    created += ratelimit_alerts(workspace=workspace, now=now)
    for alert in created:
        notifications_dispatch(alert=alert)
    return created


def alerts_evaluate_for_account(*, account_id: int) -> list[Alert]:
    """Hook run after a sync: evaluate the account's workspace's rules now.

    Overall and provider budgets span the workspace's other accounts too, so the whole workspace is
    evaluated. A failure here is logged, not raised: the figures are already saved, and the
    evaluation their write requested (alerts_evaluation_request) will try again.
    """
    account = ProviderAccount.objects.select_related("workspace").filter(pk=account_id).first()
    if account is None:
        return []
    try:
        return alerts_evaluate_for_workspace(workspace=account.workspace)
    except Exception:
        logger.exception("evaluating alerts after account %s changed failed", account_id)
        return []


# --- evaluation after every change in spend ----------------------------------------------------
#
# Every writer of spend ends in usage.services.rollup.spend_changed, which calls
# alerts_evaluation_request once its transaction has committed. Time is cut into windows of
# EVALUATION_WINDOW seconds; a write at time t belongs to the window whose end is more than
# EVALUATION_MARGIN seconds after t, and asks for an EvaluationDue row (workspace, window end).
# Many writes of one window make one row (coalesced), and a write while the row is evaluated
# lands in a later window with a row of its own (never dropped). alerts.tasks.evaluate_due
# deletes a row once its evaluation succeeded; it runs from a django-q2 ONCE schedule at the
# window's end (the cluster's scheduler looks every 30 s) and, as a safety net, every minute.
#
# Bound: a write is committed before its window's end - EVALUATION_MARGIN, and evaluated at most
# EVALUATION_WINDOW + EVALUATION_MARGIN (13 s) + 30 s (scheduler) + ~1 s (queue poll) later:
# within 45 s plus the evaluation itself, given a free worker; the README promises 60 s.
#
# A process remembers which (account, window) it has already asked for, so the proxy and
# ingestion hot path makes at most one extra statement per account and window (10 s), not one
# per call: a row known to exist for the window cannot be taken before the window's end, and
# the write that skips asking has committed before that (the margin also covers clock skew
# between nodes).

EVALUATION_WINDOW = 10  # seconds
EVALUATION_MARGIN = 3  # seconds
EVALUATE_DUE_TASK = "alerts.tasks.evaluate_due"
# (kind, id) -> index of the last window this process asked for
_asked: dict[tuple[str, int], int] = {}


def _window_index(now: datetime | None) -> int:
    # time.time() rather than an aware datetime: this runs on every proxied call.
    seconds = time.time() if now is None else now.timestamp()
    return (int(seconds) + EVALUATION_MARGIN) // EVALUATION_WINDOW


def _window_end(window: int) -> datetime:
    return datetime.fromtimestamp((window + 1) * EVALUATION_WINDOW, tz=UTC)


def evaluation_due_at(*, now: datetime) -> datetime:
    """The end of the coalescing window a write at ``now`` belongs to (UTC, whole seconds)."""
    return _window_end(_window_index(now))


def alerts_evaluation_request(
    *, account_id: int | None = None, workspace_id: int | None = None, now: datetime | None = None
) -> bool:
    """Ask for an evaluation of a workspace's alerts (of an account's or a workspace's) soon.

    Call after the change in spend has committed (spend_changed does). Returns True when this
    call wrote the EvaluationDue row; a row that already exists for the window is left as is.
    """
    if (account_id is None) == (workspace_id is None):
        raise TypeError("give exactly one of account_id or workspace_id")
    window = _window_index(now)
    key = ("account", account_id) if account_id is not None else ("workspace", workspace_id)
    if _asked.get(key) == window:
        return False
    due = _window_end(window)
    table = EvaluationDue._meta.db_table
    due_param = connection.ops.adapt_datetimefield_value(due)
    if account_id is not None:
        # The account's workspace, looked up in the same statement.
        rows = f"SELECT workspace_id, %s FROM {ProviderAccount._meta.db_table} WHERE id = %s"
        params = [due_param, account_id]
    else:
        rows, params = "VALUES (%s, %s)", [workspace_id, due_param]
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (workspace_id, due_at) {rows} "
                "ON CONFLICT (workspace_id, due_at) DO NOTHING RETURNING workspace_id",
                params,
            )
            created = cursor.fetchone() is not None
        if created:
            _evaluation_schedule(due=due)
    if len(_asked) > 10_000:  # one entry per account; clear rather than grow without end
        _asked.clear()
    _asked[key] = window
    return created


def evaluation_requests_forget() -> None:
    """Forget which evaluations this process has asked for (tests: their rows roll back)."""
    _asked.clear()


def _evaluation_schedule(*, due: datetime) -> None:
    """One django-q2 ONCE schedule per window end: it takes every row due by then."""
    name = f"alerts-evaluate-due {due:%Y-%m-%dT%H:%M:%S}Z"
    pending = Schedule.objects.filter(func=EVALUATE_DUE_TASK, schedule_type=Schedule.ONCE)
    if pending.filter(next_run__lt=due - timedelta(minutes=2)).exists():
        # The cluster's scheduler is not running: one overdue run takes every due row when it
        # does, so do not pile up a schedule per window meanwhile.
        return
    if not pending.filter(name=name).exists():
        # Two writers may both get here: two runs of evaluate_due, the second finds nothing.
        Schedule.objects.create(
            name=name,
            func=EVALUATE_DUE_TASK,
            schedule_type=Schedule.ONCE,
            repeats=-1,  # a ONCE schedule with negative repeats deletes itself once run
            next_run=due,
        )


def alerts_evaluate_due(*, now: datetime | None = None) -> list[int]:
    """Evaluate each workspace with EvaluationDue rows due by ``now`` once; return their ids.

    Per workspace, one transaction locks the due rows (SKIP LOCKED: another node evaluating that
    workspace is left alone), evaluates, and deletes them. A worker killed half-way, or an
    evaluation that fails, leaves the rows for the next run (the schedule every minute): an
    evaluation is never lost. One workspace's failure is logged and never stops the others.
    """
    now = now or timezone.now()
    due = EvaluationDue.objects.filter(due_at__lte=now)
    workspace_ids = sorted(set(due.values_list("workspace_id", flat=True)))
    evaluated = []
    for workspace_id in workspace_ids:
        try:
            with transaction.atomic():
                rows = list(
                    due.filter(workspace_id=workspace_id)
                    .select_for_update(skip_locked=True)
                    .values_list("pk", flat=True)
                )
                if not rows:
                    continue  # taken by another run meanwhile
                workspace = Workspace.objects.filter(pk=workspace_id).first()
                if workspace is not None:
                    alerts_evaluate_for_workspace(workspace=workspace, now=now)
                EvaluationDue.objects.filter(pk__in=rows).delete()
        except Exception:
            logger.exception(
                "evaluating alerts for workspace %s failed; will try again", workspace_id
            )
            continue
        if workspace is not None:
            evaluated.append(workspace_id)
    return evaluated


# --- notification channels -------------------------------------------------------------------


def _allow_private() -> bool:
    return bool(getattr(settings, "WEBHOOK_ALLOW_PRIVATE", False))


def channel_target_clean(*, kind: str, target: str) -> str:
    target = (target or "").strip()
    if kind == NotificationChannel.Kind.EMAIL:
        try:
            validate_email(target)
        except ValidationError:
            raise ValidationError({"target": "Enter a valid email address."}) from None
    elif kind == NotificationChannel.Kind.WEBHOOK:
        try:
            validate_webhook_url(target, allow_private=_allow_private())
        except WebhookURLError as exc:
            raise ValidationError({"target": str(exc)}) from None
    else:
        raise ValidationError({"kind": "Choose email or webhook."})
    # Bytes, not characters: the unique index on the target has a per-row size limit.
    if len(target.encode()) > 2000:
        raise ValidationError({"target": "At most 2000 characters."})
    return target


def _channel_check_unique(*, workspace: Workspace, kind: str, target: str, exclude_pk=None) -> None:
    same = NotificationChannel.objects.filter(workspace=workspace, kind=kind)
    # Mail servers treat addresses without regard to case in practice: Ops@x.com is ops@x.com.
    if kind == NotificationChannel.Kind.EMAIL:
        same = same.filter(target__iexact=target)
    else:
        same = same.filter(target=target)
    if same.exclude(pk=exclude_pk).exists():
        what = "email address" if kind == NotificationChannel.Kind.EMAIL else "webhook URL"
        raise ValidationError({"target": f"You already have a channel for this {what}."})


def channel_create(
    *,
    workspace: Workspace,
    kind: str,
    target: str,
    format: str = "generic",  # noqa: A002 - the field's name in the form and the API
    is_active: bool = True,
) -> NotificationChannel:
    target = channel_target_clean(kind=kind, target=target)
    if format not in FORMATS:
        choices = ", ".join(FORMATS)
        raise ValidationError({"format": f"Choose one of {choices}."})
    if kind != NotificationChannel.Kind.WEBHOOK:
        format = "generic"  # noqa: A001 - an email has no body format
    _channel_check_unique(workspace=workspace, kind=kind, target=target)
    try:
        with transaction.atomic():
            channel = NotificationChannel.objects.create(
                workspace=workspace,
                kind=kind,
                target=target,
                format=format,
                is_active=is_active,
            )
            audit_record(
                action=AuditEvent.Action.CREATED, obj=channel, after=audit_snapshot(channel)
            )
            return channel
    except IntegrityError:  # a concurrent duplicate: the same error as the check above
        _channel_check_unique(workspace=workspace, kind=kind, target=target)
        raise


@transaction.atomic
def channel_delete(*, channel: NotificationChannel) -> None:
    audit_record(action=AuditEvent.Action.DELETED, obj=channel, before=audit_snapshot(channel))
    channel.delete()


def channel_test_send(*, channel: NotificationChannel) -> NotificationDelivery:
    """Send a test notification to one channel now, once, and record it like a real delivery.

    The test is an unlisted alert (it is in Recent deliveries, not in the Alerts list); the
    delivery row carries the outcome, so a broken webhook shows its error right away.
    """
    alert, _ = alert_fire(
        workspace=channel.workspace,
        kind=Alert.Kind.TEST,
        dedupe_key=f"test:{channel.pk}:{uuid.uuid4()}",
        message=(
            "Test notification from AI Cost Tracker: this channel receives your alerts "
            "(budget thresholds, forecasts, anomalies)."
        ),
        listed=False,
    )
    delivery = NotificationDelivery.objects.create(alert=alert, channel=channel)
    return notification_deliver(delivery_id=delivery.pk, max_attempts=1)


# --- delivery --------------------------------------------------------------------------------


class DeliveryError(Exception):
    """A send failed. ``permanent`` ones (blocked URL, 4xx) are not retried; ``retry_after`` is
    the receiver's Retry-After in seconds, if it sent one."""

    def __init__(
        self, message: str, *, permanent: bool = False, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


DELIVER_TASK = "alerts.tasks.deliver_notification"
NOTIFY_RETRY_MAX_DELAY = 3600  # an hour: a Retry-After longer than that is not waited out


def notifications_dispatch(*, alert: Alert) -> list[NotificationDelivery]:
    """Queue one delivery task per active channel of the alert's workspace (once per pair)."""
    deliveries = []
    channels = NotificationChannel.objects.filter(workspace_id=alert.workspace_id, is_active=True)
    for channel in channels:
        delivery, created = NotificationDelivery.objects.get_or_create(alert=alert, channel=channel)
        if created:
            # A worker never sees the task before the delivery row is committed (the ORM broker
            # queues it in this transaction, Redis after it: costtracker/queue.py).
            task_enqueue_on_commit(
                DELIVER_TASK,
                delivery.pk,
                task_name=f"notify-{delivery.pk}",
                group="alerts-notify",
            )
        deliveries.append(delivery)
    return deliveries


# A delivery task not run this long after it should have been was lost: a Redis broker hands a
# task out once, so a worker that dies holding it loses it; a ONCE schedule may be deleted.
NOTIFY_LOST_AFTER = timedelta(minutes=10)


def notifications_resume(*, now: datetime | None = None) -> int:
    """Queue again the pending deliveries whose task was lost (run with every full
    evaluation, alerts.tasks.evaluate_all): never tried and queued over NOTIFY_LOST_AFTER ago,
    a retry that many minutes overdue, or a try whose worker died (started longer ago than
    any try takes and never finished). notification_deliver's claim keeps a task that was only
    late, not lost, from sending twice. Returns how many were queued."""
    now = now or timezone.now()
    late = now - NOTIFY_LOST_AFTER
    lost = NotificationDelivery.objects.filter(status=NotificationDelivery.Status.PENDING).filter(
        Q(last_attempt_at__isnull=True, created_at__lt=late)
        | Q(next_attempt_at__lt=late)
        | Q(next_attempt_at__isnull=True, last_attempt_at__lt=late)
    )
    count = 0
    for delivery_id in lost.values_list("pk", flat=True):
        task_enqueue_on_commit(DELIVER_TASK, delivery_id, group="alerts-notify")
        count += 1
    return count


def alert_payload(alert: Alert) -> dict:
    """What a generic webhook receives about an alert (money as strings)."""
    return {
        "url": alert_url(alert),
        "id": alert.pk,
        "kind": alert.kind,
        "message": alert.message,
        "created_at": alert.created_at,
        "period": alert.period,
        "threshold": alert.threshold,
        "budget_id": alert.budget_id,
        "account": alert.account.name if alert.account_id else None,
        "data": alert.data,
    }


# The money figures an alert's data may hold, in the order shown: (key, label).
_MONEY_FACTS = (
    ("spent", "Spent"),
    ("amount", "Budget"),
    ("projected_total", "Projected"),
    ("observed", "Observed"),
    ("baseline", "Baseline"),
)


def alert_notice(alert: Alert) -> Notice:
    """What a webhook of any format says about the alert; money figures as facts (never cut)."""
    data = alert.data if isinstance(alert.data, dict) else {}
    facts = []
    for key, label in _MONEY_FACTS:
        try:
            facts.append((label, format_usd(Decimal(str(data[key])))))
        except (KeyError, ArithmeticError, ValueError, TypeError):
            continue
    return Notice(
        title=_title(alert),
        text=alert.message,
        url=alert_url(alert),
        facts=tuple(facts),
        payload=alert_payload(alert),
    )


def _title(alert: Alert) -> str:
    return f"AI Cost Tracker: {alert.get_kind_display()}"


def _send_email(channel: NotificationChannel, alert: Alert) -> None:
    try:
        send_mail(
            subject=f"{_title(alert)} — {alert.message[:80]}",
            message=f"{alert.message}\n\nKind: {alert.get_kind_display()}\n"
            f"Raised: {alert.created_at:%Y-%m-%d %H:%M} UTC\n\n"
            f"Open it in AI Cost Tracker: {alert_url(alert)}\n",
            from_email=None,
            recipient_list=[channel.target],
            fail_silently=False,
        )
    except Exception as exc:  # SMTP and connection errors alike are worth another try
        raise DeliveryError(f"Email failed: {type(exc).__name__}: {exc}"[:500]) from exc


def _send_webhook(channel: NotificationChannel, alert: Alert) -> None:
    # Checked again here, not only when saved: the host's DNS may have changed since.
    try:
        validate_webhook_url(channel.target, allow_private=_allow_private())
    except WebhookURLError as exc:
        raise DeliveryError(f"Blocked: {exc}", permanent=True) from exc
    body = webhook_body(channel.format, alert_notice(alert))
    try:
        response = requests.post(
            channel.target,
            data=json.dumps(body),
            headers={"Content-Type": "application/json", "User-Agent": "ai-cost-tracker"},
            timeout=WEBHOOK_TIMEOUT,
            allow_redirects=False,  # a redirect could lead to an address we never checked
        )
    except requests.Timeout as exc:
        raise DeliveryError("Timed out.") from exc
    except requests.RequestException as exc:
        # The exception text contains the URL, which may embed a token: name the type only.
        raise DeliveryError(f"Could not connect ({type(exc).__name__}).") from exc
    code = response.status_code
    if 200 <= code < 300:
        return
    if code == 429 or code >= 500:
        raise DeliveryError(
            f"HTTP {code} from the webhook.", retry_after=_retry_after(response, code)
        )
    if 300 <= code < 400:
        raise DeliveryError(f"HTTP {code}: redirects are not followed.", permanent=True)
    raise DeliveryError(f"HTTP {code} from the webhook.", permanent=True)


_SENDERS = {
    NotificationChannel.Kind.EMAIL: _send_email,
    NotificationChannel.Kind.WEBHOOK: _send_webhook,
}


def _retry_after(response: requests.Response, code: int) -> int | None:
    # Slack, Discord and Teams send integer seconds with a 429; an HTTP date or junk falls back
    # to our own backoff.
    value = response.headers.get("Retry-After", "").strip()
    return int(value) if code == 429 and value.isdigit() else None


def notification_retry_delay(*, attempt: int, retry_after: int | None = None) -> int:
    """Seconds before try ``attempt + 1``: NOTIFY_RETRY_BACKOFF_SECONDS × 2^(attempt-1), at
    least the receiver's Retry-After, at most NOTIFY_RETRY_MAX_DELAY."""
    delay = int(settings.NOTIFY_RETRY_BACKOFF_SECONDS) * 2 ** (attempt - 1)
    if retry_after:
        delay = max(delay, retry_after)
    return min(delay, NOTIFY_RETRY_MAX_DELAY)


def notification_retry_name(delivery: NotificationDelivery) -> str:
    """The ONCE schedule of the delivery's next try; one name per try, so a task run twice
    cannot schedule the same try twice."""
    return f"notify-retry-{delivery.pk}-{delivery.attempts + 1}"


def _notification_retry_schedule(*, delivery: NotificationDelivery, retry_after: int | None):
    next_run = delivery.last_attempt_at + timedelta(
        seconds=notification_retry_delay(attempt=delivery.attempts, retry_after=retry_after)
    )
    name = notification_retry_name(delivery)
    if not Schedule.objects.filter(name=name).exists():
        Schedule.objects.create(
            name=name,
            func=DELIVER_TASK,
            args=repr((delivery.pk,)),
            schedule_type=Schedule.ONCE,
            repeats=-1,  # a ONCE schedule with negative repeats deletes itself once run
            next_run=next_run,
        )
    return next_run


def notification_deliver(
    *, delivery_id: int, max_attempts: int | None = None
) -> NotificationDelivery | None:
    """Make one attempt at a delivery; on a temporary failure schedule the next and return.

    No worker sleeps: a timeout, 5xx or 429 leaves the delivery pending with its error and
    schedules the next try as a django-q2 ONCE schedule NOTIFY_RETRY_BACKOFF_SECONDS (default
    60) later, doubling, or after the receiver's Retry-After if longer. At most
    NOTIFY_MAX_ATTEMPTS tries (default 3) in all; a permanent failure (4xx, blocked URL) stops
    at once. Every try is counted on the row; a sent or failed delivery is never sent again
    if the task runs twice. ``max_attempts=1`` is the channel test: one try, no retry.
    """
    delivery = (
        NotificationDelivery.objects.select_related("alert__account", "channel")
        .filter(pk=delivery_id)
        .first()
    )
    if delivery is None or delivery.status != NotificationDelivery.Status.PENDING:
        return delivery
    # Claim this try in a short write of its own: no lock is held while the receiver is
    # called (on SQLite that would keep every other writer waiting for up to the webhook's
    # timeout). A try is free when none was made yet, the last one failed and this one is due
    # (next_attempt_at has come: a copy of the task run early must wait), or the last one
    # started longer ago than any try can take (its worker died); the attempts count makes
    # two runs that read the same row claim it once.
    now = timezone.now()
    free = (
        Q(last_attempt_at__isnull=True)
        | Q(next_attempt_at__lte=now)
        | Q(last_attempt_at__lt=now - timedelta(seconds=NOTIFY_TRY_SECONDS))
    )
    claimed = NotificationDelivery.objects.filter(
        free,
        pk=delivery.pk,
        status=NotificationDelivery.Status.PENDING,
        attempts=delivery.attempts,
    ).update(attempts=delivery.attempts + 1, last_attempt_at=now, next_attempt_at=None)
    if not claimed:
        return NotificationDelivery.objects.get(pk=delivery.pk)  # a try is under way
    delivery.attempts += 1
    delivery.last_attempt_at, delivery.next_attempt_at = now, None
    if max_attempts is None:
        max_attempts = int(settings.NOTIFY_MAX_ATTEMPTS)
    max_attempts = max(1, max_attempts)
    if not delivery.channel.is_active and delivery.alert.kind != Alert.Kind.TEST:
        # Turned off while a retry was pending: the owner no longer wants it sent there.
        delivery.status = NotificationDelivery.Status.FAILED
        delivery.error = "Not sent: the channel was turned off."
        delivery.save()
        return delivery
    try:
        _SENDERS[delivery.channel.kind](delivery.channel, delivery.alert)
    except DeliveryError as exc:
        delivery.error = str(exc)
        if exc.permanent or delivery.attempts >= max_attempts:
            delivery.status = NotificationDelivery.Status.FAILED
            logger.warning(
                "notification %s to channel %s failed after %s attempts: %s",
                delivery.pk,
                delivery.channel_id,
                delivery.attempts,
                delivery.error,
            )
        else:
            delivery.next_attempt_at = _notification_retry_schedule(
                delivery=delivery, retry_after=exc.retry_after
            )
        delivery.save()
        return delivery
    delivery.status = NotificationDelivery.Status.SENT
    delivery.sent_at = delivery.last_attempt_at
    delivery.error = ""
    delivery.save()
    return delivery
