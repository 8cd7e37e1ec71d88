"""Issue 13 point 2, as a user meets it: budgets for an ingest key or a tag value, per day, week
or month, enforced or not — made on the budget page and through the API, their spend, their
periods in the workspace's time zone, their alerts, and how the list shows them."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.models import Membership, Role
from accounts.tests.factories import UserFactory
from alerts import selectors, services
from alerts.models import Alert, Budget
from alerts.tests.factories import BudgetFactory
from providers.services import ingest_key_create, ingest_key_revoke
from providers.tests.factories import AccountFactory, provider
from usage.models import DailyUsage, Price, Source

pytestmark = pytest.mark.django_db

NOV_15 = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)  # a Sunday


@pytest.fixture(autouse=True)
def _now():
    with time_machine.travel(NOV_15, tick=False):
        yield


@pytest.fixture
def user():
    return UserFactory()


@pytest.fixture
def workspace(user):
    return user.personal_workspace


@pytest.fixture
def account(workspace):
    return AccountFactory(workspace=workspace, provider=provider("openai"), name="Prod OpenAI")


@pytest.fixture
def key(account, user):
    return ingest_key_create(account=account, name="search-svc", created_by=user)[1]


@pytest.fixture
def web(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def api(api_client, user):
    api_client.force_authenticate(user)
    return api_client


def field_errors(html: str, field: str) -> list[str]:
    """The errors the budget form shows in the paragraph of `field`."""
    paragraph = re.search(rf'<p class="field-{field}">(.*?)</p>', html, re.S)
    assert paragraph, f"no {field} field on the page"
    return re.findall(r'<span class="error">(.*?)</span>', paragraph.group(1), re.S)


def form(**fields) -> dict:
    return {"amount": "50", "thresholds": "80, 100", "period": "monthly", **fields}


# --- the form ----------------------------------------------------------------------------------


def test_it_creates_a_budget_of_each_scope_on_the_page(web, workspace, account, key):
    posts = [
        form(scope="overall", period="daily"),
        form(scope="provider", provider=provider("anthropic").pk, period="weekly"),
        form(scope="account", account=account.pk),
        form(scope="ingest_key", ingest_key=key.pk, period="daily", enforced="on"),
        form(
            scope="tag",
            tag="project",
            tag_value="  search  ",
            enforced="on",
            refuse_unpriced="on",
        ),
    ]
    for post in posts:
        response = web.post(reverse("budget-add"), post)
        assert response.status_code == 302, response.content.decode()[:3000]
    made = {
        (b.scope, b.period): b
        for b in Budget.objects.filter(workspace=workspace).select_related("ingest_key")
    }
    assert set(made) == {
        ("overall", "daily"),
        ("provider", "weekly"),
        ("account", "monthly"),
        ("ingest_key", "daily"),
        ("tag", "monthly"),
    }
    assert made["provider", "weekly"].provider == provider("anthropic")
    assert made["account", "monthly"].account == account
    by_key = made["ingest_key", "daily"]
    assert (by_key.ingest_key, by_key.enforced, by_key.refuse_unpriced) == (key, True, False)
    by_tag = made["tag", "monthly"]
    assert (by_tag.tag, by_tag.tag_value, by_tag.enforced, by_tag.refuse_unpriced) == (
        "project",
        "search",  # stripped
        True,
        True,
    )
    assert by_tag.amount == Decimal("50.00")


def test_it_ignores_the_pickers_of_other_scopes(web, workspace, account, key):
    response = web.post(
        reverse("budget-add"),
        form(scope="tag", tag="user", tag_value="ada", ingest_key=key.pk, account=account.pk),
    )
    assert response.status_code == 302
    budget = Budget.objects.get(workspace=workspace)
    assert (budget.scope, budget.ingest_key, budget.account) == ("tag", None, None)


def test_it_edits_a_budget_to_another_scope_and_period(web, workspace, key):
    budget = services.budget_create(
        workspace=workspace, scope="tag", tag="feature", tag_value="chat", amount=Decimal("5")
    )
    page = web.get(reverse("budget-edit", args=[budget.pk])).content.decode()
    assert 'value="chat"' in page
    assert '<option value="feature" selected>' in page
    response = web.post(
        reverse("budget-edit", args=[budget.pk]),
        form(scope="ingest_key", ingest_key=key.pk, period="weekly", tag="feature"),
    )
    assert response.status_code == 302
    budget.refresh_from_db()
    assert (budget.scope, budget.ingest_key, budget.tag, budget.tag_value, budget.period) == (
        "ingest_key",
        key,
        "",
        "",
        "weekly",
    )


@pytest.mark.parametrize(
    ("post", "field", "message"),
    [
        (form(scope="provider"), "provider", "Choose the provider this budget covers."),
        (form(scope="account"), "account", "Choose the account this budget covers."),
        (form(scope="ingest_key"), "ingest_key", "Choose the ingest key this budget covers."),
        (form(scope="tag", tag_value="search"), "tag", "Choose the tag (project, user or"),
        (form(scope="tag", tag="project"), "tag_value", "Enter the tag value this budget"),
        (form(scope="tag", tag="project", tag_value="a\x07b"), "tag_value", "control characters"),
        (form(scope="tag", tag="team", tag_value="x"), "tag", "Select a valid choice."),
        (form(scope="overall", period="hourly"), "period", "Select a valid choice."),
        (
            form(scope="overall", refuse_unpriced="on"),
            "refuse_unpriced",
            "Only an enforced budget refuses calls.",
        ),
        (form(scope="overall", amount="-1"), "amount", "greater than or equal to"),
    ],
    ids=lambda v: v if isinstance(v, str) and " " not in v else None,
)
def test_it_shows_each_error_beside_its_field(web, workspace, post, field, message):
    response = web.post(reverse("budget-add"), post)
    assert response.status_code == 200
    errors = field_errors(response.content.decode(), field)
    assert any(message in e for e in errors), errors
    assert not Budget.objects.filter(workspace=workspace).exists()


def test_it_offers_only_the_workspaces_active_keys(web, workspace, account, key, user):
    revoked = ingest_key_create(account=account, name="old-batch", created_by=user)[1]
    ingest_key_revoke(key=revoked)
    nameless = ingest_key_create(account=account)[1]
    theirs = ingest_key_create(account=AccountFactory(), name="their-key")[1]

    page = web.get(reverse("budget-add")).content.decode()
    assert f'<option value="{key.pk}">search-svc · Prod OpenAI</option>' in page
    assert f'<option value="{nameless.pk}">{nameless.hint}… · Prod OpenAI</option>' in page
    assert "old-batch" not in page and "their-key" not in page

    for other in (revoked, theirs):
        response = web.post(reverse("budget-add"), form(scope="ingest_key", ingest_key=other.pk))
        assert response.status_code == 200
        assert field_errors(response.content.decode(), "ingest_key") == [
            "Select a valid choice. That choice is not one of the available choices."
        ]
    assert not Budget.objects.filter(workspace=workspace).exists()


def test_it_keeps_a_budgets_key_on_the_form_once_revoked(web, workspace, key):
    budget = services.budget_create(
        workspace=workspace, scope="ingest_key", ingest_key=key, amount=Decimal("5")
    )
    ingest_key_revoke(key=key)
    page = web.get(reverse("budget-edit", args=[budget.pk])).content.decode()
    assert f'<option value="{key.pk}" selected>search-svc · Prod OpenAI (revoked)</option>' in page
    response = web.post(
        reverse("budget-edit", args=[budget.pk]),
        form(scope="ingest_key", ingest_key=key.pk, amount="7"),
    )
    assert response.status_code == 302
    budget.refresh_from_db()
    assert budget.amount == Decimal("7.00")


def test_the_form_says_per_period_and_where_forecasts_apply(web):
    page = web.get(reverse("budget-add")).content.decode()
    assert "Amount (USD per period)" in page
    assert "Forecasts apply only to monthly budgets over all spend, a provider or an" in page
    assert "Enforce: refuse proxied calls once spent" in page
    assert "Also refuse models without a price" in page
    assert '<option value="daily">Day</option>' in page
    assert '<option value="weekly">Week</option>' in page
    assert '<option value="monthly" selected>Month</option>' in page


# --- the API -----------------------------------------------------------------------------------


def test_it_creates_a_budget_of_each_scope_through_the_api(api, workspace, account, key):
    bodies = [
        {"scope": "overall", "amount": "10", "period": "daily"},
        {"scope": "provider", "provider": "anthropic", "amount": "10", "period": "weekly"},
        {"scope": "account", "account": account.pk, "amount": "10"},
        {"scope": "ingest_key", "ingest_key": key.pk, "amount": "10", "enforced": True},
        {
            "scope": "tag",
            "tag": "user",
            "tag_value": "ada",
            "amount": "10",
            "period": "daily",
            "enforced": True,
            "refuse_unpriced": True,
        },
    ]
    answers = []
    for body in bodies:
        response = api.post("/api/budgets", body, format="json")
        assert response.status_code == 201, response.json()
        answers.append(response.json())
    overall, by_provider, by_account, by_key, by_tag = answers
    # 2026-11-15 is a Sunday: its day, its week (Monday 9th to Sunday 15th), its month.
    assert (overall["period"], overall["period_start"], overall["period_end"]) == (
        "daily",
        "2026-11-15",
        "2026-11-16",
    )
    assert (by_provider["period_start"], by_provider["period_end"]) == ("2026-11-09", "2026-11-16")
    assert (by_account["period"], by_account["period_start"], by_account["period_end"]) == (
        "monthly",  # the default
        "2026-11-01",
        "2026-12-01",
    )
    assert (by_key["ingest_key"], by_key["enforced"], by_key["refuse_unpriced"]) == (
        key.pk,
        True,
        False,
    )
    assert (by_key["tag"], by_key["tag_value"], by_key["provider"], by_key["account"]) == (
        "",
        "",
        None,
        None,
    )
    assert (by_tag["tag"], by_tag["tag_value"], by_tag["refuse_unpriced"]) == ("user", "ada", True)
    assert Budget.objects.filter(workspace=workspace).count() == 5


def _other_workspaces_key():
    return ingest_key_create(account=AccountFactory(), name="theirs")[1].pk


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scope": "ingest_key"}, "ingest_key"),
        ({"scope": "ingest_key", "ingest_key": "theirs"}, "ingest_key"),
        ({"scope": "ingest_key", "ingest_key": 999_999}, "ingest_key"),
        ({"scope": "ingest_key", "ingest_key": "x"}, "ingest_key"),
        ({"scope": "tag", "tag_value": "ada"}, "tag"),
        ({"scope": "tag", "tag": "team", "tag_value": "ada"}, "tag"),
        ({"scope": "tag", "tag": "user"}, "tag_value"),
        ({"scope": "tag", "tag": "user", "tag_value": "x" * 201}, "tag_value"),
        ({"scope": "tag", "tag": "user", "tag_value": "a\nb"}, "tag_value"),
        ({"scope": "overall", "tag": "user"}, "tag"),
        ({"scope": "overall", "tag_value": "ada"}, "tag_value"),
        ({"scope": "overall", "period": "yearly"}, "period"),
        ({"scope": "overall", "period": None}, "period"),
        ({"scope": "overall", "refuse_unpriced": True}, "refuse_unpriced"),
        ({"scope": "overall", "enforced": "maybe"}, "enforced"),
    ],
)
def test_it_answers_400_naming_the_field(api, workspace, key, body, field):
    if body.get("ingest_key") == "theirs":
        body = {**body, "ingest_key": _other_workspaces_key()}
    response = api.post("/api/budgets", {"amount": "10", **body}, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json(), response.json()
    assert not Budget.objects.filter(workspace=workspace).exists()


def test_a_put_replaces_the_target_and_a_patch_keeps_it(api, workspace, key):
    budget = services.budget_create(
        workspace=workspace,
        scope="tag",
        tag="project",
        tag_value="search",
        amount=Decimal("5"),
        period="weekly",
        enforced=True,
        refuse_unpriced=True,
    )
    url = f"/api/budgets/{budget.pk}"

    patched = api.patch(url, {"amount": "6"}, format="json")
    assert patched.status_code == 200, patched.json()
    assert (patched.json()["tag"], patched.json()["period"]) == ("project", "weekly")

    # A PATCH to another scope must clear the old target too: 400 naming it, nothing saved.
    refused = api.patch(url, {"scope": "ingest_key", "ingest_key": key.pk}, format="json")
    assert refused.status_code == 400 and set(refused.json()) == {"tag", "tag_value"}
    budget.refresh_from_db()
    assert (budget.scope, budget.ingest_key_id) == ("tag", None)

    put = api.put(
        url,
        {"scope": "ingest_key", "ingest_key": key.pk, "amount": "7", "enforced": False},
        format="json",
    )
    assert put.status_code == 400 and set(put.json()) == {"refuse_unpriced"}
    put = api.put(
        url,
        {
            "scope": "ingest_key",
            "ingest_key": key.pk,
            "amount": "7",
            "enforced": False,
            "refuse_unpriced": False,
        },
        format="json",
    )
    assert put.status_code == 200, put.json()
    budget.refresh_from_db()
    assert (budget.scope, budget.ingest_key, budget.tag, budget.tag_value) == (
        "ingest_key",
        key,
        "",
        "",
    )
    assert budget.period == "monthly"  # a PUT without a period: the default
    assert (budget.enforced, budget.refuse_unpriced) == (False, False)


# --- spend -------------------------------------------------------------------------------------


def _ingest(client, raw: str, events: list[dict]):
    response = client.post(
        "/api/usage/events", events, format="json", HTTP_AUTHORIZATION=f"Bearer {raw}"
    )
    assert response.status_code == 200, response.content
    assert {item["status"] for item in response.json()["results"]} == {"created"}, response.json()


def _event(request_id: str, *, input_tokens=0, output_tokens=0, **tags) -> dict:
    return {
        "request_id": request_id,
        "occurred_at": "2026-11-15T10:00:00Z",
        "model": "gpt-4o-mini",
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        "tags": tags,
    }


def test_a_key_budget_and_a_tag_budget_spend_what_their_records_cost(api, workspace, account, user):
    # The price the test relies on, whatever the catalogue says.
    Price.objects.create(
        provider=provider("openai"),
        model="gpt-4o-mini",
        valid_from=datetime(2020, 1, 1, tzinfo=UTC),
        input_per_token=Decimal("0.00000015"),
        output_per_token=Decimal("0.0000006"),
    )
    raw_a, key_a = ingest_key_create(account=account, name="a", created_by=user)
    other_account = AccountFactory(workspace=workspace, provider=provider("openai"), name="Dev")
    raw_b, key_b = ingest_key_create(account=other_account, name="b", created_by=user)
    # gpt-4o-mini: $0.15 per million input tokens, $0.60 per million output tokens.
    sender = APIClient()
    _ingest(
        sender,
        raw_a,
        [
            _event("a1", input_tokens=1_000_000, project="search"),  # $0.15
            _event("a2", output_tokens=1_000_000, project="chat"),  # $0.60
            _event("a3", input_tokens=2_000_000, output_tokens=500_000),  # $0.30 + $0.30, no tag
        ],
    )
    _ingest(
        sender,
        raw_b,
        [
            _event("b1", input_tokens=2_000_000, project="search", feature="chat"),  # $0.30
            _event("b2", output_tokens=3_000_000, user="search"),  # $1.80: a user, not a project
        ],
    )
    by_key = services.budget_create(
        workspace=workspace, scope="ingest_key", ingest_key=key_a, amount=Decimal("1")
    )
    by_tag = services.budget_create(
        workspace=workspace, scope="tag", tag="project", tag_value="search", amount=Decimal("1")
    )
    by_other_key = services.budget_create(
        workspace=workspace, scope="ingest_key", ingest_key=key_b, amount=Decimal("10")
    )

    key_status = selectors.budget_status_for(workspace=workspace, budget=by_key)
    assert key_status.spent == Decimal("1.35")  # a1 $0.15 + a2 $0.60 + a3 $0.60
    tag_status = selectors.budget_status_for(workspace=workspace, budget=by_tag)
    assert tag_status.spent == Decimal("0.45")  # a1 $0.15 + b1 $0.30 (b2's is a user tag)
    other_status = selectors.budget_status_for(workspace=workspace, budget=by_other_key)
    assert other_status.spent == Decimal("2.10")  # b1 $0.30 + b2 $1.80
    # $1.35 of $1: 135 %, critical, one alert at 100 % (the highest passed).
    assert (key_status.percent, key_status.status) == (Decimal("135.0"), "critical")
    fired = Alert.objects.filter(budget=by_key, kind=Alert.Kind.THRESHOLD, listed=True)
    assert list(fired.values_list("threshold", flat=True)) == [100]
    assert fired.get().message.startswith("Ingest key a (Prod OpenAI): $1.35 spent this month")

    listed = {b["id"]: b for b in api.get("/api/budgets").json()["results"]}
    assert Decimal(listed[by_key.pk]["spent"]) == Decimal("1.35")
    assert Decimal(listed[by_tag.pk]["spent"]) == Decimal("0.45")
    assert listed[by_tag.pk]["percent"] == "45.0"  # $0.45 of $1


# --- periods in the workspace's time zone ------------------------------------------------------


def _spend(account, day: date, amount: str) -> None:
    DailyUsage.objects.create(
        account=account,
        provider=account.provider,
        day=day,
        source=Source.ESTIMATED,
        model="gpt-4o",
        cost=Decimal(amount),
    )


def test_periods_are_the_workspaces_day_week_and_month(api, workspace, account):
    workspace.time_zone = "America/Los_Angeles"
    workspace.save()
    for day, amount in [
        (date(2026, 10, 31), "16"),  # Saturday, last month
        (date(2026, 11, 15), "1"),  # Sunday, the week before
        (date(2026, 11, 16), "2"),  # Monday
        (date(2026, 11, 22), "4"),  # Sunday
        (date(2026, 11, 23), "8"),  # Monday, the next week
        (date(2026, 12, 1), "32"),  # next month
    ]:
        _spend(account, day, amount)
    budgets = {
        period: BudgetFactory(workspace=workspace, period=period, amount=Decimal("100"))
        for period in ("daily", "weekly", "monthly")
    }
    # Monday 03:00 in UTC is still Sunday 22 November, 19:00, in Los Angeles (UTC-8).
    with time_machine.travel(datetime(2026, 11, 23, 3, 0, tzinfo=UTC), tick=False):
        spent = {
            period: selectors.budget_status_for(workspace=workspace, budget=budget)
            for period, budget in budgets.items()
        }
        answers = {b["period"]: b for b in api.get("/api/budgets").json()["results"]}
    assert spent["daily"].spent == Decimal("4")  # Sunday the 22nd only
    assert spent["weekly"].spent == Decimal("6")  # Monday 16th $2 + Sunday 22nd $4
    assert spent["monthly"].spent == Decimal("15")  # $1 + $2 + $4 + $8 of November
    assert (answers["daily"]["period_start"], answers["daily"]["period_end"]) == (
        "2026-11-22",
        "2026-11-23",
    )
    assert (answers["weekly"]["period_start"], answers["weekly"]["period_end"]) == (
        "2026-11-16",
        "2026-11-23",
    )
    assert (answers["monthly"]["period_start"], answers["monthly"]["period_end"]) == (
        "2026-11-01",
        "2026-12-01",
    )
    assert Decimal(answers["weekly"]["spent"]) == Decimal("6")

    # An hour later than 07:59 UTC it is Monday in Los Angeles too: a new day and week.
    with time_machine.travel(datetime(2026, 11, 23, 8, 0, tzinfo=UTC), tick=False):
        daily = selectors.budget_status_for(workspace=workspace, budget=budgets["daily"])
        weekly = selectors.budget_status_for(workspace=workspace, budget=budgets["weekly"])
    assert (daily.period, daily.spent) == (date(2026, 11, 23), Decimal("8"))
    assert (weekly.period, weekly.spent) == (date(2026, 11, 23), Decimal("8"))


def test_a_daily_budget_alerts_once_a_day(workspace, account):
    budget = BudgetFactory(workspace=workspace, period="daily", amount=Decimal("10"))
    _spend(account, date(2026, 11, 15), "9")  # $9 of $10: 90 %, past 80 %

    first = services.alerts_evaluate_for_workspace(workspace=workspace)
    second = services.alerts_evaluate_for_workspace(workspace=workspace)
    assert [(a.threshold, a.period) for a in first] == [(80, date(2026, 11, 15))]
    assert second == []
    assert "spent today" in first[0].message

    with time_machine.travel(datetime(2026, 11, 16, 12, 0, tzinfo=UTC), tick=False):
        quiet = services.alerts_evaluate_for_workspace(workspace=workspace)
        assert quiet == []  # nothing spent on the 16th yet
        _spend(account, date(2026, 11, 16), "8.5")  # $8.50 of $10: 85 %
        next_day = services.alerts_evaluate_for_workspace(workspace=workspace)
        again = services.alerts_evaluate_for_workspace(workspace=workspace)
    assert [(a.threshold, a.period) for a in next_day] == [(80, date(2026, 11, 16))]
    assert again == []
    fired = Alert.objects.filter(budget=budget, kind=Alert.Kind.THRESHOLD).order_by("period")
    assert [a.dedupe_key for a in fired] == [
        f"budget:{budget.pk}:2026-11-15:80:10.00",
        f"budget:{budget.pk}:2026-11-16:80:10.00",
    ]


# --- the list ----------------------------------------------------------------------------------


def _row(html: str, label: str) -> str:
    for row in re.findall(r"<tr class=\"status-.*?</tr>", html, re.S):
        if label in row:
            return row
    raise AssertionError(f"no row for {label}")


def test_the_list_shows_period_enforcement_and_refusal(web, client, workspace, account, key):
    _spend(account, date(2026, 11, 15), "12")  # all spend today, this week, this month: $12
    services.budget_create(
        workspace=workspace, scope="overall", period="daily", amount=Decimal("10"), enforced=True
    )
    services.budget_create(
        workspace=workspace, scope="overall", period="weekly", amount=Decimal("10")
    )
    services.budget_create(
        workspace=workspace, scope="overall", period="monthly", amount=Decimal("100"), enforced=True
    )
    services.budget_create(
        workspace=workspace, scope="tag", tag="feature", tag_value="chat", amount=Decimal("3")
    )

    html = web.get(reverse("budget-list")).content.decode()
    rows = re.findall(r"<tr class=\"status-.*?</tr>", html, re.S)
    daily = next(r for r in rows if ">Day<" in r)
    weekly = next(r for r in rows if ">Week<" in r and "All spend" in r)
    monthly = next(r for r in rows if ">Month<" in r and "All spend" in r)
    # $12 of $10 today, enforced: refusing calls.
    assert "Enforced" in daily and "refusing calls" in daily and "120.0%" in daily
    assert "Sun 15 Nov" in daily
    # $12 of $10 this week, not enforced: critical, but nothing is refused.
    assert "Enforced" not in weekly and "refusing calls" not in weekly
    assert "9 Nov – 15 Nov" in weekly  # Monday to Sunday
    # $12 of $100 this month, enforced: 12 %, calls still pass.
    assert "Enforced" in monthly and "refusing calls" not in monthly and "12.0%" in monthly
    assert "1 Nov – 30 Nov" in monthly
    tag = _row(html, "Feature chat")
    assert ">Month<" in tag and "$0.00" in tag
    assert html.count('href="/budgets/') >= 8  # edit + delete per budget, for an admin

    viewer = UserFactory()
    Membership.objects.create(workspace=workspace, user=viewer, role=Role.VIEWER)
    client.force_login(viewer)
    client.post(reverse("workspace-switch"), {"workspace": workspace.pk})
    seen = client.get(reverse("budget-list")).content.decode()
    assert "refusing calls" in seen and "Enforced" in seen
    assert "Edit" not in _row(seen, "All spend") and "Add budget" not in seen
    assert "/budgets/add/" not in seen


def test_an_alerts_page_names_its_budgets_day_or_week(web, workspace, account):
    _spend(account, date(2026, 11, 15), "9")
    daily = BudgetFactory(workspace=workspace, period="daily", amount=Decimal("10"))
    weekly = BudgetFactory(workspace=workspace, period="weekly", amount=Decimal("10"))
    services.alerts_evaluate_for_workspace(workspace=workspace)
    day_alert = Alert.objects.get(budget=daily, kind=Alert.Kind.THRESHOLD)
    week_alert = Alert.objects.get(budget=weekly, kind=Alert.Kind.THRESHOLD)
    day_page = web.get(reverse("alert-detail", args=[day_alert.pk])).content.decode()
    assert "Budget day" in day_page and "Sunday 15 November 2026" in day_page
    week_page = web.get(reverse("alert-detail", args=[week_alert.pk])).content.decode()
    assert "Budget week" in week_page and "from Monday 9 November 2026" in week_page
