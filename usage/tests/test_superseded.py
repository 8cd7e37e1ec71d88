"""Official supersedes estimated: for an account and UTC day with official figures, the day's
estimates stay visible but leave totals — whichever arrives first."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from providers.adapters.base import UsageLine
from providers.tests.factories import AccountFactory, provider
from usage.extraction import RequestUsage
from usage.models import DailyUsage, Source
from usage.selectors import spend_total
from usage.services.records import usage_lines_replace_window
from usage.services.requests import RequestEvent, request_events_record

pytestmark = pytest.mark.django_db

NOV_3, NOV_4, NOV_5 = date(2026, 11, 3), date(2026, 11, 4), date(2026, 11, 5)


def estimate(account, request_id: str, day: date, cost: str) -> None:
    # Perplexity's own usage.cost prices the request without a price book.
    usage = RequestUsage(model="sonar", provider_cost=Decimal(cost), found=True)
    at = datetime(day.year, day.month, day.day, 9, tzinfo=UTC)
    request_events_record(
        account=account, events=[RequestEvent(request_id=request_id, usage=usage, occurred_at=at)]
    )


def official(account, day: date, cost: str | None) -> None:
    lines = (
        []
        if cost is None
        else [UsageLine(day=day, model="sonar", line_item="x", cost=Decimal(cost))]
    )
    usage_lines_replace_window(
        account=account, start=day, end=day.replace(day=day.day + 1), lines=lines
    )


def test_it_leaves_estimates_out_of_totals_whichever_arrives_first():
    account = AccountFactory(provider=provider("perplexity"))
    user = account.workspace.personal_for
    estimate(account, "a", NOV_3, "7")  # estimate first, official later
    official(account, NOV_3, "6")
    official(account, NOV_4, "5")  # official first, estimate later
    estimate(account, "b", NOV_4, "9")
    estimate(account, "c", NOV_5, "2")  # no official figures that day
    # Nov 3: official $6 (not + $7); Nov 4: official $5 (not + $9); Nov 5: estimated $2.
    assert spend_total(
        workspace=user.personal_workspace, start=NOV_3, end=date(2026, 11, 6)
    ) == Decimal("13")
    flagged = set(
        DailyUsage.objects.filter(source=Source.ESTIMATED, superseded=True).values_list(
            "day", flat=True
        )
    )
    assert flagged == {NOV_3, NOV_4}


def test_it_counts_estimates_again_when_the_official_figures_go_away():
    account = AccountFactory(provider=provider("perplexity"))
    estimate(account, "a", NOV_3, "7")
    official(account, NOV_3, "6")
    official(account, NOV_3, None)  # the provider no longer reports that day
    # Only the $7 estimate is left for Nov 3.
    assert spend_total(workspace=account.workspace, start=NOV_3, end=NOV_4) == Decimal("7")
