"""Reads: spend broken down by who and what (issue 12, point 3), for the dashboard and the API.

One selector, :func:`spend_breakdown`. Provider, account and model groups read the daily
roll-up (DailyUsage); project, user and feature tags, ingest key and member (the key's
creator) read the attribution roll-up (DailyAttribution), the rows of one dimension (member:
the ingest key's). Both go through
``selectors.effective_rollup``, so a reader sees only their workspace's rows and official
figures supersede estimates exactly as every total does: each group-by's grand total is the
dashboard's total.

Official figures and manual entries carry no tags and no key: they count under "(untagged)" and
"(no key)". That is what the data says, not a gap to paper over.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from functools import reduce

from django.db import connection
from django.db.models import CharField, F, QuerySet, Value, When
from django.db.models.expressions import Case

from accounts.models import User, Workspace
from providers.models import IngestKey, Provider, ProviderAccount
from usage.models import TOKEN_FIELDS, DailyAttribution, DailyUsage, Dimension
from usage.selectors import _unnamed_model_labels, account_rows_visible_to, effective_rollup

UNTAGGED = "(untagged)"
NO_KEY = "(no key)"
CREATOR_UNKNOWN = "(key creator unknown)"
# The longest range one breakdown reads (the API refuses longer; the dashboard's own periods
# are shorter): a day-by-group series over more would be a report, not a chart.
MAX_BREAKDOWN_DAYS = 400
_TOKENS = tuple(f for f in TOKEN_FIELDS if f != "reasoning_tokens")


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
# column values found become (key, label, detail); called with the workspace and range too.
# Several column values may make one group (member: all the keys one person made).
Labeller = Callable[..., dict[tuple, tuple[str, str, str]]]


@dataclass(frozen=True)
class GroupBy:
    label: str
    rollup: type
    columns: tuple[str, ...]
    labeller: Labeller
    # The attribution roll-up's dimension read (official and manual rows carry no tags).
    dimension: Dimension | None = None
    # Columns computed per roll-up row before grouping (member), given the workspace.
    computed: Callable[..., dict[str, Case]] | None = None


def _providers(values: list[tuple], **_) -> dict[tuple, tuple[str, str, str]]:
    names = {p.pk: p for p in Provider.objects.filter(pk__in={v[0] for v in values})}
    return {v: (names[v[0]].slug, names[v[0]].name, "") for v in values}


def _accounts(values: list[tuple], **_) -> dict[tuple, tuple[str, str, str]]:
    # The ids come from rows the reader may see: no second visibility rule here.
    found = ProviderAccount.objects.filter(pk__in={v[0] for v in values}).select_related("provider")
    accounts = {a.pk: a for a in found}
    return {v: (str(v[0]), accounts[v[0]].name, accounts[v[0]].provider.name) for v in values}


def _tags(values: list[tuple], **_) -> dict[tuple, tuple[str, str, str]]:
    return {v: (v[0], v[0] or UNTAGGED, "") for v in values}


def _keys(values: list[tuple], **_) -> dict[tuple, tuple[str, str, str]]:
    """The key dimension's values: key ids as text, '' for no key (whose group key is "0")."""
    ids = {int(v[0]) for v in values if v[0]}
    keys = {k.pk: k for k in IngestKey.objects.filter(pk__in=ids).select_related("account")}
    result = {}
    for v in values:
        if not v[0]:
            result[v] = ("0", NO_KEY, "")
        elif (key := keys.get(int(v[0]))) is None:  # deleted since: its spend stays its own
            result[v] = (v[0], f"(deleted key #{v[0]})", "")
        else:
            result[v] = (v[0], f"{key.name or 'Unnamed key'} ({key.hint}…)", key.account.name)
    return result


def _member_column(*, workspace: Workspace) -> dict[str, Case]:
    """Who made the key that wrote a row, as a column to group by: the creator's user id, ''
    for rows no key wrote, 'unknown' for keys without a recorded creator (made before keys
    recorded it, a member since deleted) and deleted keys. Built from the workspace's few keys."""
    made_by: dict[int, list[int]] = {}
    keys = account_rows_visible_to(workspace=workspace, model=IngestKey).values_list(
        "pk", "created_by_id"
    )
    for pk, creator in keys:
        if creator is not None:
            made_by.setdefault(creator, []).append(pk)
    whens = [When(value="", then=Value(""))]
    whens += [
        When(value__in=[str(pk) for pk in ids], then=Value(str(c)))
        for c, ids in sorted(made_by.items())
    ]
    return {"member": Case(*whens, default=Value("unknown"), output_field=CharField())}


def _members(values: list[tuple], **_) -> dict[tuple, tuple[str, str, str]]:
    ids = [int(v[0]) for v in values if v[0] not in ("", "unknown")]
    names = dict(User.objects.filter(pk__in=ids).values_list("pk", "username"))
    special = {"": NO_KEY, "unknown": CREATOR_UNKNOWN}
    return {v: (v[0], special.get(v[0]) or names[int(v[0])], "") for v in values}


def _models(
    values: list[tuple], *, workspace: Workspace, start: date, end: date
) -> dict[tuple, tuple[str, str, str]]:
    providers = {p.pk: p for p in Provider.objects.filter(pk__in={v[0] for v in values})}
    unnamed = {v[0] for v in values if not v[1]}
    notes = _unnamed_model_labels(workspace=workspace, start=start, end=end, provider_ids=unnamed)
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
    "project": GroupBy("Project", DailyAttribution, ("value",), _tags, Dimension.PROJECT),
    "user": GroupBy("User (tag)", DailyAttribution, ("value",), _tags, Dimension.USER),
    "feature": GroupBy("Feature", DailyAttribution, ("value",), _tags, Dimension.FEATURE),
    "ingest_key": GroupBy("Ingest key", DailyAttribution, ("value",), _keys, Dimension.INGEST_KEY),
    "member": GroupBy(
        "Member (key creator)",
        DailyAttribution,
        ("member",),
        _members,
        Dimension.INGEST_KEY,
        computed=_member_column,
    ),  # fmt: skip
}
GROUP_BY_CHOICES = [(name, g.label) for name, g in GROUP_BYS.items()]


def _number(value) -> Decimal:
    """A money sum as read by a raw cursor: SQLite's exact sum arrives as text (usage/db.py)."""
    if value is None:
        return Decimal(0)
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _breakdown_sql(picked: QuerySet, columns: list[str]) -> tuple[str, list]:
    """One statement over the roll-up rows: each group's totals ranked by cost (then tokens,
    then the group's values), and the cost per day of each of the `top` first groups with the
    rest under rank 0 ("Other"), or of every group when at most `top` + 1 there are.

    The roll-up rows (`picked`, the ORM's query: group columns, day and measures of each row)
    are read once and summed twice, per group and per (rank, day): never per (group, day),
    which for a tag with hundreds of values is nearly as many groups as rows. Two parameters
    follow the query's: `top` twice.
    """
    inner, params = picked.query.sql_with_params()
    q = connection.ops.quote_name
    g = ", ".join(q(c) for c in columns)
    money = "decimal_sum" if connection.vendor == "sqlite" else "SUM"
    # Ranked as numbers: SQLite's exact sum is text (ranking a REAL copy of it is close enough).
    rank_cost = f"CAST({money}(c) AS REAL)" if connection.vendor == "sqlite" else "SUM(c)"
    same = " AND ".join(f"picked.{q(c)} = totals.{q(c)}" for c in columns)
    nulls = ", ".join("NULL" for _ in columns)
    sql = (
        f"WITH picked AS ({inner}), totals AS (SELECT {g}, {money}(c) AS c, SUM(u) AS u, "
        f"SUM(r) AS r, SUM(tok) AS tok, ROW_NUMBER() OVER (ORDER BY {rank_cost} DESC, "
        f"SUM(tok) DESC, {g}) AS n FROM picked GROUP BY {g}) "
        f"SELECT n, {g}, NULL AS day, c, u, r, tok FROM totals UNION ALL "
        "SELECT CASE WHEN totals.n <= %s OR (SELECT COUNT(*) FROM totals) <= %s + 1 "
        f"THEN totals.n ELSE 0 END, {nulls}, picked.day, {money}(picked.c), NULL, NULL, NULL "
        f"FROM picked JOIN totals ON {same} GROUP BY 1, picked.day"
    )
    return sql, list(params)


def spend_breakdown(
    *, workspace: Workspace, group_by: str, start: date, end: date, top: int | None = None
) -> SpendBreakdown:
    """The workspace's spend of UTC days [start, end) per group: cost (exact; priced records only),
    unpriced count, requests, tokens, and cost per day.

    `top`: only the `top` costliest groups get their own daily series and the rest are folded
    into one "Other" group (the dashboard's chart). Without, every group gets its series (the
    API). One statement, whatever the number of groups, that reads the roll-up rows once.
    """
    spec = GROUP_BYS[group_by]
    rows = effective_rollup(workspace=workspace, rollup=spec.rollup, start=start, end=end)
    if spec.dimension is not None:
        rows = rows.filter(dimension=spec.dimension)
    if spec.computed is not None:
        rows = rows.annotate(**spec.computed(workspace=workspace))
    columns = list(spec.columns)
    picked = rows.values(
        *columns,
        "day",
        c=F("cost"),
        u=F("unpriced_count"),
        r=F("request_count"),
        tok=reduce(operator.add, (F(f) for f in _TOKENS)),
    ).order_by()
    sql, params = _breakdown_sql(picked, columns)
    limit = top or 2**31 - 2
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, limit, limit])
        found = cursor.fetchall()
    width = len(columns)
    totals = sorted((r for r in found if r[width + 1] is None), key=lambda r: r[0])
    names = spec.labeller(
        [tuple(r[1 : width + 1]) for r in totals], workspace=workspace, start=start, end=end
    )
    ranked = []
    by_rank: dict[int, BreakdownGroup] = {}
    for r in totals:
        key, label, detail = names[tuple(r[1 : width + 1])]
        c, u, req, tok = r[width + 2 :]
        group = BreakdownGroup(key, label, detail, _number(c), u or 0, req or 0, tok or 0)
        ranked.append(group)
        by_rank[r[0]] = group
    charted = ranked if len(ranked) <= limit + 1 else ranked[:limit]
    other = None
    if len(charted) < len(ranked):
        rest = ranked[len(charted) :]
        other = BreakdownGroup(
            key="",
            label="Other",
            cost=sum((g.cost for g in rest), Decimal(0)),
            unpriced_count=sum(g.unpriced_count for g in rest),
            requests=sum(g.requests for g in rest),
            tokens=sum(g.tokens for g in rest),
        )
    for r in found:
        day = r[width + 1]
        if day is None:
            continue
        target = by_rank[r[0]] if r[0] else other
        target.daily[day if isinstance(day, date) else date.fromisoformat(day)] = _number(
            r[width + 2]
        )
    return SpendBreakdown(group_by, start, end, groups=ranked, charted=charted, other=other)
