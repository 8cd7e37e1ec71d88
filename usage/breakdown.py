"""Reads: spend broken down by who and what (issue 12, point 3), for the dashboard and the API.

One selector, :func:`spend_breakdown`. Provider, account and model groups read the daily
roll-up (DailyUsage); project, user and feature tags, ingest key and member (the key's
creator) read the attribution roll-up (DailyAttribution). Both go through
``selectors.effective_rollup``, so the user sees only their rows and official figures supersede
estimates exactly as every total does: each group-by's grand total is the dashboard's total.

Official figures and manual entries carry no tags and no key: they count under "(untagged)" and
"(no key)". That is what the data says, not a gap to paper over.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from django.db.models import Case, IntegerField, Q, Sum, Value, When

from accounts.models import User
from providers.models import IngestKey, Provider, ProviderAccount
from usage.db import MoneySum
from usage.models import TOKEN_FIELDS, DailyAttribution, DailyUsage
from usage.selectors import _unnamed_model_labels, effective_rollup

UNTAGGED = "(untagged)"
NO_KEY = "(no key)"
CREATOR_UNKNOWN = "(key creator unknown)"
# The longest range one breakdown reads (the API refuses longer; the dashboard's own periods
# are shorter): a day-by-group series over more would be a report, not a chart.
MAX_BREAKDOWN_DAYS = 400
_TOKENS = tuple(f for f in TOKEN_FIELDS if f != "reasoning_tokens")
_SUMS = {
    "cost_sum": MoneySum("cost"),
    "unpriced": Sum("unpriced_count"),
    "requests": Sum("request_count"),
    **{f"t_{f}": Sum(f) for f in _TOKENS},
}


@dataclass
class BreakdownGroup:
    """One group's totals over the range, and its cost per UTC day (days with rows only)."""

    key: str
    label: str
    detail: str = ""  # what tells two alike labels apart: the provider, the account
    cost: Decimal = Decimal(0)
    unpriced_count: int = 0
    requests: int = 0
    tokens: int = 0
    daily: dict[date, Decimal] = field(default_factory=dict)

    @property
    def series(self) -> list[dict]:
        """The daily costs as [{"date", "cost"}], oldest first."""
        return [{"date": d, "cost": c} for d, c in sorted(self.daily.items())]

    def add(self, row: dict) -> None:
        self.cost += row["cost_sum"] or Decimal(0)
        self.unpriced_count += row["unpriced"] or 0
        self.requests += row["requests"] or 0
        self.tokens += sum(row[f"t_{f}"] or 0 for f in _TOKENS)


@dataclass
class SpendBreakdown:
    """Groups ranked by cost (then tokens, then label). With a `top`, `charted` are the first
    groups and `other` folds the rest (totals and series); without, every group is charted."""

    group_by: str
    start: date
    end: date  # exclusive
    groups: list[BreakdownGroup]
    charted: list[BreakdownGroup]
    other: BreakdownGroup | None = None

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range((self.end - self.start).days)]

    @property
    def total(self) -> Decimal:
        return sum((g.cost for g in self.groups), Decimal(0))

    @property
    def unpriced_count(self) -> int:
        return sum(g.unpriced_count for g in self.groups)

    @property
    def requests(self) -> int:
        return sum(g.requests for g in self.groups)

    @property
    def tokens(self) -> int:
        return sum(g.tokens for g in self.groups)


# A grouping: which roll-up it reads, the roll-up columns a group is made of, and how the
# column values found become (key, label, detail); called with the user and range too.
# Several column values may make one group (member: all the keys one person made).
Labeller = Callable[..., dict[tuple, tuple[str, str, str]]]


@dataclass(frozen=True)
class GroupBy:
    label: str
    rollup: type
    columns: tuple[str, ...]
    labeller: Labeller
    tagged: bool = False  # read from attribution: official and manual rows carry no tags


def _providers(values: list[tuple], **_) -> dict[tuple, tuple[str, str, str]]:
    names = {p.pk: p for p in Provider.objects.filter(pk__in={v[0] for v in values})}
    return {v: (names[v[0]].slug, names[v[0]].name, "") for v in values}


def _accounts(values: list[tuple], **_) -> dict[tuple, tuple[str, str, str]]:
    # The ids come from rows the user may see: no second visibility rule here.
    found = ProviderAccount.objects.filter(pk__in={v[0] for v in values}).select_related("provider")
    accounts = {a.pk: a for a in found}
    return {v: (str(v[0]), accounts[v[0]].name, accounts[v[0]].provider.name) for v in values}


def _tags(values: list[tuple], **_) -> dict[tuple, tuple[str, str, str]]:
    return {v: (v[0], v[0] or UNTAGGED, "") for v in values}


def _keys(values: list[tuple], **_) -> dict[tuple, tuple[str, str, str]]:
    ids = {v[0] for v in values if v[0]}
    keys = {k.pk: k for k in IngestKey.objects.filter(pk__in=ids).select_related("account")}
    result = {}
    for v in values:
        key = keys.get(v[0])
        if not v[0]:
            result[v] = ("0", NO_KEY, "")
        elif key is None:  # deleted since: its spend stays its own
            result[v] = (str(v[0]), f"(deleted key #{v[0]})", "")
        else:
            result[v] = (str(v[0]), f"{key.name or 'Unnamed key'} ({key.hint}…)", key.account.name)
    return result


def _members(values: list[tuple], **_) -> dict[tuple, tuple[str, str, str]]:
    ids = {v[0] for v in values if v[0]}
    keys = IngestKey.objects.filter(pk__in=ids).select_related("created_by")
    creators = {k.pk: k.created_by for k in keys}
    result = {}
    for v in values:
        creator = creators.get(v[0])
        if not v[0]:
            result[v] = ("", NO_KEY, "")
        elif creator is None:  # made before keys recorded it, or the member was deleted
            result[v] = ("unknown", CREATOR_UNKNOWN, "")
        else:
            result[v] = (str(creator.pk), creator.username, "")
    return result


def _models(
    values: list[tuple], *, user: User, start: date, end: date
) -> dict[tuple, tuple[str, str, str]]:
    providers = {p.pk: p for p in Provider.objects.filter(pk__in={v[0] for v in values})}
    unnamed = {v[0] for v in values if not v[1]}
    notes = _unnamed_model_labels(user=user, start=start, end=end, provider_ids=unnamed)
    result = {}
    for provider_id, model in values:
        p = providers[provider_id]
        label = model or f"(no model) {notes.get(provider_id, '')}".strip()
        result[(provider_id, model)] = (f"{p.slug}/{model}", label, p.name)
    return result


GROUP_BYS: dict[str, GroupBy] = {
    "provider": GroupBy("Provider", DailyUsage, ("provider_id",), _providers),
    "account": GroupBy("Account", DailyUsage, ("account_id",), _accounts),
    "model": GroupBy("Model", DailyUsage, ("provider_id", "model"), _models),
    "project": GroupBy("Project", DailyAttribution, ("project",), _tags, tagged=True),
    "user": GroupBy("User (tag)", DailyAttribution, ("end_user",), _tags, tagged=True),
    "feature": GroupBy("Feature", DailyAttribution, ("feature",), _tags, tagged=True),
    "ingest_key": GroupBy("Ingest key", DailyAttribution, ("ingest_key_id",), _keys, tagged=True),
    "member": GroupBy(
        "Member (key creator)", DailyAttribution, ("ingest_key_id",), _members, tagged=True
    ),  # fmt: skip
}
GROUP_BY_CHOICES = [(name, g.label) for name, g in GROUP_BYS.items()]


def _rank(groups: Iterable[BreakdownGroup]) -> list[BreakdownGroup]:
    return sorted(groups, key=lambda g: (-g.cost, -g.tokens, g.label, g.key))


def spend_breakdown(
    *, user: User, group_by: str, start: date, end: date, top: int | None = None
) -> SpendBreakdown:
    """The user's spend of UTC days [start, end) per group: cost (exact; priced records only),
    unpriced count, requests, tokens, and cost per day.

    `top`: only the `top` costliest groups get their own daily series and the rest are folded
    into one "Other" group (the dashboard's chart); two queries whatever the number of
    groups. Without, every group gets its series (the API).
    """
    spec = GROUP_BYS[group_by]
    rows = effective_rollup(user=user, rollup=spec.rollup, start=start, end=end)
    columns = list(spec.columns)
    grouped = rows.values(*columns, *([] if top else ["day"])).annotate(**_SUMS).order_by()
    grouped = list(grouped)
    values = sorted({tuple(r[c] for c in columns) for r in grouped})
    names = spec.labeller(values, user=user, start=start, end=end)
    groups: dict[str, BreakdownGroup] = {}
    members: dict[str, list[tuple]] = {}
    for r in grouped:
        value = tuple(r[c] for c in columns)
        key, label, detail = names[value]
        group = groups.get(key)
        if group is None:
            group = groups[key] = BreakdownGroup(key=key, label=label, detail=detail)
        group.add(r)
        if "day" in r:
            group.daily[r["day"]] = group.daily.get(r["day"], Decimal(0)) + (
                r["cost_sum"] or Decimal(0)
            )
        if value not in members.setdefault(key, []):
            members[key].append(value)
    ranked = _rank(groups.values())
    if not top:
        return SpendBreakdown(group_by, start, end, groups=ranked, charted=ranked)
    # "Other" only when it folds at least two groups; one group is shown as itself.
    charted = ranked if len(ranked) <= top + 1 else ranked[:top]
    other = None
    if len(charted) < len(ranked):
        other = BreakdownGroup(key="", label="Other")
        for g in ranked[len(charted) :]:
            other.cost += g.cost
            other.unpriced_count += g.unpriced_count
            other.requests += g.requests
            other.tokens += g.tokens
    # One query for every charted group's series: each row is put in its group's bucket by a
    # CASE over the column values the group is made of; -1 is "Other".
    whens = [
        When(
            Q(*(Q(**dict(zip(columns, v, strict=True))) for v in members[g.key]), _connector=Q.OR),
            then=Value(i),
        )  # fmt: skip
        for i, g in enumerate(charted)
    ]
    bucket = Case(*whens, default=Value(-1), output_field=IntegerField())
    series = rows.annotate(bucket=bucket).values("bucket", "day").annotate(c=MoneySum("cost"))
    for r in series.order_by():
        target = charted[r["bucket"]] if r["bucket"] >= 0 else other
        target.daily[r["day"]] = target.daily.get(r["day"], Decimal(0)) + (r["c"] or Decimal(0))
    return SpendBreakdown(group_by, start, end, groups=ranked, charted=charted, other=other)
