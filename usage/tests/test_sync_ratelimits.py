"""429s from a provider's usage/cost API during a sync are counted as rate-limit hits."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine

from providers.models import RateLimitHit
from usage.models import SyncRun
from usage.tests.test_sync import (  # noqa: F401 - fixtures are used by name
    NOW,
    OPENAI_COMPLETIONS,
    OPENAI_COSTS,
    OPENAI_EMBEDDINGS,
    fixture,
    json_response,
    make_account,
    server,
    sleeps,
    sync,
)

pytestmark = pytest.mark.django_db
MINUTE = datetime(2026, 8, 3, 12, 0, tzinfo=UTC)


@time_machine.travel(NOW, tick=False)
def test_it_counts_every_429_of_a_failed_sync(server, sync):  # noqa: F811 - fixtures
    server.expect_request(OPENAI_COSTS).respond_with_json({"error": "busy"}, status=429)
    account = make_account("openai")

    run = sync(account)

    assert run.status == SyncRun.Status.FAILED
    assert len(server.log) == 4
    hit = RateLimitHit.objects.get(account=account)
    # Four tries, four 429s; a sync's API is no model's limit: model "".
    assert (hit.model, hit.source, hit.minute, hit.count) == ("", "sync", MINUTE, 4)


@time_machine.travel(NOW, tick=False)
def test_it_counts_a_429_the_retry_got_past(server, sync, settings):  # noqa: F811 - fixtures
    settings.SYNC_TIME_BUDGET_SECONDS = 600
    answers = iter(
        [
            json_response({"error": "slow down"}, 429, {"Retry-After": "1"}),
            json_response(fixture("openai", "empty.json")),
        ]
    )
    server.expect_request(OPENAI_COSTS).respond_with_handler(lambda request: next(answers))
    for path in (OPENAI_COMPLETIONS, OPENAI_EMBEDDINGS):
        server.expect_request(path).respond_with_data(
            fixture("openai", "empty.json"), content_type="application/json"
        )
    account = make_account("openai")

    run = sync(account)
    sync(account)  # a second sync, with no 429, adds nothing

    assert run.status == SyncRun.Status.SUCCEEDED, run.error_message
    assert list(RateLimitHit.objects.values_list("count", flat=True)) == [1]


@time_machine.travel(NOW, tick=False)
def test_a_sync_without_429_counts_nothing(server, sync):  # noqa: F811 - fixtures
    server.expect_request(OPENAI_COSTS).respond_with_json({"error": "down"}, status=503)
    account = make_account("openai")

    sync(account)

    assert not RateLimitHit.objects.exists()
