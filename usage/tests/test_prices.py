"""The price book: effective-dated import, overrides, aliases, re-pricing.

Every expected figure is worked out by hand in the comment beside it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine
from django.core.management import CommandError, call_command

from providers.tests.factories import AccountFactory, provider
from usage.extraction import RequestUsage
from usage.models import DailyUsage, ModelAlias, Price, Source, UsageRecord
from usage.services.prices import EPOCH, PriceBook, reprice_estimated
from usage.services.requests import RequestEvent, request_events_record

pytestmark = pytest.mark.django_db

D = Decimal
PER_M = D("0.000001")
NOW = "2026-11-15 12:00:00Z"


def raw_file(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def numeric_file(tmp_path, name: str, entries: dict[str, tuple[str, str]]) -> str:
    # Numbers (not strings) in the JSON text, as LiteLLM ships them.
    parts = []
    for model, (inp, out) in entries.items():
        parts.append(
            f'"{model}": {{"litellm_provider": "openai", '
            f'"input_cost_per_token": {D(inp) * PER_M}, "output_cost_per_token": {D(out) * PER_M}}}'
        )
    return raw_file(tmp_path, name, "{" + ", ".join(parts) + "}")


def record(account, request_id: str, model: str, at: str, inp: int, out: int) -> str:
    usage = RequestUsage(model=model, input_tokens=inp, output_tokens=out, found=True)
    event = RequestEvent(
        request_id=request_id,
        usage=usage,
        occurred_at=datetime.fromisoformat(at.replace("Z", "+00:00")),
    )
    return request_events_record(account=account, events=[event])[request_id]


def test_it_adds_nothing_when_the_same_file_is_imported_twice(tmp_path):
    path = numeric_file(tmp_path, "v1.json", {"gpt-x": ("1", "2"), "gpt-y": ("0.15", "0.6")})
    with time_machine.travel(NOW, tick=False):
        call_command("import_prices", path)
        rows = list(Price.objects.values_list("id", "model", "valid_from", "valid_to"))
        call_command("import_prices", path)
    assert len(rows) == 2
    assert list(Price.objects.values_list("id", "model", "valid_from", "valid_to")) == rows
    assert all(valid_from == EPOCH and valid_to is None for _, _, valid_from, valid_to in rows)


def test_it_imports_the_shipped_snapshot_with_gpt_4o_mini_at_15_cents_per_million():
    call_command("import_prices")
    row = Price.objects.get(provider__slug="openai", model="gpt-4o-mini", valid_to__isnull=True)
    # $0.15 per 1M input tokens = 0.15 / 1,000,000 = $0.00000015 per token.
    assert row.input_per_token == D("0.00000015")
    # $0.60 per 1M output tokens = $0.0000006 per token.
    assert row.output_per_token == D("0.0000006")
    count = Price.objects.count()
    call_command("import_prices")  # the same file again: every price compares equal
    assert Price.objects.count() == count


def test_if_empty_imports_only_for_providers_without_imported_prices(tmp_path):
    # An existing install (OpenAI already loaded) gets the prices of a provider registered
    # since, while OpenAI's loaded rows, even if they differ from the file, are left alone.
    path = raw_file(
        tmp_path,
        "both.json",
        '{"gpt-x": {"litellm_provider": "openai", "input_cost_per_token": 3e-06},'
        ' "claude-x": {"litellm_provider": "anthropic", "input_cost_per_token": 2e-06}}',
    )
    call_command("import_prices", numeric_file(tmp_path, "v1.json", {"gpt-x": ("1", "2")}))

    call_command("import_prices", path, "--if-empty")

    gpt = Price.objects.get(provider__slug="openai", model="gpt-x")
    assert gpt.input_per_token == D("0.000001")  # still the first file's $1/M
    claude = Price.objects.get(provider__slug="anthropic", model="claude-x")
    assert claude.input_per_token == D("0.000002")
    call_command("import_prices", path, "--if-empty")  # nothing new: both providers loaded
    assert Price.objects.count() == 2


def test_it_closes_the_old_row_and_keeps_the_old_price_for_earlier_requests(tmp_path):
    account = AccountFactory(provider=provider("openai"))
    with time_machine.travel("2026-11-01 00:00:00Z", tick=False):
        call_command("import_prices", numeric_file(tmp_path, "v1.json", {"gpt-x": ("1", "2")}))
    with time_machine.travel(NOW, tick=False):
        call_command("import_prices", numeric_file(tmp_path, "v2.json", {"gpt-x": ("3", "2")}))
        # One batch spanning the change: each request is priced at its own time.
        events = [
            RequestEvent(
                request_id=rid,
                usage=RequestUsage(model="gpt-x", input_tokens=1000, found=True),
                occurred_at=datetime.fromisoformat(at),
            )
            for rid, at in [
                ("before", "2026-11-15T11:59:59+00:00"),
                ("after", "2026-11-15T12:00:00+00:00"),
            ]
        ]
        request_events_record(account=account, events=events)
    old, new = Price.objects.filter(model="gpt-x").order_by("valid_from")
    change = datetime(2026, 11, 15, 12, tzinfo=UTC)
    assert (old.valid_from, old.valid_to, old.input_per_token) == (EPOCH, change, PER_M)
    assert (new.valid_from, new.valid_to, new.input_per_token) == (change, None, 3 * PER_M)
    costs = dict(UsageRecord.objects.values_list("request_id", "cost"))
    assert costs["before"] == D("0.001")  # 1,000 × $1/M = $0.001 (the old price)
    assert costs["after"] == D("0.003")  # 1,000 × $3/M = $0.003 (the new price)
    # Re-pricing after the change leaves both as they are: history is not rewritten.
    assert reprice_estimated(since=date(2026, 11, 1)) == 0


def test_it_turns_unpriced_requests_into_priced_ones_when_repriced(tmp_path):
    account = AccountFactory(provider=provider("openai"))
    openai = provider("openai")
    Price.objects.create(
        provider=openai,
        model="gpt-4o",
        valid_from=EPOCH,
        input_per_token=D("2.50") * PER_M,
        output_per_token=D("10") * PER_M,
    )
    with time_machine.travel(NOW, tick=False):
        record(account, "a", "mystery-1", "2026-11-14T10:00:00Z", 1000, 500)
        record(account, "b", "mystery-1", "2026-11-14T11:00:00Z", 3000, 0)
        record(account, "c", "gpt-4o", "2026-11-14T12:00:00Z", 1000, 100)
    mystery = DailyUsage.objects.get(account=account, model="mystery-1")
    assert mystery.cost == 0  # nothing priced yet: sums priced records only, never a fake $0
    assert mystery.unpriced_count == 2
    assert mystery.unpriced_tokens == 4500  # (1,000 + 500) + (3,000 + 0)
    assert UsageRecord.objects.get(request_id="a").cost is None

    Price.objects.create(
        provider=openai,
        model="mystery-1",
        valid_from=EPOCH,
        input_per_token=1 * PER_M,
        output_per_token=2 * PER_M,
    )
    out = _call("reprice", "--since", "2026-11-14")
    assert "Re-priced 2" in out  # a and b; c's price did not change
    costs = dict(UsageRecord.objects.values_list("request_id", "cost"))
    assert costs["a"] == D("0.002")  # 1,000 × $1/M + 500 × $2/M = 0.001 + 0.001
    assert costs["b"] == D("0.003")  # 3,000 × $1/M
    assert costs["c"] == D("0.0035")  # 1,000 × $2.50/M + 100 × $10/M = 0.0025 + 0.001
    # The roll-up rows are rebuilt from the records, so fetch them again.
    mystery = DailyUsage.objects.get(account=account, model="mystery-1")
    assert (mystery.cost, mystery.unpriced_count, mystery.unpriced_tokens) == (D("0.005"), 0, 0)
    assert mystery.record_count == 2
    assert mystery.input_tokens == 4000 and mystery.output_tokens == 500
    gpt = DailyUsage.objects.get(account=account, model="gpt-4o")
    assert gpt.cost == D("0.0035")  # unchanged by the rebuild
    assert _call("reprice", "--since", "2026-11-14").startswith("Re-priced 0")  # run twice


def test_it_never_reprices_official_or_manual_costs():
    from usage.services.records import manual_entry_create

    account = AccountFactory(provider=provider("openai"))
    with time_machine.travel(NOW, tick=False):
        manual = manual_entry_create(
            account=account, day=date(2026, 11, 14), description="invoice", cost=D("12.5")
        )
    Price.objects.create(
        provider=provider("openai"), model="", valid_from=EPOCH, input_per_token=PER_M
    )
    assert reprice_estimated(since=date(2026, 11, 1)) == 0
    manual.refresh_from_db()
    assert manual.cost == D("12.5") and manual.source == Source.MANUAL


def test_it_prefers_an_admin_price_to_an_imported_one(tmp_path):
    account = AccountFactory(provider=provider("openai"))
    call_command("import_prices", numeric_file(tmp_path, "v1.json", {"gpt-4o": ("2.5", "10")}))
    Price.objects.create(
        provider=provider("openai"),
        model="gpt-4o",
        valid_from=EPOCH,
        origin=Price.Origin.ADMIN,
        input_per_token=1 * PER_M,
        output_per_token=1 * PER_M,
    )
    # A later import must not touch the admin row nor win over it.
    call_command("import_prices", numeric_file(tmp_path, "v2.json", {"gpt-4o": ("2.5", "10")}))
    with time_machine.travel(NOW, tick=False):
        record(account, "r", "gpt-4o-2024-08-06", "2026-11-15T10:00:00Z", 1000, 1000)
    # Admin: 1,000 × $1/M + 1,000 × $1/M = $0.002 (imported would be 0.0025 + 0.01).
    assert UsageRecord.objects.get(request_id="r").cost == D("0.002")
    assert Price.objects.filter(origin=Price.Origin.ADMIN).count() == 1


def test_it_finds_prices_by_alias_snapshot_and_provider_prefix():
    openai = provider("openai")
    Price.objects.create(
        provider=openai, model="gpt-4o", valid_from=EPOCH, input_per_token=D("2.5") * PER_M
    )
    ModelAlias.objects.create(provider=openai, alias="prod-chat", model="gpt-4o")
    book, at = PriceBook(), datetime(2026, 11, 15, tzinfo=UTC)
    for name in ["gpt-4o", "gpt-4o-2024-08-06", "openai/gpt-4o", "prod-chat"]:
        assert book.rule_for(provider=openai, model=name, at=at).input_per_token == D(
            "0.0000025"
        ), name
    assert book.rule_for(provider=openai, model="gpt-5-unknown", at=at) is None
    # Before a row's valid_from there is no price.
    assert (
        book.rule_for(provider=openai, model="gpt-4o", at=datetime(1999, 1, 1, tzinfo=UTC)) is None
    )


def test_it_prices_an_aliased_request_through_the_write_path():
    account = AccountFactory(provider=provider("openai"))
    openai = provider("openai")
    Price.objects.create(
        provider=openai,
        model="gpt-4o",
        valid_from=EPOCH,
        input_per_token=D("2.5") * PER_M,
        output_per_token=D("10") * PER_M,
    )
    ModelAlias.objects.create(provider=openai, alias="prod-chat", model="gpt-4o")
    with time_machine.travel(NOW, tick=False):
        record(account, "x", "prod-chat", "2026-11-15T10:00:00Z", 2000, 100)
    # 2,000 × $2.50/M + 100 × $10/M = 0.005 + 0.001 = $0.006
    assert UsageRecord.objects.get(request_id="x").cost == D("0.006")


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[1, 2, 3]",
        "{}",  # valid JSON, but no price for any provider we know
        '{"gpt-ok": {"litellm_provider": "openai", "input_cost_per_token": 1e-06},'
        ' "gpt-bad": {"litellm_provider": "openai", "input_cost_per_token": "abc"}}',
        '{"gpt-ok": {"litellm_provider": "openai", "input_cost_per_token": 1e-06},'
        ' "gpt-neg": {"litellm_provider": "openai", "input_cost_per_token": -1e-06}}',
        '{"gpt-ok": {"litellm_provider": "openai", "input_cost_per_token": 1e-06},'
        ' "gpt-list": {"litellm_provider": "openai", "input_cost_per_token": [1]}}',
        '{"gpt-huge": {"litellm_provider": "openai", "input_cost_per_token": 1e30}}',
    ],
)
def test_it_refuses_a_bad_price_file_and_writes_nothing(tmp_path, text):
    Price.objects.create(
        provider=provider("openai"),
        model="gpt-ok",
        valid_from=EPOCH,
        origin=Price.Origin.IMPORTED,
        input_per_token=5 * PER_M,
    )
    before = list(Price.objects.values_list("id", "input_per_token", "valid_to"))
    with pytest.raises(CommandError):
        call_command("import_prices", raw_file(tmp_path, "bad.json", text))
    assert list(Price.objects.values_list("id", "input_per_token", "valid_to")) == before


def test_it_refuses_a_missing_file_and_a_bad_reprice_date(tmp_path):
    with pytest.raises(CommandError):
        call_command("import_prices", str(tmp_path / "nope.json"))
    with pytest.raises(CommandError):
        call_command("reprice", "--since", "last week")
    assert Price.objects.count() == 0


def _call(*args) -> str:
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_it_marks_a_price_saved_in_the_admin_as_an_override_that_wins(client, tmp_path):
    from accounts.tests.factories import UserFactory

    call_command("import_prices", numeric_file(tmp_path, "v1.json", {"gpt-4o": ("2.5", "10")}))
    admin_user = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(admin_user)
    response = client.post(
        "/admin/usage/price/add/",
        {
            "provider": provider("openai").pk,
            "model": "gpt-4o",
            "valid_from_0": "2000-01-01",
            "valid_from_1": "00:00:00",
            "input_per_token": "0.000001",
            "output_per_token": "0.000001",
            "origin": "imported",  # read-only in the form: ignored
        },
        follow=True,
    )
    assert response.status_code == 200
    assert b"reprice --since 2000-01-01" in response.content
    row = Price.objects.get(origin=Price.Origin.ADMIN)
    assert row.model == "gpt-4o" and row.input_per_token == PER_M
    at = datetime(2026, 11, 15, tzinfo=UTC)
    rule = PriceBook().rule_for(provider=provider("openai"), model="gpt-4o", at=at)
    assert rule.input_per_token == PER_M  # $1/M from the admin, not the imported $2.50/M
