"""Spend broken down by who and what (issue 12, point 3): every group-by adds up to the
records underneath it and to the dashboard's total, exactly; superseded estimates stay out;
nobody sees another user's spend; the API refuses bad input by name; the page renders each."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from accounts.tests.factories import UserFactory
from costtracker.api import is_money_str
from providers.adapters.base import UsageLine
from providers.models import IngestKey
from providers.services import ingest_key_create
from providers.tests.factories import AccountFactory, provider
from usage import selectors
from usage.breakdown import GROUP_BYS, spend_breakdown
from usage.extraction import RequestUsage
from usage.models import Price
from usage.services.prices import EPOCH
from usage.services.records import manual_entry_create, usage_lines_replace_window
from usage.services.requests import RequestEvent, request_events_record
from usage.tests.attribution import expected_breakdown

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
START, END = date(2026, 11, 1), date(2026, 11, 21)
ALL_GROUP_BYS = list(GROUP_BYS)


def _at(day: int) -> datetime:
    return datetime(2026, 11, day, 9, tzinfo=UTC)


def _event(account, request_id, day, *, key=None, model="gpt-4o-mini", tags=None, **tokens):
    request_events_record(
        account=account,
        ingest_key_id=key.pk if key else None,
        events=[
            RequestEvent(
                request_id=request_id,
                usage=RequestUsage(model=model, found=True, **tokens),
                occurred_at=_at(day),
                tags=tags or {},
            )
        ],
    )


def _official(account, day: date, cost: str, model: str = "gpt-4o"):
    usage_lines_replace_window(
        account=account,
        start=day,
        end=day + timedelta(days=1),
        lines=[
            UsageLine(day=day, model=model, line_item=model, input_tokens=10, cost=Decimal(cost))
        ],
    )


def _price(model: str, input_per_token: str, output_per_token: str) -> None:
    Price.objects.create(
        provider=provider("openai"),
        model=model,
        valid_from=EPOCH,
        input_per_token=Decimal(input_per_token),
        output_per_token=Decimal(output_per_token),
    )


def _key(account, name, creator=None):
    _, key = ingest_key_create(account=account, name=name)
    IngestKey.objects.filter(pk=key.pk).update(created_by=creator)
    return key


@pytest.fixture
def spend():
    """One user's month. gpt-4o-mini costs $0.15 per 1M input tokens, $0.60 per 1M output."""
    _price("gpt-4o-mini", "0.00000015", "0.0000006")
    me, alice, stranger = UserFactory(), UserFactory(username="alice"), UserFactory()
    prod = AccountFactory(workspace=me.personal_workspace, name="Prod")
    groq = AccountFactory(workspace=me.personal_workspace, provider=provider("groq"), name="Groq")
    k1 = _key(prod, "backend", creator=alice)
    k2 = _key(prod, "cron")  # nobody recorded as its creator
    k3 = _key(groq, "lab", creator=alice)
    tagged = {"project": "apollo", "user": "ada", "feature": "search"}
    # Nov 2: 1,000 in + 1,000 out = $0.00015 + $0.0006 = $0.00075, superseded by official $5.
    _event(prod, "e1", 2, key=k1, tags=tagged, input_tokens=1000, output_tokens=1000)
    _official(prod, date(2026, 11, 2), "5")
    # Nov 3: 2,000 in = $0.0003; 1,000 out = $0.0006.
    _event(prod, "e2", 3, key=k1, tags={"project": "apollo", "user": "bob"}, input_tokens=2000)
    _event(prod, "e3", 3, key=k2, tags={"project": "zeus", "feature": "chat"}, output_tokens=1000)
    # Nov 4: 1,000,000 in = $0.15, no tags, no key.
    _event(prod, "e4", 4, input_tokens=1_000_000)
    manual_entry_create(account=prod, day=date(2026, 11, 5), description="seats", cost="12.50")
    # Nov 6: a model without a price: counted as unpriced, never as $0.
    _event(groq, "e5", 6, key=k3, model="mystery", tags={"project": "zeus"}, input_tokens=700)
    # Someone else's spend, with the same tags, must never show.
    theirs = AccountFactory(workspace=stranger.personal_workspace, name="Theirs")
    _event(theirs, "x1", 3, key=_key(theirs, "theirs", creator=alice),
           tags={"project": "apollo"}, input_tokens=9_000_000)  # fmt: skip
    _official(theirs, date(2026, 11, 4), "777")
    return {"me": me, "alice": alice, "stranger": stranger, "prod": prod, "groq": groq,
            "keys": (k1, k2, k3)}  # fmt: skip


def _figures(breakdown) -> dict[str, tuple[str, Decimal, int]]:
    return {g.key: (g.label, g.cost, g.unpriced_count) for g in breakdown.groups}


# Counted: official $5 + $0.0003 + $0.0006 + $0.15 + manual $12.50 = $17.6509 (e1 superseded).
TOTAL = Decimal("17.6509")


@time_machine.travel(NOW, tick=False)
def test_it_breaks_spend_down_by_project_with_untagged_official_and_manual_spend(spend):
    got = spend_breakdown(
        workspace=spend["me"].personal_workspace, group_by="project", start=START, end=END
    )
    assert _figures(got) == {
        # untagged: official $5 + e4 $0.15 + manual $12.50 = $17.65
        "": ("(untagged)", Decimal("17.65"), 0),
        "zeus": ("zeus", Decimal("0.0006"), 1),  # e3; e5 unpriced
        "apollo": ("apollo", Decimal("0.0003"), 0),  # e2 only: e1 is superseded
    }
    assert got.total == TOTAL


@time_machine.travel(NOW, tick=False)
def test_it_groups_by_key_and_by_the_member_who_made_it(spend):
    me, alice = spend["me"], spend["alice"]
    k1, k2, k3 = spend["keys"]
    by_key = spend_breakdown(
        workspace=me.personal_workspace, group_by="ingest_key", start=START, end=END
    )
    assert _figures(by_key) == {
        "0": ("(no key)", Decimal("17.65"), 0),
        str(k2.pk): (f"cron ({k2.hint}…)", Decimal("0.0006"), 0),
        str(k1.pk): (f"backend ({k1.hint}…)", Decimal("0.0003"), 0),
        str(k3.pk): (f"lab ({k3.hint}…)", Decimal(0), 1),
    }
    by_member = spend_breakdown(
        workspace=me.personal_workspace, group_by="member", start=START, end=END
    )
    assert _figures(by_member) == {
        "": ("(no key)", Decimal("17.65"), 0),
        "unknown": ("(key creator unknown)", Decimal("0.0006"), 0),  # k2
        str(alice.pk): ("alice", Decimal("0.0003"), 1),  # k1's e2, and k3's unpriced e5
    }
    IngestKey.objects.filter(pk=k1.pk).delete()  # its spend stays, under its old id
    by_key = spend_breakdown(
        workspace=me.personal_workspace, group_by="ingest_key", start=START, end=END
    )
    assert _figures(by_key)[str(k1.pk)] == (f"(deleted key #{k1.pk})", Decimal("0.0003"), 0)


@time_machine.travel(NOW, tick=False)
def test_it_groups_by_provider_account_and_model_from_the_daily_roll_up(spend):
    me, prod, groq = spend["me"], spend["prod"], spend["groq"]
    by_model = spend_breakdown(
        workspace=me.personal_workspace, group_by="model", start=START, end=END
    )
    assert [(g.label, g.detail, g.cost, g.unpriced_count) for g in by_model.groups] == [
        ("(no model) seats", "OpenAI", Decimal("12.50"), 0),
        ("gpt-4o", "OpenAI", Decimal("5"), 0),
        ("gpt-4o-mini", "OpenAI", Decimal("0.1509"), 0),  # $0.0003 + $0.0006 + $0.15
        ("mystery", "Groq", Decimal(0), 1),
    ]
    by_account = spend_breakdown(
        workspace=me.personal_workspace, group_by="account", start=START, end=END
    )
    assert _figures(by_account) == {
        str(prod.pk): ("Prod", TOTAL, 0),
        str(groq.pk): ("Groq", Decimal(0), 1),
    }
    by_provider = spend_breakdown(
        workspace=me.personal_workspace, group_by="provider", start=START, end=END
    )
    assert _figures(by_provider) == {
        "openai": ("OpenAI", TOTAL, 0),
        "groq": ("Groq", Decimal(0), 1),
    }


@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize("group_by", ALL_GROUP_BYS)
def test_every_group_by_adds_up_to_the_records_and_the_dashboard_total(spend, group_by):
    me = spend["me"]
    got = spend_breakdown(workspace=me.personal_workspace, group_by=group_by, start=START, end=END)
    expected = expected_breakdown(user=me, group_by=group_by, start=START, end=END)
    assert {g.key: (g.cost, g.unpriced_count, g.requests, g.tokens) for g in got.groups} == (
        expected
    )
    summary = selectors.dashboard_summary(
        workspace=me.personal_workspace, start=START, end=END, with_budget=False
    )
    assert got.total == summary.total == TOTAL
    assert got.unpriced_count == summary.unpriced_count == 1
    # The series add up to the totals, per group and per day.
    for g in got.groups:
        assert sum(g.daily.values(), Decimal(0)) == g.cost
    assert "Theirs" not in {g.label for g in got.groups}


@time_machine.travel(NOW, tick=False)
def test_it_never_shows_another_users_spend(spend):
    stranger = spend["stranger"]
    for group_by in ALL_GROUP_BYS:
        got = spend_breakdown(
            workspace=stranger.personal_workspace, group_by=group_by, start=START, end=END
        )
        # x1: 9,000,000 in = $1.35; official $777 on Nov 4 supersedes nothing of Nov 3.
        assert got.total == Decimal("778.35"), group_by
    alone = UserFactory()
    for group_by in ALL_GROUP_BYS:
        assert (
            spend_breakdown(
                workspace=alone.personal_workspace, group_by=group_by, start=START, end=END
            ).groups
            == []
        )


@time_machine.travel(NOW, tick=False)
def test_it_charts_the_top_groups_and_folds_the_rest_into_other(spend):
    me = spend["me"]
    full = spend_breakdown(workspace=me.personal_workspace, group_by="model", start=START, end=END)
    top = spend_breakdown(
        workspace=me.personal_workspace, group_by="model", start=START, end=END, top=2
    )
    assert [g.key for g in top.groups] == [g.key for g in full.groups]
    assert [g.label for g in top.charted] == ["(no model) seats", "gpt-4o"]
    # Other: gpt-4o-mini $0.1509 + mystery $0 (1 unpriced).
    assert (top.other.cost, top.other.unpriced_count) == (Decimal("0.1509"), 1)
    assert top.other.daily == {
        date(2026, 11, 3): Decimal("0.0009"),  # $0.0003 + $0.0006
        date(2026, 11, 4): Decimal("0.15"),
        date(2026, 11, 6): Decimal(0),
    }
    assert top.charted[1].daily == {date(2026, 11, 2): Decimal(5)}
    # One group more than the top is shown as itself, not as "Other".
    three = spend_breakdown(
        workspace=me.personal_workspace, group_by="project", start=START, end=END, top=2
    )
    assert three.other is None and len(three.charted) == 3


def _random_spend(user, seed: int) -> None:
    """Many small priced and unpriced events over 3 accounts, 4 keys and a few tags, with
    official figures on some days; written through the real write paths."""
    rng = random.Random(seed)
    _price("gpt-4o-mini", "0.00000015", "0.0000006")
    _price("o3", "0.000002", "0.000008")
    member = UserFactory()
    ws = user.personal_workspace
    accounts = [AccountFactory(workspace=ws), AccountFactory(workspace=ws),
                AccountFactory(workspace=ws, provider=provider("groq"))]  # fmt: skip
    keys = [None] + [_key(a, f"k{i}", creator=rng.choice([user, member, None]))
                     for i, a in enumerate(accounts)]  # fmt: skip
    for n in range(120):
        account = rng.choice(accounts)
        key = rng.choice([k for k in keys if k is None or k.account_id == account.pk])
        tags = {t: rng.choice(["", "a", "b", "c"]) for t in ("project", "user", "feature")}
        _event(account, f"r{n}", rng.randint(1, 25), key=key,
               model=rng.choice(["gpt-4o-mini", "gpt-4o", "o3", "unknown-model"]),
               tags={t: v for t, v in tags.items() if v},
               input_tokens=rng.randint(1, 5000), output_tokens=rng.randint(0, 5000),
               cache_read_tokens=rng.choice([0, 37]))  # fmt: skip
    for day in (3, 7, 8, 21):
        _official(accounts[0], date(2026, 11, day), f"{rng.randint(1, 999)}.{rng.randint(0, 99)}")
    manual_entry_create(account=accounts[1], day=date(2026, 11, 9), description="x", cost="0.01")


@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize("group_by", ALL_GROUP_BYS)
def test_many_random_records_add_up_exactly_for_every_group_by(group_by):
    me = UserFactory()
    _random_spend(me, seed=12)
    start, end = date(2026, 11, 2), date(2026, 11, 22)  # leaves Nov 1 and after out
    got = spend_breakdown(workspace=me.personal_workspace, group_by=group_by, start=start, end=end)
    expected = expected_breakdown(user=me, group_by=group_by, start=start, end=end)
    assert {g.key: (g.cost, g.unpriced_count, g.requests, g.tokens) for g in got.groups} == (
        expected
    )
    total = selectors.dashboard_summary(
        workspace=me.personal_workspace, start=start, end=end, with_budget=False
    ).total
    assert got.total == total
    charted = spend_breakdown(
        workspace=me.personal_workspace, group_by=group_by, start=start, end=end, top=3
    )
    series = [*charted.charted, *([charted.other] if charted.other else [])]
    assert sum((c for g in series for c in g.daily.values()), Decimal(0)) == total


# --- GET /api/usage/breakdown --------------------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_the_api_gives_each_group_with_money_as_strings_and_its_days(spend, api_client):
    api_client.force_authenticate(spend["me"])
    response = api_client.get(
        "/api/usage/breakdown", {"group_by": "project", "start": "2026-11-01", "end": "2026-11-20"}
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["start"], body["end"], body["group_by"]) == ("2026-11-01", "2026-11-20", "project")
    assert body["total_cost"] == "17.650900000000"  # $17.6509, as worked out above
    assert body["unpriced_count"] == 1
    assert [(g["key"], g["label"], g["cost"], g["unpriced_count"]) for g in body["groups"]] == [
        ("", "(untagged)", "17.650000000000", 0),
        ("zeus", "zeus", "0.000600000000", 1),
        ("apollo", "apollo", "0.000300000000", 0),
    ]
    # untagged per day: official $5 (Nov 2), e4 $0.15 (Nov 4), manual $12.50 (Nov 5).
    assert body["groups"][0]["daily"] == [
        {"date": "2026-11-02", "cost": "5.000000000000"},
        {"date": "2026-11-04", "cost": "0.150000000000"},
        {"date": "2026-11-05", "cost": "12.500000000000"},
    ]
    assert all(is_money_str(d["cost"]) for g in body["groups"] for d in g["daily"])
    assert "untagged" in body["note"]


@time_machine.travel(NOW, tick=False)
def test_the_api_defaults_to_this_month_and_answers_every_group_by(spend, api_client):
    api_client.force_authenticate(spend["me"])
    for group_by in ALL_GROUP_BYS:
        body = api_client.get("/api/usage/breakdown", {"group_by": group_by}).json()
        assert (body["start"], body["end"]) == ("2026-11-01", "2026-11-20")
        assert body["total_cost"] == "17.650900000000", group_by


@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({}, "group_by"),
        ({"group_by": "colour"}, "group_by"),
        ({"group_by": "project", "start": "2026-13-01"}, "start"),
        ({"group_by": "project", "end": "yesterday"}, "end"),
        ({"group_by": "project", "start": "9999-12-30", "end": "9999-12-31"}, "end"),
        ({"group_by": "project", "start": "2026-11-10", "end": "2026-11-09"}, "end"),
        # 400 days is the most: 2025-10-17 .. 2026-11-20 is 400 days, a day more is refused.
        ({"group_by": "project", "start": "2025-10-16", "end": "2026-11-20"}, "end"),
    ],
)
def test_the_api_refuses_bad_input_naming_the_field(api_client, query, field):
    api_client.force_authenticate(UserFactory())
    response = api_client.get("/api/usage/breakdown", query)
    assert response.status_code == 400
    assert list(response.json()) == [field]


@time_machine.travel(NOW, tick=False)
def test_the_api_takes_the_longest_range_it_allows(api_client):
    api_client.force_authenticate(UserFactory())
    query = {"group_by": "member", "start": "2025-10-17", "end": "2026-11-20"}  # 400 days
    assert api_client.get("/api/usage/breakdown", query).status_code == 200


def test_the_api_is_for_signed_in_users_only(api_client):
    assert api_client.get("/api/usage/breakdown", {"group_by": "project"}).status_code in (401, 403)


# --- The dashboard's "Group by" ------------------------------------------------------------


def _chart_total(charts) -> Decimal:
    return sum((Decimal(v) for ds in charts["daily"]["datasets"] for v in ds["data"]), Decimal(0))


@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize("group_by", ALL_GROUP_BYS)
def test_the_dashboard_renders_every_group_by_adding_up_to_its_total(client, spend, group_by):
    client.force_login(spend["me"])
    response = client.get("/", {"group_by": group_by})
    assert response.status_code == 200
    html = response.content.decode()
    assert '<p class="big" data-testid="period-total">$17.65</p>' in html  # $17.6509
    assert _chart_total(response.context["charts"]) == TOTAL
    assert response.context["breakdown"].total == TOTAL
    assert f'<option value="{group_by}" selected>' in html
    assert "Theirs" not in html and "$777" not in html
    if group_by == "provider":  # the default keeps its list of models
        assert 'data-testid="top-models"' in html and 'data-testid="breakdown"' not in html
    else:
        assert 'data-testid="breakdown-total">$17.65</td>' in html
    assert ('data-testid="untagged-note"' in html) == (GROUP_BYS[group_by].dimension is not None)


@time_machine.travel(NOW, tick=False)
def test_the_dashboard_lists_projects_with_their_labels_and_the_api_link(client, spend):
    client.force_login(spend["me"])
    html = client.get("/", {"group_by": "project", "period": "30d"}).content.decode()
    table = html[html.index('data-testid="breakdown"') :]
    # Ranked by cost: (untagged) $17.65, zeus $0.0006 (+1 unpriced), apollo $0.0003.
    assert table.index("(untagged)") < table.index("zeus") < table.index("apollo")
    assert "+ 1 unpriced" in table
    # Last 30 days: Oct 22 .. Nov 20.
    assert "/api/usage/breakdown?group_by=project&amp;start=2026-10-22&amp;end=2026-11-20" in html


@time_machine.travel(NOW, tick=False)
def test_the_group_by_survives_period_links_htmx_and_a_plain_form(client, spend):
    client.force_login(spend["me"])
    partial = client.get("/", {"group_by": "member"}, headers={"HX-Request": "true"})
    body = partial.content.decode()
    assert "<html" not in body and 'id="dashboard-content"' in body
    assert 'href="?period=30d&amp;group_by=member"' in body
    assert 'hx-get="/?period=30d&amp;group_by=member"' in body
    assert '<input type="hidden" name="group_by" value="member">' in body  # custom period
    # Without JS: a GET form with the select, the period it keeps, and a button.
    form = body[body.index('data-testid="group-by"') :]
    form = form[: form.index("</form>")]
    assert 'name="group_by"' in form and 'name="period" value="month"' in form
    assert '<button type="submit">' in form
    # The default group-by leaves the links as they were.
    plain = client.get("/").content.decode()
    assert 'href="?period=30d"' in plain


@time_machine.travel(NOW, tick=False)
def test_a_bad_group_by_is_named_and_keeps_the_period(client, spend):
    client.force_login(spend["me"])
    response = client.get("/", {"group_by": "colour", "period": "90d"})
    html = response.content.decode()
    assert response.context["period"] == "90d" and response.context["group_by"] == "provider"
    assert "group_by: Select a valid choice." in html


@time_machine.travel(NOW, tick=False)
def test_the_chart_stacks_the_costliest_groups_and_one_other(client):
    me = UserFactory()
    account = AccountFactory(workspace=me.personal_workspace)
    _price("gpt-4o-mini", "0.000001", "0")
    # Twelve projects p01..p12 spending $0.001..$0.012 (1,000..12,000 tokens at $1 per 1M).
    for n in range(1, 13):
        _event(account, f"p{n}", 3, tags={"project": f"p{n:02}"}, input_tokens=1000 * n)
    client.force_login(me)
    charts = client.get("/", {"group_by": "project"}).context["charts"]
    labels = [ds["label"] for ds in charts["daily"]["datasets"]]
    assert labels == ["p12", "p11", "p10", "p09", "p08", "p07", "p06", "p05", "Other"]
    other = charts["daily"]["datasets"][-1]["data"]
    assert other[2] == "0.01"  # Nov 3: p01..p04 = $0.001 + $0.002 + $0.003 + $0.004
    assert _chart_total(charts) == Decimal("0.078")  # $0.001 × (1 + … + 12)
