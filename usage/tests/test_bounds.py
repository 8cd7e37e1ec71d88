"""Input bounds (usage/bounds.py): every write path refuses a figure outside them with the field
named, the database refuses it too, and every read survives any value already stored."""

from __future__ import annotations

import importlib
import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine
from django.apps import apps
from django.db import IntegrityError, connection, transaction

from accounts.tests.factories import UserFactory
from alerts.models import Budget
from providers.adapters.base import UsageLine
from providers.http import ProviderError
from providers.models import ProviderAccount
from providers.tests.factories import AccountFactory, provider
from usage import bounds
from usage.models import DailyUsage, Source, UsageRecord
from usage.services.reconciliation import invoice_set, true_up_book
from usage.services.records import manual_entry_create, usage_lines_replace_window
from usage.services.rollup import rollup_rebuild

pytestmark = pytest.mark.django_db

NOW = "2026-11-15 12:00:00Z"
# What the issue typed: 16 digits before the point, 12 after. Fits DECIMAL(28, 12) exactly; on
# SQLite it is stored as the double 1e16, which no longer fits on the way back.
HUGE_COST = "9999999999999999.999999999999"
HUGE_COUNT = "99999999999999999999999"
# The largest cost the bounds allow, with every place used.
TOP_COST = "999999999999.999999999999"


@pytest.fixture
def owner():
    return UserFactory(is_staff=True, is_superuser=True)


@pytest.fixture
def account(owner):
    return AccountFactory(workspace=owner.personal_workspace, provider=provider("copilot"))


def form_data(account, **change):
    return {
        "account": account.pk,
        "date": "2026-11-10",
        "description": "Copilot Business",
        "cost": "228.00",
        "input_tokens": "0",
        "output_tokens": "0",
        "request_count": "0",
        "seats": "12",
        **change,
    }


# --- bullet 1: the reported failures, refused at the door --------------------------------------


@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cost", HUGE_COST),
        ("cost", "1000000000000.01"),
        ("input_tokens", HUGE_COUNT),
        ("output_tokens", str(10**13 + 1)),
        ("request_count", str(2**31)),
        ("seats", "10000000.0001"),
    ],
)
def test_it_keeps_the_add_entry_form_with_the_field_named(client, owner, account, field, value):
    client.force_login(owner)
    response = client.post("/usage/new/", form_data(account, **{field: value}))

    assert response.status_code == 200  # the form again, not a 500
    form = response.context["form"]
    assert list(form.errors) == [field]
    assert form.data["description"] == "Copilot Business"  # what was typed is kept
    assert not UsageRecord.objects.exists()


@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cost", HUGE_COST),
        ("input_tokens", int(HUGE_COUNT)),
        ("output_tokens", 10**13 + 1),
        ("request_count", 10**9 + 1),
        ("images", 10**9 + 1),
        ("search_queries", 10**9 + 1),
        ("seats", "10000001"),
        ("credits", "10000000001"),
        ("audio_seconds", "10000000000.001"),
    ],
)
def test_it_answers_400_naming_the_field_on_the_api(api_client, owner, account, field, value):
    api_client.force_authenticate(owner)
    body = {**form_data(account), field: value}
    response = api_client.post("/api/usage/records", body, format="json")

    assert response.status_code == 400, response.content
    assert list(response.json()) == [field]
    assert not UsageRecord.objects.exists()


@time_machine.travel(NOW, tick=False)
def test_it_accepts_the_bounds_themselves(api_client, owner, account):
    api_client.force_authenticate(owner)
    body = {
        **form_data(account),
        "cost": TOP_COST,
        "input_tokens": 10**13,
        "request_count": 10**9,
        "seats": "10000000",
    }
    response = api_client.post("/api/usage/records", body, format="json")
    assert response.status_code == 201, response.content
    assert UsageRecord.objects.get().input_tokens == 10**13


@pytest.mark.parametrize(
    ("path", "field", "value"),
    [
        ("/api/budgets", "amount", "1000000000000.01"),
        ("/api/budgets", "amount", "0"),
        ("/api/accounts", "monthly_budget", "1000000000000.01"),
    ],
)
def test_it_bounds_budgets_on_the_api(api_client, owner, path, field, value):
    api_client.force_authenticate(owner)
    body = {"scope": "overall", "amount": "10", "provider": "openai", "name": "x", field: value}
    response = api_client.post(path, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json() or field in json.dumps(response.json())


def test_it_bounds_the_budget_form(client, owner):
    client.force_login(owner)
    response = client.post(
        "/budgets/add/",
        {"scope": "overall", "amount": "1000000000000.01", "thresholds": "80, 100"},
    )
    assert response.status_code in (200, 400)
    assert "amount" in response.context["form"].errors
    assert not Budget.objects.exists()


def test_it_bounds_the_account_monthly_budget_form(client, owner, account):
    client.force_login(owner)
    response = client.post(
        f"/accounts/{account.pk}/",
        {"provider": account.provider.pk, "name": account.name, "monthly_budget": "1e13"},
    )
    assert response.status_code in (200, 400)
    assert "monthly_budget" in response.context["form"].errors
    account.refresh_from_db()
    assert account.monthly_budget is None


def test_it_fails_a_sync_window_with_a_line_outside_the_bounds_writing_nothing(account):
    good = UsageLine(day=date(2026, 11, 1), model="gpt-4o", line_item="chat", cost=Decimal("1"))
    bad = UsageLine(day=date(2026, 11, 2), model="gpt-4o", line_item="chat", input_tokens=10**14)
    with pytest.raises(ProviderError, match="malformed response.*input_tokens"):
        usage_lines_replace_window(
            account=account, start=date(2026, 11, 1), end=date(2026, 11, 3), lines=[good, bad]
        )
    assert not UsageRecord.objects.exists()
    assert not DailyUsage.objects.exists()


@time_machine.travel(NOW, tick=False)
def test_it_refuses_a_true_up_outside_the_cost_bound(account):
    manual_entry_create(
        account=account, day=date(2026, 11, 2), description="seats", cost=Decimal("5")
    )
    with pytest.raises(Exception, match="amount"):
        invoice_set(account=account, month_start=date(2026, 11, 1), amount=Decimal("1e13"))
    # An invoice inside the bound whose difference is not: -1e12 invoice, 5 counted.
    invoice_set(account=account, month_start=date(2026, 11, 1), amount=-(Decimal(10) ** 12))
    with pytest.raises(Exception, match="invoice"):
        true_up_book(account=account, month_start=date(2026, 11, 1), today=date(2026, 11, 15))
    assert UsageRecord.objects.count() == 1


# --- the database refuses what the code would --------------------------------------------------


def _insert_record(account, **values) -> None:
    columns = {
        "account_id": account.pk,
        "provider_id": account.provider_id,
        "natural_key": f"manual:raw-{len(values)}-{sorted(values)}",
        "model": "",
        "line_item": "poison",
        "description": "poison",
        "request_id": "",
        "bucket_start": "2026-11-10 00:00:00",
        "granularity": "day",
        "input_tokens": 0,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "cache_write_1h_tokens": 0,
        "output_tokens": 0,
        "reasoning_tokens": 0,
        "request_count": 0,
        "seats": 0,
        "search_queries": 0,
        "images": 0,
        "audio_seconds": 0,
        "credits": 0,
        "cost": None,
        "currency": "USD",
        "source": "manual",
        "status": "ok",
        "tags": "{}",
        "raw": "{}",
        "created_at": "2026-11-10 00:00:00",
        "updated_at": "2026-11-10 00:00:00",
        **values,
    }
    names = ", ".join(columns)
    marks = ", ".join(["%s"] * len(columns))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO usage_usagerecord ({names}) VALUES ({marks})", list(columns.values())
        )


@pytest.mark.parametrize(
    "values",
    [
        {"cost": "1000000000000.5"},
        {"cost": "-1000000000000.5"},
        {"input_tokens": 10**13 + 1},
        {"request_count": -1},
        {"seats": "10000001"},
    ],
)
def test_the_database_refuses_a_figure_outside_the_bounds(account, values):
    with pytest.raises(IntegrityError), transaction.atomic():
        _insert_record(account, **values)


def test_the_database_refuses_budgets_outside_the_bounds(owner, account):
    with pytest.raises(IntegrityError), transaction.atomic():
        Budget.objects.create(
            workspace=owner.personal_workspace, amount=Decimal("1000000000000.01")
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        ProviderAccount.objects.filter(pk=account.pk).update(monthly_budget=Decimal("-1"))


# --- bullet 3: reads survive any value stored ---------------------------------------------------


class _ChecksOff:
    """Store a row the CHECK would refuse, as one written before the constraint existed."""

    def __init__(self, table: str = "usage_usagerecord", constraint: str = "usage_record_bounds"):
        self.table, self.constraint = table, constraint

    def __enter__(self):
        with connection.cursor() as cursor:
            if connection.vendor == "sqlite":
                cursor.execute("PRAGMA ignore_check_constraints = ON")
            else:  # inside the test's transaction: rolled back with it
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no pending FK checks
                cursor.execute(f"ALTER TABLE {self.table} DROP CONSTRAINT {self.constraint}")
                cursor.execute("SET CONSTRAINTS ALL DEFERRED")

    def __exit__(self, *exc):
        if connection.vendor == "sqlite":
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA ignore_check_constraints = OFF")


# SQLite keeps any REAL; PostgreSQL's NUMERIC(28, 12) holds at most 16 digits before the point.
def _poison_cost() -> str:
    return "1e20" if connection.vendor == "sqlite" else HUGE_COST


READ_PAGES = [
    "/",
    "/usage/history/",
    "/usage/history/?source=manual",
    "/api/usage/history",
    "/api/usage/history?source=manual",
    "/api/usage",
    "/api/usage/by-service",
    "/api/usage/daily",
    "/admin/usage/usagerecord/",
    "/admin/usage/dailyusage/",
]


def _read_everything(client, owner, record_id: int) -> dict[str, int]:
    client.force_login(owner)
    answers = {url: client.get(url).status_code for url in READ_PAGES}
    answers["change"] = client.get(f"/admin/usage/usagerecord/{record_id}/change/").status_code
    return answers


@time_machine.travel(NOW, tick=False)
def test_reads_survive_the_largest_cost_the_bounds_allow(client, owner, account):
    record = manual_entry_create(
        account=account, day=date(2026, 11, 10), description="top", cost=Decimal(TOP_COST)
    )
    manual_entry_create(
        account=account, day=date(2026, 11, 10), description="top", cost=Decimal(TOP_COST)
    )
    answers = _read_everything(client, owner, record.pk)
    assert set(answers.values()) == {200}, answers
    export = client.get("/api/export?start=2026-11-01&end=2026-11-30&format=json")
    rows = json.loads(b"".join(export.streaming_content))
    assert len(rows) == 2
    # SQLite keeps 15 significant digits: 999999999999.999999999999 comes back as 1e12.
    assert Decimal(rows[0]["cost"]) in (Decimal(TOP_COST), Decimal(10) ** 12)


@time_machine.travel(NOW, tick=False)
def test_reads_survive_a_poisoned_row_stored_before_the_bounds(client, owner, account):
    # Another day: on PostgreSQL the poison alone fills its roll-up row's column.
    manual_entry_create(
        account=account, day=date(2026, 11, 11), description="fine", cost=Decimal("2")
    )
    with _ChecksOff():
        _insert_record(account, cost=_poison_cost(), input_tokens=10**18)
    rollup_rebuild(account_id=account.pk, days=[date(2026, 11, 10)], source=Source.MANUAL)
    poisoned = UsageRecord.objects.get(description="poison")

    answers = _read_everything(client, owner, poisoned.pk)
    assert set(answers.values()) == {200}, answers
    for fmt in ("csv", "json"):
        export = client.get(f"/api/export?start=2026-11-01&end=2026-11-30&format={fmt}")
        body = b"".join(export.streaming_content).decode()
        assert "poison" in body and "fine" in body  # every row, to the end


@time_machine.travel(NOW, tick=False)
def test_reads_survive_a_roll_up_past_its_column(client, owner, account):
    # The roll-up has no bound of its own (it is a sum); one stored past its column's digits
    # (SQLite keeps any REAL) must not take pages down.
    record = manual_entry_create(
        account=account, day=date(2026, 11, 10), description="fine", cost=Decimal("2")
    )
    DailyUsage.objects.filter(account=account).update(cost=Decimal(2))
    with connection.cursor() as cursor:
        value = "1e20" if connection.vendor == "sqlite" else HUGE_COST
        cursor.execute("UPDATE usage_dailyusage SET cost = %s", [value])
    answers = _read_everything(client, owner, record.pk)
    assert set(answers.values()) == {200}, answers


def test_the_migration_clears_rows_stored_outside_the_bounds(account):
    # The migration's own function, on rows that got in before the CHECK existed.
    migration = importlib.import_module("usage.migrations.0005_bounds_checks")
    with _ChecksOff():  # as before the migration: no CHECK yet
        _insert_record(account, cost=_poison_cost(), input_tokens=10**18, seats="5")
        migration.clear_out_of_bounds(apps, None)
        migration.clear_out_of_bounds(apps, None)  # twice: nothing more to do

    record = UsageRecord.objects.get()
    assert record.cost is None  # unpriced: the figure was not believable
    assert record.input_tokens == 0
    assert record.seats == 5  # in bounds: untouched
    trace = record.raw["out_of_bounds"]
    assert set(trace) == {"cost", "input_tokens"}
    assert trace["input_tokens"] == str(10**18)
    assert Decimal(trace["cost"]) > Decimal("9999999999999999")
    (daily,) = DailyUsage.objects.filter(account=account)
    assert (daily.cost, daily.unpriced_count) == (0, 1)  # rebuilt from the cleared record
    # Now every row satisfies the constraint.
    assert not UsageRecord.objects.exclude(
        bounds.check_constraint("usage_record", bounds.RECORD, nullable={"cost"}).condition
    ).exists()


def test_it_states_each_bound_once():
    # The model's CHECK is generated from the same definitions the forms use.
    constraint = next(c for c in UsageRecord._meta.constraints if c.name == "usage_record_bounds")
    assert (
        constraint.condition
        == bounds.check_constraint("usage_record", bounds.RECORD, nullable={"cost"}).condition
    )
    assert bounds.COST.problem(Decimal(TOP_COST)) is None
    assert bounds.COST.problem(Decimal(HUGE_COST))
    assert bounds.TOKENS.problem(1.5) == "must be a whole number"
    assert bounds.TOKENS.problem(True) == "must be a number"
    assert bounds.COST.problem(Decimal("NaN")) == "must be a finite number"
    assert datetime.now(UTC)  # keep the import honest


# --- the other write paths: ingestion, official sync, the admin --------------------------------


@time_machine.travel(NOW, tick=False)
def test_ingestion_rejects_only_the_item_outside_the_bounds(client):
    from providers.services import ingest_key_create

    account = AccountFactory(provider=provider("openai"))
    raw, _ = ingest_key_create(account=account, name="tests")

    def item(request_id: str, prompt: int) -> dict:
        usage = {"prompt_tokens": prompt, "completion_tokens": 1}
        return {"request_id": request_id, "model": "gpt-4o", "usage": usage}

    response = client.post(
        "/api/usage/events",
        data=json.dumps([item("good", 10), item("huge", 10**13 + 1), item("alsogood", 10**13)]),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    assert response.status_code == 200
    results = {r["request_id"]: r for r in response.json()["results"]}
    assert results["huge"]["status"] == "rejected"
    assert results["huge"]["reason"].startswith("usage.input_tokens: must be from 0 to")
    assert (results["good"]["status"], results["alsogood"]["status"]) == ("created", "created")
    assert set(UsageRecord.objects.values_list("request_id", flat=True)) == {"good", "alsogood"}


@time_machine.travel("2026-08-03 12:00:00Z", tick=False)
def test_a_sync_serving_a_count_outside_the_bounds_fails_cleanly(settings, httpserver):
    from usage.services.sync import usage_sync
    from usage.tests.test_sync import (
        OPENAI_COMPLETIONS,
        OPENAI_COSTS,
        OPENAI_EMBEDDINGS,
        fixture,
        make_account,
        point_settings_at,
    )

    point_settings_at(settings, httpserver)
    completions = json.loads(fixture("openai", "completions.json"))
    completions["data"][0]["results"][0]["input_tokens"] = 10**16
    completions["data"][0]["results"][0]["input_uncached_tokens"] = 10**16
    httpserver.expect_request(OPENAI_COSTS).respond_with_data(
        fixture("openai", "costs_page1.json").replace('"has_more": true', '"has_more": false'),
        content_type="application/json",
    )
    httpserver.expect_request(OPENAI_COMPLETIONS).respond_with_json(completions)
    httpserver.expect_request(OPENAI_EMBEDDINGS).respond_with_data(
        fixture("openai", "embeddings.json"), content_type="application/json"
    )
    account = make_account("openai")

    for _ in range(2):  # the same answer twice: the same outcome, nothing written
        run = usage_sync(account_id=account.pk, adapter_options={"sleep": lambda s: None})
        assert run.status == "failed"
        assert "malformed response" in run.error_message
        assert "input_tokens: must be from 0 to 10,000,000,000,000 tokens" in run.error_message
        assert not UsageRecord.objects.filter(account=account).exists()
        assert not DailyUsage.objects.filter(account=account).exists()


@time_machine.travel(NOW, tick=False)
def test_the_admin_refuses_a_figure_outside_the_bounds_with_the_field_named(client, owner, account):
    client.force_login(owner)
    base = {
        "account": account.pk,
        "provider": account.provider_id,
        "natural_key": "",
        "model": "gpt-4o",
        "bucket_start_0": "2026-11-10",
        "bucket_start_1": "00:00:00",
        "granularity": "day",
        "source": "manual",
        "status": "ok",
        "currency": "USD",
        "tags": "{}",
        "raw": "{}",
        **{name: "0" for name in bounds.RECORD},
    }
    for field, value in [("cost", HUGE_COST), ("output_tokens", HUGE_COUNT), ("seats", "1e8")]:
        response = client.post("/admin/usage/usagerecord/add/", {**base, field: value})
        assert response.status_code == 200, field  # the form again, not a 500
        assert field in response.context["adminform"].form.errors, field
    assert not UsageRecord.objects.exists()
    response = client.post("/admin/usage/usagerecord/add/", {**base, "cost": TOP_COST})
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert UsageRecord.objects.count() == 1


@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize(
    ("usage", "field"),
    [
        ({"input_tokens": 1, "audio_seconds": "1e30"}, "usage.audio_seconds"),
        ({"input_tokens": 1, "total_duration_ns": 10**19}, "usage.total_duration_ns"),
        ({"input_tokens": 1, "request_count": 1, "provider_cost": "1e13"}, "usage.provider_cost"),
        ({"input_tokens": 1, "request_count": 10**9 + 1}, "usage.request_count"),
        ({"prompt_tokens": 1, "completion_tokens": int(HUGE_COUNT)}, "usage.output_tokens"),
    ],
)
def test_ingestion_names_every_field_outside_the_bounds(client, usage, field):
    from providers.services import ingest_key_create

    account = AccountFactory(provider=provider("openai"))
    raw, _ = ingest_key_create(account=account, name="tests")
    body = [{"request_id": "r", "model": "gpt-4o", "usage": usage}]
    response = client.post(
        "/api/usage/events",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    assert response.status_code == 200
    (result,) = response.json()["results"]
    assert result["status"] == "rejected"
    assert result["reason"].startswith(f"{field}: must be from 0 to"), result
    assert not UsageRecord.objects.exists()


def test_the_migrations_set_budgets_outside_the_bounds_right(owner, account):
    budget = Budget.objects.create(workspace=owner.personal_workspace, amount=Decimal("10"))
    with _ChecksOff("alerts_budget", "budget_bounds"):
        Budget.objects.filter(pk=budget.pk).update(amount=Decimal("1e15"))
        importlib.import_module("alerts.migrations.0005_bounds_checks").clamp_out_of_bounds(
            apps, None
        )
    with _ChecksOff("providers_provideraccount", "account_bounds"):
        ProviderAccount.objects.filter(pk=account.pk).update(monthly_budget=Decimal("-5"))
        importlib.import_module("providers.migrations.0006_bounds_checks").clear_out_of_bounds(
            apps, None
        )
    budget.refresh_from_db()
    account.refresh_from_db()
    assert budget.amount == Decimal("1000000000000")  # the nearest bound
    assert account.monthly_budget is None  # no budget rather than a negative one
