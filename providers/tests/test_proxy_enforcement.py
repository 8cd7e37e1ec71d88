"""Enforced budgets and per-key request limits at the proxy (alerts/enforcement.py,
providers/key_limits.py): refused before anything is sent, shaped so the official SDKs raise
their rate-limit (429) or permission (403) error, and bounded under concurrency."""

from __future__ import annotations

import itertools
import json
import threading
from datetime import date, timedelta
from decimal import Decimal

import anthropic
import openai
import pytest
import requests
import time_machine
from django.db import connection
from django.test import Client, override_settings
from pytest_httpserver import HTTPServer
from werkzeug import Response

from alerts import services as alert_services
from alerts.enforcement import enforced_budgets_forget
from alerts.models import Budget, BudgetPeriodSpend
from providers.models import IngestKey
from providers.services import ingest_key_create
from providers.tests.factories import AccountFactory, provider
from providers.tests.test_proxy import (  # noqa: F401 - fixtures are used by name
    ANTHROPIC_MESSAGE,
    BASE_URL_SETTINGS,
    MESSAGES,
    NOW,
    OPENAI_CHAT,
    PROVIDER_KEY,
    _fresh_price_cache,
    _now,
    add_price,
    connect,
    openai_client,
    received,
    sonnet_price,
    upstream_fixture,
)
from usage.extraction import RequestUsage
from usage.models import UsageRecord
from usage.services.requests import RequestEvent, request_events_record
from usage.tests.test_ingest_concurrency import in_thread, threads_see_a_real_database

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

CHAT = "/proxy/openai/v1/chat/completions"


@pytest.fixture(autouse=True)
def _forget_enforced_budgets():
    enforced_budgets_forget()
    yield
    enforced_budgets_forget()


def ten_cent_mini() -> None:
    """A price at which OPENAI_CHAT (1,200 prompt tokens of which 1,000 cached, 300
    completion) costs exactly $0.01: 200 × 0.00001 = 0.002; 1,000 × 0.000005 = 0.005;
    300 × 0.00001 = 0.003; sum 0.010."""
    add_price(
        "openai",
        "gpt-4o-mini",
        input_per_token=Decimal("0.00001"),
        cache_read_per_token=Decimal("0.000005"),
        output_per_token=Decimal("0.00001"),
    )


def enforced(workspace, amount: str, **fields) -> Budget:
    return alert_services.budget_create(
        workspace=workspace,
        scope=fields.pop("scope", Budget.Scope.OVERALL),
        amount=Decimal(amount),
        enforced=True,
        forecast_alert=False,
        **fields,
    )


def chat_answer(ids=itertools.count(1)):
    """OPENAI_CHAT under a new response id each time: a repeated id is one request, recorded
    (and counted) once."""
    return Response(
        json.dumps({**OPENAI_CHAT, "id": f"chatcmpl-enforce-{next(ids)}"}),
        content_type="application/json",
    )


def answer_chat(upstream, *, times: int = 1) -> None:
    for _ in range(times):
        upstream.expect_ordered_request("/v1/chat/completions", method="POST").respond_with_handler(
            lambda request: chat_answer()
        )


def test_the_openai_sdk_raises_its_rate_limit_error_once_the_budget_is_spent(live_server, upstream):
    account, raw = connect("openai")
    ten_cent_mini()
    enforced(account.workspace, "0.01")
    answer_chat(upstream)
    # The SDK's own retries left on: the refusal says not to retry, so none happen.
    client = openai.OpenAI(base_url=f"{live_server.url}/proxy/openai/v1", api_key=raw)

    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # $0.01: reaches it
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert refused.value.status_code == 429
    assert refused.value.type == "budget_exceeded" and refused.value.code == "budget_exceeded"
    assert "Budget exceeded: All spend has spent $0.01 of its $0.01 per month" in str(refused.value)
    assert refused.value.response.json() == {
        "error": {
            "message": refused.value.body["message"],
            "type": "budget_exceeded",
            "param": None,
            "code": "budget_exceeded",
        }
    }
    assert refused.value.response.headers["x-should-retry"] == "false"
    assert len(received(upstream, "/v1/chat/completions")) == 1  # the refused call never left
    assert UsageRecord.objects.filter(account=account).count() == 1  # and left no record


def test_the_anthropic_sdk_raises_its_rate_limit_error_once_the_budget_is_spent(
    live_server, upstream
):
    account, raw = connect("anthropic")
    sonnet_price()
    enforced(account.workspace, "0.01", scope=Budget.Scope.ACCOUNT, account=account)
    upstream.expect_request("/v1/messages", method="POST").respond_with_data(
        json.dumps(ANTHROPIC_MESSAGE), content_type="application/json"
    )
    client = anthropic.Anthropic(base_url=f"{live_server.url}/proxy/anthropic", api_key=raw)

    # 412 × 0.000003 + 2048 × 0.00000375 + 8192 × 0.0000003 + 230 × 0.000015 = $0.0148236
    client.messages.create(model="claude-sonnet-4-6", max_tokens=100, messages=MESSAGES)
    with pytest.raises(anthropic.RateLimitError) as refused:
        client.messages.create(model="claude-sonnet-4-6", max_tokens=100, messages=MESSAGES)

    body = refused.value.body
    assert refused.value.status_code == 429
    assert body["type"] == "error" and body["error"]["type"] == "budget_exceeded"
    assert body["error"]["message"].startswith(
        f"Budget exceeded: Account {account.name} has spent $0.01 of its $0.01 per month"
    )
    assert set(body) == {"type", "error"}  # Anthropic's shape, not OpenAI's
    assert len(received(upstream, "/v1/messages")) == 1


def test_an_enforced_budget_may_refuse_models_without_a_price(live_server, upstream):
    account, raw = connect("openai")
    ten_cent_mini()
    enforced(account.workspace, "100", refuse_unpriced=True)
    answer_chat(upstream)
    client = openai_client(live_server, "openai", raw)

    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(model="mystery-model-9", messages=MESSAGES)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # priced: goes

    assert refused.value.status_code == 403 and refused.value.type == "model_not_priced"
    assert "'mystery-model-9' has no price" in str(refused.value)
    assert len(received(upstream, "/v1/chat/completions")) == 1


def test_without_refuse_unpriced_an_unknown_model_goes_through_unpriced(live_server, upstream):
    account, raw = connect("openai")
    enforced(account.workspace, "100")
    answer_chat(upstream)

    openai_client(live_server, "openai", raw).chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,  # no price stored at all
    )

    record = UsageRecord.objects.get(account=account)
    assert record.cost is None  # unpriced, and so not counted against the budget
    assert BudgetPeriodSpend.objects.get().spent == Decimal(0)


def test_a_key_budget_stops_that_key_only_and_a_tag_budget_that_tag_only(live_server, upstream):
    account, raw = connect("openai")
    ten_cent_mini()
    other_raw, _ = ingest_key_create(account=account)
    key = IngestKey.objects.order_by("id").first()
    enforced(account.workspace, "0.01", scope=Budget.Scope.INGEST_KEY, ingest_key=key)
    enforced(account.workspace, "0.01", scope=Budget.Scope.TAG, tag="project", tag_value="search")
    answer_chat(upstream, times=4)

    def call(raw_key: str, project: str = "") -> int:
        headers = {"X-Tracker-Project": project} if project else {}
        response = requests.post(
            f"{live_server.url}{CHAT}",
            json={"model": "gpt-4o-mini", "messages": MESSAGES},
            headers={"Authorization": f"Bearer {raw_key}", **headers},
            timeout=10,
        )
        return response.status_code

    assert call(raw) == 200  # $0.01 on the first key: its budget is spent
    assert call(raw) == 429
    assert call(other_raw) == 200  # another key of the same account is not covered
    assert call(other_raw, "search") == 200  # $0.01 tagged search: that budget is spent
    assert call(other_raw, "search") == 429
    assert call(other_raw, "chat") == 200  # another project is not covered
    assert call(raw, "chat") == 429  # the first key is still refused, whatever the tag


def test_a_daily_budget_opens_again_the_next_day_in_the_workspace_zone(live_server, upstream):
    account, raw = connect("openai")
    workspace = account.workspace
    workspace.time_zone = "Asia/Tokyo"  # UTC+9: NOW (12:00 UTC) is 21:00 there
    workspace.save()
    ten_cent_mini()
    enforced(workspace, "0.01", period=Budget.Period.DAILY)
    answer_chat(upstream, times=2)
    client = openai_client(live_server, "openai", raw)

    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    # 15:00 UTC is midnight in Tokyo: a new day there, though still the same UTC day.
    with time_machine.travel(NOW + timedelta(hours=3, seconds=1), tick=True):
        enforced_budgets_forget()
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert len(received(upstream, "/v1/chat/completions")) == 2
    # The new Tokyo day has its own count, $0.01; the day before's row went when it was made.
    assert dict(BudgetPeriodSpend.objects.values_list("period_start", "spent")) == {
        date(2026, 8, 22): Decimal("0.01"),
    }


def test_spend_recorded_elsewhere_counts_when_the_budget_is_saved_and_at_each_evaluation(
    live_server, upstream
):
    account, raw = connect("openai")
    ten_cent_mini()
    answer_chat(upstream, times=2)
    client = openai_client(live_server, "openai", raw)

    def ingest(request_id: str) -> None:
        # 1,000 completion tokens × 0.00001 = $0.01, reported by an app through ingestion
        usage = RequestUsage(model="gpt-4o-mini", output_tokens=1000)
        request_events_record(
            account=account, events=[RequestEvent(request_id, usage, NOW)], durable=True
        )

    def counted() -> Decimal:
        return BudgetPeriodSpend.objects.get().spent

    ingest("ingested-1")
    enforced(account.workspace, "0.04")
    assert counted() == Decimal("0.01")  # the budget's first evaluation read the roll-ups
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert counted() == Decimal("0.02")  # + the proxied call, at once
    ingest("ingested-2")  # + $0.01 the proxy does not see until the next evaluation
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # sees $0.02: goes
    assert counted() == Decimal("0.03")
    alert_services.alerts_evaluate_for_workspace(workspace=account.workspace)
    assert counted() == Decimal("0.04")  # $0.01 × 2 ingested + $0.01 × 2 proxied
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(received(upstream, "/v1/chat/completions")) == 2


def test_ingestion_still_records_when_the_budget_is_spent(live_server, upstream):
    account, raw = connect("openai")
    ten_cent_mini()
    enforced(account.workspace, "0.01")
    answer_chat(upstream)
    openai_client(live_server, "openai", raw).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES
    )

    response = requests.post(
        f"{live_server.url}/api/usage/events",
        json=[
            {
                "request_id": "after-the-limit",
                "occurred_at": "2026-08-21T11:59:00Z",
                "model": "gpt-4o-mini",
                "usage": {"prompt_tokens": 10, "completion_tokens": 0},
            }
        ],
        headers={"Authorization": f"Bearer {raw}"},
        timeout=10,
    )

    assert response.status_code == 200 and response.json()["created"] == 1
    assert UsageRecord.objects.filter(account=account).count() == 2


def test_a_key_with_a_request_limit_is_refused_with_retry_after_past_it(live_server, upstream):
    account, raw = connect("openai")
    ten_cent_mini()
    IngestKey.objects.update(requests_per_minute=2)
    answer_chat(upstream, times=3)
    client = openai_client(live_server, "openai", raw)

    with time_machine.travel(NOW + timedelta(seconds=45), tick=False):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with time_machine.travel(NOW + timedelta(seconds=61), tick=False):  # the next minute
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert refused.value.type == "rate_limit_exceeded"
    assert refused.value.response.headers["retry-after"] == "15"  # 12:00:45 → 12:01:00
    assert "2 requests per minute" in str(refused.value)
    assert len(received(upstream, "/v1/chat/completions")) == 3


# --- concurrency ------------------------------------------------------------------------------

CLIENTS = 16
CALL_COST = Decimal("0.03")  # see overshoot test


def test_sixteen_clients_overshoot_a_one_dollar_budget_by_at_most_the_calls_in_flight(
    tmp_path,
):
    """16 clients call as fast as they can through the proxy against an enforced $1.00
    budget, each until it is refused. Every call costs $0.03 (1,000 prompt tokens × 0.00001 +
    1,000 completion tokens × 0.00002 = 0.01 + 0.02), so the 34th recorded call crosses
    $1.00 (33 × 0.03 = 0.99). Each client has at most one call in flight, so when it crosses
    at most 15 others are under way: at most 34 + 15 = 49 calls go through, $1.47 spent."""
    upstream = HTTPServer(threaded=True)
    upstream.start()
    ids = itertools.count(1)
    lock = threading.Lock()

    def answer(request):
        with lock:
            n = next(ids)
        body = {**OPENAI_CHAT, "id": f"chatcmpl-concurrent-{n}", "model": "budget-model"}
        body["usage"] = {"prompt_tokens": 1000, "completion_tokens": 1000, "total_tokens": 2000}
        return Response(json.dumps(body), content_type="application/json")

    upstream.expect_request("/v1/chat/completions").respond_with_handler(answer)
    overridden = override_settings(
        **{name: upstream.url_for("/").rstrip("/") for name in BASE_URL_SETTINGS}
    )
    overridden.enable()
    account = AccountFactory(provider=provider("openai"), keys={"api_key": PROVIDER_KEY})
    raw, _ = ingest_key_create(account=account)
    add_price(
        "openai",
        "budget-model",
        input_per_token=Decimal("0.00001"),
        output_per_token=Decimal("0.00002"),
    )
    enforced(account.workspace, "1.00")
    barrier = threading.Barrier(CLIENTS)
    outcomes: dict[int, list[int]] = {n: [] for n in range(CLIENTS)}
    refusals: list[dict] = []
    errors: list[BaseException] = []

    def client(n: int) -> None:
        try:
            web = Client()
            barrier.wait(timeout=30)
            for _ in range(100):
                response = web.post(
                    CHAT,
                    data=json.dumps({"model": "budget-model", "messages": MESSAGES}),
                    content_type="application/json",
                    HTTP_AUTHORIZATION=f"Bearer {raw}",
                )
                if response.streaming:
                    b"".join(response.streaming_content)  # the record is written as it ends
                response.close()
                outcomes[n].append(response.status_code)
                if response.status_code != 200:
                    refusals.append(json.loads(response.content))
                    return
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    try:
        with threads_see_a_real_database(tmp_path):
            threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=120)
            costs = in_thread(
                lambda: list(
                    UsageRecord.objects.filter(account=account).values_list("cost", flat=True)
                )
            )
    finally:
        overridden.disable()
        upstream.clear()
        upstream.stop()

    assert not errors, errors
    assert all(codes[-1] == 429 for codes in outcomes.values()), outcomes  # every one stopped
    assert all(r["error"]["type"] == "budget_exceeded" for r in refusals)
    accepted = sum(codes.count(200) for codes in outcomes.values())
    assert len(costs) == accepted and set(costs) == {CALL_COST}  # each recorded, priced
    spent = sum(costs, Decimal(0))
    assert spent >= Decimal("1.00")  # it was let reach the amount: 34 × 0.03 = 1.02 at least
    # The bound: 34 calls to cross + at most 15 in flight = 49 × $0.03 = $1.47.
    assert accepted <= 34 + (CLIENTS - 1), accepted
    assert spent <= Decimal("1.47")


def test_evaluations_keep_the_calls_of_a_zone_day_the_utc_days_split(live_server, upstream):
    """18:00 in Los Angeles is 01:00 UTC the next day: the day's calls sit on two UTC days of
    the roll-ups. Each evaluation sets the budget's spend from them plus the per-request
    records at the day's edges, so it keeps every call of the Los Angeles day."""
    account, raw = connect("openai")
    workspace = account.workspace
    workspace.time_zone = "America/Los_Angeles"
    workspace.save()
    ten_cent_mini()
    answer_chat(upstream, times=6)
    codes = []
    with time_machine.travel(NOW + timedelta(hours=13), tick=True):  # 2026-08-22 01:00 UTC
        enforced(workspace, "0.02", period=Budget.Period.DAILY)
        for _ in range(4):
            response = requests.post(
                f"{live_server.url}{CHAT}",
                json={"model": "gpt-4o-mini", "messages": MESSAGES},
                headers={"Authorization": f"Bearer {raw}"},
                timeout=10,
            )
            codes.append(response.status_code)
            alert_services.alerts_evaluate_for_workspace(workspace=workspace)  # as every minute

    assert codes == [200, 200, 429, 429]  # $0.01 + $0.01 reach the $0.02 of Aug 21 there
    # Both calls are on UTC day Aug 22, outside the roll-up days of "Aug 21": kept by the edges.
    assert BudgetPeriodSpend.objects.get().spent == Decimal("0.02")


def test_ten_one_cent_calls_spend_a_ten_cent_budget_exactly(live_server, upstream):
    """SQLite keeps the running sum as a double: ten adds of 0.01 make 0.09999999999999999,
    which must still read as $0.10 and stop the eleventh call."""
    account, raw = connect("openai")
    ten_cent_mini()
    enforced(account.workspace, "0.10")
    answer_chat(upstream, times=10)
    client = openai_client(live_server, "openai", raw)

    for _ in range(10):  # 10 × $0.01 = $0.10
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert UsageRecord.objects.filter(account=account).count() == 10


def test_a_budget_deleted_by_another_process_no_longer_stops_calls_and_others_still_do(
    live_server, upstream
):
    account, raw = connect("openai")
    ten_cent_mini()
    gone = enforced(account.workspace, "0.01", period=Budget.Period.DAILY)
    enforced(account.workspace, "0.02", scope=Budget.Scope.ACCOUNT, account=account)
    answer_chat(upstream, times=2)
    client = openai_client(live_server, "openai", raw)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # $0.01; reads the list

    # As another process would: this one still lists the budget for ENFORCED_CACHE_SECONDS.
    Budget.objects.filter(pk=gone.pk).delete()
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # no 500: $0.02
    with pytest.raises(openai.RateLimitError):  # the account's $0.02 is spent
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert len(received(upstream, "/v1/chat/completions")) == 2
