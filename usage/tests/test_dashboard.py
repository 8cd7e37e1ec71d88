from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine
from django.core.management import CommandError, call_command

from accounts.tests.factories import UserFactory
from providers.adapters.base import UsageLine
from providers.models import ProviderAccount
from providers.tests.factories import AccountFactory, provider
from usage.extraction import RequestUsage
from usage.models import DailyUsage, UsageRecord
from usage.services.records import manual_entry_create, usage_lines_replace_window
from usage.services.requests import RequestEvent, request_events_record

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _official(account, day: date, cost: str, model: str = "gpt-4o", tokens: int = 1000):
    usage_lines_replace_window(
        account=account,
        start=day,
        end=date.fromordinal(day.toordinal() + 1),
        lines=[
            UsageLine(
                day=day, model=model, line_item=model, input_tokens=tokens, cost=Decimal(cost)
            )
        ],
    )


def _unpriced_event(account, request_id: str, at: datetime):
    request_events_record(
        account=account,
        events=[
            RequestEvent(
                request_id=request_id,
                usage=RequestUsage(model="mystery-model", input_tokens=700, output_tokens=300),
                occurred_at=at,
            )
        ],
    )


def _login(client, user):
    client.force_login(user)
    return client


@time_machine.travel(NOW, tick=False)
def test_it_shows_next_steps_not_empty_charts_to_a_new_user(client):
    user = UserFactory(username="newbie")
    html = _login(client, user).get("/").content.decode()
    assert "Nothing tracked yet" in html
    assert "manage.py seed_demo --user newbie" in html
    assert "/accounts/add/" in html
    assert "<canvas" not in html


@time_machine.travel(NOW, tick=False)
def test_it_shows_month_total_split_by_source_and_unpriced_count(client):
    user = UserFactory()
    openai = AccountFactory(
        workspace=user.personal_workspace, name="Prod", monthly_budget=Decimal("100")
    )
    groq = AccountFactory(workspace=user.personal_workspace, provider=provider("groq"), name="Groq")
    _official(openai, date(2026, 11, 3), "70.25")
    _official(openai, date(2026, 10, 31), "999")  # last month: not in this month's total
    manual_entry_create(
        account=openai, day=date(2026, 11, 5), description="seats", cost=Decimal("12.50")
    )
    _unpriced_event(groq, "r1", datetime(2026, 11, 6, 9, tzinfo=UTC))
    _unpriced_event(groq, "r2", datetime(2026, 11, 7, 9, tzinfo=UTC))

    response = _login(client, user).get("/")
    html = response.content.decode()

    # 70.25 official + 12.50 manual = 82.75; the unpriced Groq requests add nothing
    assert '<p class="big" data-testid="period-total">$82.75</p>' in html
    assert "$70.25" in html and "$12.50" in html
    # 2 unpriced requests of 700 + 300 tokens = 2,000 tokens
    assert "2 unpriced requests (2,000 tokens)" in html
    # Prod: 82.75 of a 100 budget = 82.8% -> Warning (80 <= x < 100)
    prod = next(a for a in response.context["summary"].accounts if a.account == openai)
    assert (prod.budget_pct, prod.status) == (Decimal("82.8"), "warning")
    assert "Groq" in html and "unpriced" in html


@time_machine.travel(NOW, tick=False)
def test_it_passes_chart_money_as_strings(client):
    user = UserFactory()
    account = AccountFactory(workspace=user.personal_workspace)
    _official(account, date(2026, 11, 2), "1.10")
    _official(account, date(2026, 11, 4), "2.20")
    charts = _login(client, user).get("/").context["charts"]

    daily = charts["daily"]
    assert daily["labels"][0] == "2026-11-01" and daily["labels"][-1] == "2026-11-20"
    assert daily["datasets"][0]["data"][1] == "1.1"
    assert all(isinstance(v, str) for v in daily["datasets"][0]["data"])
    assert charts["doughnut"]["data"] == ["3.3"]  # 1.10 + 2.20
    # Cumulative actual on Nov 4: 1.10 + 2.20 = 3.30; Nov 21 onwards is future
    assert Decimal(charts["forecast"]["actual"][3]) == Decimal("3.30")
    assert charts["forecast"]["actual"][20] is None
    html = client.get("/").content.decode()
    assert 'id="chart-daily-data" type="application/json"' in html
    assert "<script>" not in html.replace("<script src", "")  # no inline code


@time_machine.travel(NOW, tick=False)
def test_it_swaps_only_the_content_for_htmx_period_changes(client):
    user = UserFactory()
    account = AccountFactory(workspace=user.personal_workspace)
    _official(account, date(2026, 11, 10), "5")
    _official(account, date(2026, 10, 10), "7")
    _login(client, user)

    partial = client.get("/?period=last-month", headers={"HX-Request": "true"})
    body = partial.content.decode()
    assert "<html" not in body and 'id="dashboard-content"' in body
    assert '<p class="big" data-testid="period-total">$7.00</p>' in body  # October only
    assert 'hx-get="/?period=30d"' in body and 'href="?period=30d"' in body

    # Last 30 days = Oct 22 .. Nov 20: the Oct 10 line falls outside, Nov 10 inside
    full = client.get("/?period=30d").content.decode()
    assert "<html" in full and '<p class="big" data-testid="period-total">$5.00</p>' in full
    # 5 + 7 = 12 over the last 90 days
    assert "$12.00" in client.get("/?period=90d").content.decode()


@time_machine.travel(NOW, tick=False)
def test_it_rejects_a_bad_custom_period_in_place(client):
    user = UserFactory()
    account = AccountFactory(workspace=user.personal_workspace)
    _official(account, date(2026, 11, 10), "5")
    _login(client, user)
    html = client.get("/?period=custom&start=2026-11-10&end=2026-11-01").content.decode()
    assert "Must not be before the start date." in html
    assert '<p class="big" data-testid="period-total">$5.00</p>' in html  # fell back: this month
    ok = client.get("/?period=custom&start=2026-11-10&end=2026-11-10").content.decode()
    assert '<p class="big" data-testid="period-total">$5.00</p>' in ok
    empty = client.get("/?period=custom&start=2026-11-11&end=2026-11-12").content.decode()
    assert "No usage in this period" in empty and "<canvas" not in empty


def test_it_draws_the_month_in_the_users_time_zone(client):
    # 2026-11-30 20:00 UTC is already December 1st in Auckland (UTC+13).
    user = UserFactory(time_zone="Pacific/Auckland")
    account = AccountFactory(workspace=user.personal_workspace)
    _official(account, date(2026, 11, 29), "40")
    manual_entry_create(account=account, day=date(2026, 12, 1), description="x", cost=Decimal("3"))
    with time_machine.travel(datetime(2026, 11, 30, 20, 0, tzinfo=UTC), tick=False):
        html = _login(client, user).get("/").content.decode()
    assert "1 Dec 2026 – 1 Dec 2026" in html
    assert '<p class="big" data-testid="period-total">$3.00</p>' in html
    assert "days are UTC days; month boundaries follow the workspace's time zone" in html


@time_machine.travel(NOW, tick=False)
def test_it_never_shows_another_users_usage(client):
    me, other = UserFactory(), UserFactory()
    mine = AccountFactory(workspace=me.personal_workspace, name="Mine")
    theirs = AccountFactory(workspace=other.personal_workspace, name="Theirs-secret")
    _official(mine, date(2026, 11, 2), "1")
    _official(theirs, date(2026, 11, 2), "500")
    html = _login(client, me).get("/").content.decode()
    assert "Theirs-secret" not in html and "$500" not in html
    assert '<p class="big" data-testid="period-total">$1.00</p>' in html


@time_machine.travel(NOW, tick=False)
def test_it_lists_top_models_with_unpriced_ones_marked(client):
    user = UserFactory()
    openai = AccountFactory(workspace=user.personal_workspace)
    groq = AccountFactory(workspace=user.personal_workspace, provider=provider("groq"))
    _official(openai, date(2026, 11, 2), "3", model="gpt-4o-mini")
    _unpriced_event(groq, "r1", datetime(2026, 11, 6, 9, tzinfo=UTC))
    models = _login(client, user).get("/").context["models"]
    assert [(m["model"], m["cost"], m["unpriced_count"]) for m in models] == [
        ("gpt-4o-mini", Decimal("3"), 0),
        ("mystery-model", Decimal("0"), 1),
    ]


@time_machine.travel(NOW, tick=False)
def test_it_seeds_demo_data_again_without_duplicating(client):
    user = UserFactory(username="alice")
    call_command("seed_demo", "--user", "alice", "--days", "20")
    counts = (UsageRecord.objects.count(), DailyUsage.objects.count())
    total = _login(client, user).get("/").context["summary"].total
    call_command("seed_demo", "--user", "alice", "--days", "20")
    assert (UsageRecord.objects.count(), DailyUsage.objects.count()) == counts
    assert client.get("/").context["summary"].total == total
    names = sorted(
        ProviderAccount.objects.filter(workspace=user.personal_workspace).values_list(
            "name", flat=True
        )
    )
    assert names[0].startswith("Demo – ") and len(names) == 6
    assert all(a.is_demo for a in ProviderAccount.objects.filter(workspace=user.personal_workspace))
    sources = set(UsageRecord.objects.values_list("source", flat=True))
    assert sources == {"official", "estimated", "manual"}


def test_it_refuses_to_seed_an_unknown_user():
    with pytest.raises(CommandError, match="No user named 'ghost'"):
        call_command("seed_demo", "--user", "ghost")
    assert UsageRecord.objects.count() == 0


def test_it_keeps_chart_json_parseable(client):
    user = UserFactory()
    account = AccountFactory(workspace=user.personal_workspace)
    with time_machine.travel(NOW, tick=False):
        _official(account, date(2026, 11, 2), "1.5")
        html = _login(client, user).get("/").content.decode()
    start = html.index('id="chart-providers-data" type="application/json">')
    start = html.index(">", start) + 1
    data = json.loads(html[start : html.index("</script>", start)])
    assert data["data"] == ["1.5"] and data["labels"][0].startswith("OpenAI $1.50")
