"""A price rule may depend on one of the account's settings (ProviderAdapter.costing receives the
account's stored settings as ``account_config``), when a request is recorded and when it is
re-priced. Groq's rule is patched to stand in for such a provider."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from providers.adapters.groq import GroqAdapter
from providers.tests.factories import AccountFactory, provider
from usage.extraction import RequestUsage
from usage.models import UsageRecord
from usage.pricing import Costing, CostLine, Rule
from usage.services.prices import PriceBook, reprice_estimated
from usage.services.requests import RequestEvent, request_events_record

pytestmark = pytest.mark.django_db

AT = datetime(2026, 8, 21, 12, 0, tzinfo=UTC)


@pytest.fixture
def seen(monkeypatch) -> list:
    """Patch Groq's rule: $1 a request when the account's "flat" setting is on, else unpriced."""
    calls = []

    def costing(cls, usage, price, *, compute_rate_per_hour=None, account_config=None):
        calls.append(account_config)
        if (account_config or {}).get("flat"):
            return Costing(Rule.PER_REQUEST, (CostLine("request_fee", 1, Decimal(1), Decimal(1)),))
        return Costing(Rule.NO_PRICE)

    monkeypatch.setattr(GroqAdapter, "costing", classmethod(costing))
    return calls


def record(account) -> UsageRecord:
    usage = RequestUsage(model="llama-3.1-8b-instant", input_tokens=10, found=True)
    event = RequestEvent(request_id=f"r{account.pk}", usage=usage, occurred_at=AT)
    request_events_record(account=account, events=[event], book=PriceBook())
    return UsageRecord.objects.get(account=account)


def test_the_rule_reads_the_accounts_settings_when_a_request_is_recorded(seen):
    flat = AccountFactory(provider=provider("groq"), config={"flat": True})
    plain = AccountFactory(provider=provider("groq"))

    assert record(flat).cost == Decimal(1)  # the patched rule: $1 a request
    assert record(plain).cost is None
    assert seen == [{"flat": True}, {}]


def test_the_rule_reads_the_accounts_settings_when_requests_are_repriced(seen):
    account = AccountFactory(provider=provider("groq"))
    assert record(account).cost is None
    account.config = {"flat": True}
    account.save()

    assert reprice_estimated(since=date(2026, 8, 1)) == 1

    assert UsageRecord.objects.get(account=account).cost == Decimal(1)
    assert seen[-1] == {"flat": True}
