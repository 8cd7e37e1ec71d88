"""Reads of rate-limit state and 429 counts, always through the workspace's accounts."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from accounts.models import Workspace
from providers.models import RateLimitHit, RateLimitState
from providers.ratelimits.readings import DIMENSIONS

HISTORY_DAYS = 7
LABELS = {
    "requests": "Requests",
    "tokens": "Tokens",
    "input_tokens": "Input tokens",
    "output_tokens": "Output tokens",
}


def stale_after() -> timedelta:
    """A state older than this is shown as stale: the provider has not been asked since."""
    return timedelta(minutes=getattr(settings, "RATELIMIT_STALE_MINUTES", 15))


def headroom_percent() -> Decimal:
    """Below this share left, a limit is low: highlighted on the panel, and alerted."""
    return Decimal(str(getattr(settings, "RATELIMIT_HEADROOM_PERCENT", 10)))


@dataclass(frozen=True)
class Dimension:
    name: str
    limit: int | None
    remaining: int | None
    reset_at: datetime | None
    percent_remaining: Decimal | None  # remaining / limit, 0.1 % steps, rounded down
    reset_passed: bool  # the bucket has refilled since: ``remaining`` is out of date
    tightest: bool = False

    @property
    def low(self) -> bool:
        """Under RATELIMIT_HEADROOM_PERCENT and not refilled since."""
        return (
            self.percent_remaining is not None
            and not self.reset_passed
            and self.percent_remaining < headroom_percent()
        )

    @property
    def label(self) -> str:
        return LABELS[self.name]


@dataclass(frozen=True)
class RateLimitRow:
    """One account and model: its headroom now and its 429s per day."""

    account_id: int
    account_name: str
    provider: str
    model: str
    observed_at: datetime | None
    stale: bool
    retry_at: datetime | None
    dimensions: tuple[Dimension, ...]
    tightest: str | None
    rate_limited_by_day: tuple[tuple[date, int], ...]

    @property
    def rate_limited_total(self) -> int:
        return sum(n for _, n in self.rate_limited_by_day)

    @property
    def rate_limited_days(self) -> list[dict]:
        return [{"day": day, "count": n} for day, n in self.rate_limited_by_day]


def percent_remaining(limit: int | None, remaining: int | None) -> Decimal | None:
    if limit is None or remaining is None or limit <= 0:
        return None
    share = Decimal(min(remaining, limit)) * 100 / Decimal(limit)
    return share.quantize(Decimal("0.1"), rounding=ROUND_DOWN)


def dimensions_of(state: RateLimitState, *, now: datetime) -> tuple[Dimension, ...]:
    """The dimensions the provider told, the tightest (lowest share left, not yet reset)
    marked. One rule for the panel, the API and the headroom alert."""
    found = []
    for name in DIMENSIONS:
        limit = getattr(state, f"{name}_limit")
        remaining = getattr(state, f"{name}_remaining")
        reset_at = getattr(state, f"{name}_reset_at")
        if limit is None and remaining is None and reset_at is None:
            continue
        found.append(
            Dimension(
                name=name,
                limit=limit,
                remaining=remaining,
                reset_at=reset_at,
                percent_remaining=percent_remaining(limit, remaining),
                reset_passed=reset_at is not None and reset_at <= now,
            )
        )
    live = [d for d in found if d.percent_remaining is not None and not d.reset_passed]
    if not live:
        return tuple(found)
    tightest = min(live, key=lambda d: d.percent_remaining)
    return tuple(
        Dimension(**{**d.__dict__, "tightest": True}) if d is tightest else d for d in found
    )


def rate_limit_states(*, workspace: Workspace, account_id: int | None = None):
    states = RateLimitState.objects.filter(account__workspace=workspace).select_related(
        "account__provider"
    )
    if account_id is not None:
        states = states.filter(account_id=account_id)
    return states.order_by("account__name", "account_id", "model")


def rate_limited_counts(
    *, workspace: Workspace, since: datetime, account_id: int | None = None
) -> dict[tuple[int, str], list[tuple[datetime, int]]]:
    """429 counts per (account, model): (UTC minute, count) pairs from ``since`` on."""
    hits = RateLimitHit.objects.filter(account__workspace=workspace, minute__gte=since)
    if account_id is not None:
        hits = hits.filter(account_id=account_id)
    rows = hits.values("account_id", "model", "minute").annotate(n=Sum("count"))
    found: dict[tuple[int, str], list[tuple[datetime, int]]] = defaultdict(list)
    for row in rows.order_by("minute"):
        found[(row["account_id"], row["model"])].append((row["minute"], row["n"]))
    return found


def rate_limit_rows(
    *, workspace: Workspace, account_id: int | None = None, now: datetime | None = None
) -> list[RateLimitRow]:
    """Per account and model: headroom now and 429s per day over the last seven days (days
    in the workspace's time zone). Models with 429s but no state (a sync's API) are rows too."""
    now = now or timezone.now()
    zone = workspace.zone
    today = now.astimezone(zone).date()
    days = [today - timedelta(days=n) for n in range(HISTORY_DAYS - 1, -1, -1)]
    since = datetime.combine(days[0], datetime.min.time(), tzinfo=zone)
    counts = rate_limited_counts(workspace=workspace, since=since, account_id=account_id)
    states = {
        (s.account_id, s.model): s
        for s in rate_limit_states(workspace=workspace, account_id=account_id)
    }
    accounts = {s.account_id: s.account for s in states.values()}
    missing = {a for a, _ in counts} - set(accounts)
    if missing:
        for account in workspace.provider_accounts.filter(pk__in=missing).select_related(
            "provider"
        ):
            accounts[account.pk] = account
    rows = []
    for key in sorted(set(states) | set(counts), key=lambda k: (accounts[k[0]].name, k)):
        account = accounts[key[0]]
        per_day = dict.fromkeys(days, 0)
        for minute, n in counts.get(key, ()):
            day = minute.astimezone(zone).date()
            if day in per_day:
                per_day[day] += n
        state = states.get(key)
        dims = dimensions_of(state, now=now) if state else ()
        tightest = next((d.name for d in dims if d.tightest), None)
        rows.append(
            RateLimitRow(
                account_id=account.pk,
                account_name=account.name,
                provider=account.provider.slug,
                model=key[1],
                observed_at=state.observed_at if state else None,
                stale=state is None or now - state.observed_at > stale_after(),
                retry_at=state.retry_at
                if state and state.retry_at and state.retry_at > now
                else None,
                dimensions=dims,
                tightest=tightest,
                rate_limited_by_day=tuple(per_day.items()),
            )
        )
    return rows


def rate_limited_since(*, workspace: Workspace, since: datetime) -> dict[tuple[int, str], int]:
    """429s per (account, model) from ``since`` on (the burst alert)."""
    return {
        key: sum(n for _, n in minutes)
        for key, minutes in rate_limited_counts(workspace=workspace, since=since).items()
    }
