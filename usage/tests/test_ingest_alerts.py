"""Budgets are evaluated soon after an ingestion batch: coalesced per window, never dropped."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine
from django_q.conf import Conf

from alerts import tasks
from alerts.models import Alert, EvaluationDue
from providers.services import ingest_key_create
from providers.tests.factories import AccountFactory, provider
from usage.models import Price
from usage.services.prices import EPOCH

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _inline_tasks(monkeypatch):
    # django-q2 reads "sync" once at import; this runs queued tasks inline for the test.
    monkeypatch.setattr(Conf, "SYNC", True)


@time_machine.travel("2026-11-15 12:00:00Z", tick=False)
def test_it_raises_a_budget_alert_soon_after_an_ingestion_batch(
    client, django_capture_on_commit_callbacks
):
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

    def post(batch):
        # The evaluation is asked for once the batch has committed.
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(
                "/api/usage/events",
                json.dumps(batch),
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {raw}",
            )

    response = post(events)
    assert response.status_code == 200, response.content

    def thresholds() -> list[int]:
        return sorted(
            Alert.objects.filter(
                workspace=account.workspace, kind=Alert.Kind.THRESHOLD
            ).values_list("threshold", flat=True)
        )

    # Due at the end of the 10 s window that 12:00:00 + 3 s margin falls in: 12:00:10.
    assert list(EvaluationDue.objects.values_list("workspace_id", "due_at")) == [
        (account.workspace_id, datetime(2026, 11, 15, 12, 0, 10, tzinfo=UTC))
    ]
    # A second batch in the same window asks for nothing more: the two are evaluated together.
    with time_machine.travel("2026-11-15 12:00:05Z", tick=False):
        post([{**e, "request_id": f"s{i}"} for i, e in enumerate(events[:2])])
    assert EvaluationDue.objects.count() == 1
    assert thresholds() == []
    with time_machine.travel("2026-11-15 12:00:10Z", tick=False):
        assert tasks.evaluate_due() == 1
    # 19 × $0.05 = $0.95 = 95 %.
    assert thresholds() == [80]
    # A batch after the evaluation took its row gets a row, and an evaluation, of its own:
    # 20 × $0.05 = $1.00 = 100 %.
    with time_machine.travel("2026-11-15 12:00:12Z", tick=False):
        post([{**events[0], "request_id": "t"}])
    assert list(EvaluationDue.objects.values_list("due_at", flat=True)) == [
        datetime(2026, 11, 15, 12, 0, 20, tzinfo=UTC)
    ]
    with time_machine.travel("2026-11-15 12:00:20Z", tick=False):
        assert tasks.evaluate_due() == 1
    assert thresholds() == [80, 100]
    assert not EvaluationDue.objects.exists()
