"""Budgets are evaluated after an ingestion batch (debounced per account)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import time_machine
from django.core.cache import cache
from django_q.conf import Conf

from alerts.models import Alert
from providers.services import ingest_key_create
from providers.tests.factories import AccountFactory, provider
from usage.models import Price
from usage.services.prices import EPOCH

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _inline_tasks(monkeypatch):
    # django-q2 reads "sync" once at import; this runs queued tasks inline for the test.
    monkeypatch.setattr(Conf, "SYNC", True)
    cache.clear()


@time_machine.travel("2026-11-15 12:00:00Z", tick=False)
def test_it_raises_a_budget_alert_after_an_ingestion_batch(client):
    Price.objects.create(
        provider=provider("groq"),
        model="llama-3.1-8b-instant",
        valid_from=EPOCH,
        input_per_token=Decimal("0.00000005"),
        output_per_token=Decimal("0.00000008"),
    )
    account = AccountFactory(provider=provider("groq"), monthly_budget=Decimal("1.00"))
    raw, _ = ingest_key_create(account=account)
    events = [
        {
            "request_id": f"r{i}",
            "model": "llama-3.1-8b-instant",
            "usage": {"prompt_tokens": 1_000_000, "completion_tokens": 0},
        }
        for i in range(17)
    ]
    # 17 × 1,000,000 input tokens × $0.05/M = $0.85 = 85 % of the $1.00 budget.
    response = client.post(
        "/api/usage/events",
        json.dumps(events),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    assert response.status_code == 200, response.content

    def thresholds() -> list[int]:
        return sorted(
            Alert.objects.filter(owner=account.owner, kind=Alert.Kind.THRESHOLD).values_list(
                "threshold", flat=True
            )
        )

    assert thresholds() == [80]
    # A second batch inside the debounce minute does not evaluate again…
    more = [{**e, "request_id": f"s{i}"} for i, e in enumerate(events[:3])]
    client.post(
        "/api/usage/events",
        json.dumps(more),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    assert thresholds() == [80]
    # …the next one after it does: 20 × $0.05 = $1.00 = 100 %.
    with time_machine.travel("2026-11-15 12:01:01Z", tick=False):
        cache.clear()  # locmem expiry follows the real clock, not time-machine's
        client.post(
            "/api/usage/events",
            json.dumps([{**events[0], "request_id": "t"}]),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {raw}",
        )
    assert thresholds() == [80, 100]
