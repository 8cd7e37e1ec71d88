"""Rate-limit alerts: headroom running out, and a burst of 429s.

Judged with the workspace's other alerts (alerts.services.alerts_evaluate_for_workspace),
never on the proxy's path: the proxy's flush asks for an evaluation
(alerts_evaluation_request) and the 15-minute sweep catches the rest. Dedupe keys make each
fire once per window:

* headroom: ``ratelimit_low:<account>:<model>:<UTC hour>`` — at most one an hour per account
  and model, naming the tightest dimension under RATELIMIT_HEADROOM_PERCENT (default 10 %);
* burst: ``ratelimit_429:<account>:<model>:<window>`` — RATELIMIT_BURST_COUNT (default 5)
  or more 429s within RATELIMIT_BURST_MINUTES (default 10); one per window, and none while an
  alert for the same burst is younger than the window.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.utils import timezone

from accounts.models import Workspace
from alerts.models import Alert
from providers.ratelimits.selectors import (
    dimensions_of,
    headroom_percent,
    rate_limit_states,
    rate_limited_since,
    stale_after,
)
from providers.ratelimits.services import minute_of, ratelimit_hits_prune


def burst_rule() -> tuple[int, int]:
    """(count, minutes)."""
    return (
        max(1, int(getattr(settings, "RATELIMIT_BURST_COUNT", 5))),
        max(1, int(getattr(settings, "RATELIMIT_BURST_MINUTES", 10))),
    )


def _when(moment: datetime | None) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if moment else "an unknown time"


def _model(model: str) -> str:
    return model or "its usage API"


def _headroom_alerts(*, workspace: Workspace, now: datetime) -> list[Alert]:
    from alerts.services import alert_fire

    threshold = headroom_percent()
    hour = f"{now.astimezone(UTC):%Y-%m-%dT%H}"
    created = []
    for state in rate_limit_states(workspace=workspace):
        if now - state.observed_at > stale_after():
            continue  # not asked lately: what it said then is no warning now
        low = [d for d in dimensions_of(state, now=now) if d.low]
        if not low:
            continue
        tight = min(low, key=lambda d: d.percent_remaining)
        account = state.account
        alert, new = alert_fire(
            workspace=workspace,
            kind=Alert.Kind.RATELIMIT_LOW,
            dedupe_key=f"ratelimit_low:{account.pk}:{state.model}:{hour}",
            message=(
                f"{account.name}, {_model(state.model)}: {tight.percent_remaining}% of the "
                f"{tight.label.lower()} rate limit left ({tight.remaining:,} of "
                f"{tight.limit:,}), full again at {_when(tight.reset_at)}."
            ),
            account=account,
            data={
                "model": state.model,
                "dimension": tight.name,
                "limit": tight.limit,
                "remaining": tight.remaining,
                "percent_remaining": str(tight.percent_remaining),
                "reset_at": tight.reset_at.isoformat() if tight.reset_at else None,
                "threshold_percent": str(threshold),
                "observed_at": state.observed_at.isoformat(),
            },
        )
        if new:
            created.append(alert)
    return created


def _burst_alerts(*, workspace: Workspace, now: datetime) -> list[Alert]:
    from alerts.services import alert_fire

    count, minutes = burst_rule()
    # The current minute and the minutes - 1 before it.
    since = minute_of(now) - timedelta(minutes=minutes - 1)
    window = int(now.timestamp() // 60) // minutes
    created = []
    counts = rate_limited_since(workspace=workspace, since=since)
    accounts = workspace.provider_accounts.in_bulk([a for a, _ in counts])
    for (account_id, model), n in sorted(counts.items()):
        if n < count or account_id not in accounts:
            continue
        recent = Alert.objects.filter(
            workspace=workspace,
            kind=Alert.Kind.RATELIMIT_BURST,
            account_id=account_id,
            data__model=model,
            created_at__gt=now - timedelta(minutes=minutes),
        )
        if recent.exists():
            continue  # the same burst, seen from the next window
        account = accounts[account_id]
        alert, new = alert_fire(
            workspace=workspace,
            kind=Alert.Kind.RATELIMIT_BURST,
            dedupe_key=f"ratelimit_429:{account_id}:{model}:{window}",
            message=(
                f"{account.name}, {_model(model)}: the provider answered 429 (rate limited) "
                f"{n} times in the last {minutes} minutes."
            ),
            account=account,
            data={"model": model, "count": n, "minutes": minutes, "since": since.isoformat()},
        )
        if new:
            created.append(alert)
    return created


def ratelimit_alerts(*, workspace: Workspace, now: datetime | None = None) -> list[Alert]:
    """Fire the workspace's due rate-limit alerts; return the new ones (not yet dispatched:
    the caller sends them with the workspace's other new alerts)."""
    now = now or timezone.now()
    ratelimit_hits_prune(workspace_id=workspace.pk, now=now)
    return _headroom_alerts(workspace=workspace, now=now) + _burst_alerts(
        workspace=workspace, now=now
    )
