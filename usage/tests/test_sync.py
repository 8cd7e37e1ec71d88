"""usage_sync end to end against provider-shaped bodies served on loopback.

The helpers at the top (serve_*, make_account, dump) are shared with test_sync_views.py and
test_sync_commands.py.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import time_machine
from django.db import connection
from django_q.models import OrmQ
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from providers import http
from providers.adapters.base import UsageLine
from providers.models import SyncStatus
from providers.tests.factories import AccountFactory, provider
from usage.db import MoneySum
from usage.models import DailyUsage, Source, SyncRun, UsageRecord
from usage.selectors import month_summary
from usage.services.records import usage_lines_replace_window
from usage.services.rollup import day_start, rollup_rebuild
from usage.services.sync import sync_run_queue, sync_window, usage_sync
from usage.tasks import sync_all_accounts

FIXTURES = Path(__file__).resolve().parents[2] / "providers" / "tests" / "fixtures"
NOW = "2026-08-03 12:00:00+00:00"
ORG = "acme-inc"
ADMIN_KEYS = {
    "openai": "sk-admin-openai-test-0001",
    "anthropic": "sk-ant-admin01-test-0002",
    "copilot": "ghp_copilot_test_token_0003",
}
OPENAI_COSTS = "/v1/organization/costs"
OPENAI_COMPLETIONS = "/v1/organization/usage/completions"
OPENAI_EMBEDDINGS = "/v1/organization/usage/embeddings"
ANTHROPIC_COSTS = "/v1/organizations/cost_report"
ANTHROPIC_USAGE = "/v1/organizations/usage_report/messages"
COPILOT_BILLING = f"/orgs/{ORG}/copilot/billing"
COPILOT_SEATS = f"/orgs/{ORG}/copilot/billing/seats"
COPILOT_AI_CREDITS = f"/organizations/{ORG}/settings/billing/ai_credit/usage"
COPILOT_PREMIUM = f"/organizations/{ORG}/settings/billing/premium_request/usage"

# Totals of the fixtures, by hand.
# OpenAI costs_page1 + costs_page2: 0.0196710 + 0.012249 + 12.50 + 3 = $15.531920
OPENAI_TOTAL = Decimal("15.531920")
# Anthropic cost report, cents: 14.463 + 0.537 + 13.77 + 3 + 123.78912 + 50 = 205.55912 cents
# = $2.0555912
ANTHROPIC_TOTAL = Decimal("2.0555912")
# Copilot, 30-day backfill 2026-07-05..2026-08-03 (business, $19/seat-month, July and August
# both have 31 days, each day's cost quantized to 1e-10 by the adapter):
#   2026-07-05..2026-08-01 (28 days) and 2026-08-03: 2 seats, 2 × 19 / 31 = $1.2258064516
#   2026-08-02: 3 seats (hubot joined), 3 × 19 / 31 = $1.8387096774
#   29 × 1.2258064516 = 35.5483870964; + 1.8387096774 = 37.3870967738 of seats
#   AI credits on 2026-08-01: netAmount $2.5  ->  37.3870967738 + 2.5 = $39.8870967738
COPILOT_TOTAL = Decimal("39.8870967738")


def fixture(kind: str, name: str) -> str:
    return (FIXTURES / kind / name).read_text()


def json_response(body: str | dict, status: int = 200, headers: dict | None = None) -> Response:
    text = body if isinstance(body, str) else json.dumps(body)
    return Response(text, status=status, headers=headers, content_type="application/json")


def point_settings_at(settings, httpserver) -> None:
    url = httpserver.url_for("/")
    settings.OPENAI_BASE_URL = url
    settings.ANTHROPIC_BASE_URL = url
    settings.GITHUB_API_URL = url


def serve_openai(httpserver) -> None:
    def costs(request: Request) -> Response:
        page = "costs_page2.json" if request.args.get("page") else "costs_page1.json"
        return json_response(fixture("openai", page))

    httpserver.expect_request(OPENAI_COSTS).respond_with_handler(costs)
    httpserver.expect_request(OPENAI_COMPLETIONS).respond_with_data(
        fixture("openai", "completions.json"), content_type="application/json"
    )
    httpserver.expect_request(OPENAI_EMBEDDINGS).respond_with_data(
        fixture("openai", "embeddings.json"), content_type="application/json"
    )


def serve_anthropic(httpserver, page2=None) -> None:
    def costs(request: Request) -> Response:
        if request.args.get("page"):
            return (
                page2(request)
                if page2
                else json_response(fixture("anthropic", "cost_report_page2.json"))
            )
        return json_response(fixture("anthropic", "cost_report_page1.json"))

    httpserver.expect_request(ANTHROPIC_COSTS).respond_with_handler(costs)
    httpserver.expect_request(ANTHROPIC_USAGE).respond_with_data(
        fixture("anthropic", "usage_messages.json"), content_type="application/json"
    )


def serve_copilot(httpserver) -> None:
    def seats(request: Request) -> Response:
        if request.args.get("page") == "2":
            return json_response(fixture("copilot", "seats_page2.json"))
        link = f'<{request.base_url}?page=2&per_page=100>; rel="next"'
        return json_response(fixture("copilot", "seats_page1.json"), headers={"Link": link})

    def credits(request: Request) -> Response:
        day = (request.args["year"], request.args["month"], request.args["day"])
        name = "ai_credit_usage_day1.json" if day == ("2026", "8", "1") else None
        return json_response(fixture("copilot", name or "ai_credit_usage_empty.json"))

    httpserver.expect_request(COPILOT_BILLING).respond_with_data(
        fixture("copilot", "billing.json"), content_type="application/json"
    )
    httpserver.expect_request(COPILOT_SEATS).respond_with_handler(seats)
    httpserver.expect_request(COPILOT_AI_CREDITS).respond_with_handler(credits)


def make_account(slug: str, **kwargs):
    config = {"organization": ORG} if slug == "copilot" else {}
    return AccountFactory(
        provider=provider(slug), config=config, keys={"admin_key": ADMIN_KEYS[slug]}, **kwargs
    )


def official(account):
    return UsageRecord.objects.filter(account=account, source=Source.OFFICIAL)


def record_total(account) -> Decimal:
    return official(account).aggregate(t=MoneySum("cost"))["t"]


def rollup_total(account) -> Decimal:
    return DailyUsage.objects.filter(account=account, source=Source.OFFICIAL).aggregate(
        t=MoneySum("cost")
    )["t"]


def dump(account) -> tuple[list[dict], list[dict]]:
    """Every column of the account's records and roll-up rows, in a stable order."""
    records = list(UsageRecord.objects.filter(account=account).order_by("natural_key").values())
    rollup = list(
        DailyUsage.objects.filter(account=account).order_by("day", "source", "model").values()
    )
    return records, rollup


def requests_to(httpserver, path: str) -> list[Request]:
    return [request for request, _ in httpserver.log if request.path == path]


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def sync(sleeps):
    """usage_sync with the retry waits recorded instead of slept."""

    def run(account, **kwargs):
        return usage_sync(account_id=account.pk, adapter_options={"sleep": sleeps.append}, **kwargs)

    return run


@pytest.fixture
def server(settings, httpserver):
    point_settings_at(settings, httpserver)
    return httpserver


@pytest.fixture
def threaded_server(settings):
    """A loopback server answering requests in parallel (one may stall while others pass)."""
    server = HTTPServer(threaded=True)
    server.start()
    point_settings_at(settings, server)
    yield server
    server.clear()
    if server.is_running():
        server.stop()


# --- full syncs store exactly what was served ---


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_it_stores_exactly_the_openai_totals(server, sync):
    serve_openai(server)
    account = make_account("openai")

    run = sync(account)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error_message
    # New account: 30-day backfill ending today (2026-08-03), end exclusive.
    assert (run.window_start, run.window_end) == (date(2026, 7, 5), date(2026, 8, 4))
    # 4 cost lines + completions on 08-01 and 08-03 + embeddings on 08-01
    assert (run.fetched, run.created, run.updated) == (7, 7, 0)
    assert record_total(account) == OPENAI_TOTAL  # $15.531920, see OPENAI_TOTAL
    assert rollup_total(account) == OPENAI_TOTAL
    row = official(account).get(line_item="gpt-4o-mini-2024-07-18, input")
    assert row.cost == Decimal("0.0196710")
    assert row.bucket_start == day_start(date(2026, 8, 1))
    assert row.model == "gpt-4o-mini-2024-07-18"
    tokens = official(account).get(line_item="tokens:completions", model="gpt-4o-mini-2024-07-18")
    assert tokens.cost is None
    # input_uncached_tokens 131140, input_cached_tokens 51200, output 20415, 311 requests
    assert (tokens.input_tokens, tokens.cache_read_tokens, tokens.output_tokens) == (
        131140,
        51200,
        20415,
    )
    assert tokens.request_count == 311
    cost_request = requests_to(server, OPENAI_COSTS)[0]
    assert cost_request.headers["Authorization"] == f"Bearer {ADMIN_KEYS['openai']}"
    assert cost_request.args["start_time"] == str(int(datetime(2026, 7, 5, tzinfo=UTC).timestamp()))
    account.refresh_from_db()
    assert account.last_sync_status == SyncStatus.SUCCEEDED
    assert account.last_sync_at is not None
    assert account.last_sync_error == ""


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_it_stores_exactly_the_anthropic_totals(server, sync):
    serve_anthropic(server)
    account = make_account("anthropic")

    run = sync(account)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error_message
    # 5 cost lines (the two Sonnet input results merge) + Sonnet and Haiku token lines
    assert (run.fetched, run.created, run.updated) == (7, 7, 0)
    assert record_total(account) == ANTHROPIC_TOTAL  # $2.0555912, see ANTHROPIC_TOTAL
    assert rollup_total(account) == ANTHROPIC_TOTAL
    sonnet_input = official(account).get(line_item="Claude Sonnet 4.5 Usage - Input Tokens")
    # "14.463" + "0.537" cents = 15.000 cents = $0.15000
    assert sonnet_input.cost == Decimal("0.15")
    haiku = official(account).get(line_item="Claude Haiku 4.5 Usage - Output Tokens")
    # "123.78912" cents = $1.2378912
    assert haiku.cost == Decimal("1.2378912")
    assert haiku.bucket_start == day_start(date(2026, 8, 3))


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_it_stores_exactly_the_copilot_totals(server, sync):
    serve_copilot(server)
    account = make_account("copilot")

    run = sync(account)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error_message
    # 30 seat lines (one a day) + one AI credit line on 2026-08-01
    assert (run.fetched, run.created) == (31, 31)
    assert record_total(account) == COPILOT_TOTAL  # $39.8870967738, see COPILOT_TOTAL
    assert rollup_total(account) == COPILOT_TOTAL
    # One AI credit report request per day of the window
    assert len(requests_to(server, COPILOT_AI_CREDITS)) == 30
    seats = official(account).get(
        line_item="seats:business", bucket_start=day_start(date(2026, 8, 2))
    )
    assert (seats.seats, seats.cost) == (3, Decimal("1.8387096774"))  # 3 × 19 / 31


# --- idempotency ---


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_it_leaves_identical_rows_when_synced_twice(server, sync):
    serve_openai(server)
    serve_anthropic(server)
    openai, anthropic = make_account("openai"), make_account("anthropic")
    sync(openai)
    sync(anthropic)
    before = dump(openai), dump(anthropic)

    again = sync(openai), sync(anthropic)

    for run in again:
        assert run.status == SyncRun.Status.SUCCEEDED, run.error_message
        # Second run: re-fetch the last 3 UTC days only
        assert (run.window_start, run.window_end) == (date(2026, 8, 1), date(2026, 8, 4))
        assert (run.fetched, run.created, run.updated) == (7, 0, 0)
    assert (dump(openai), dump(anthropic)) == before
    assert record_total(openai) == OPENAI_TOTAL  # still $15.531920, not doubled
    assert record_total(anthropic) == ANTHROPIC_TOTAL  # still $2.0555912


def serve_openai_costs(httpserver, state: dict) -> None:
    """OpenAI with cost lines built from `state` ({"lines": [(day, label, value)]}) per request."""

    def costs(request: Request) -> Response:
        by_day: dict[date, list] = {}
        for day, label, value in state["lines"]:
            by_day.setdefault(day, []).append(
                {
                    "object": "organization.costs.result",
                    "amount": {"value": value, "currency": "usd"},
                    "line_item": label,
                }
            )
        start = datetime.fromtimestamp(int(request.args["start_time"]), UTC).date()
        end = datetime.fromtimestamp(int(request.args["end_time"]), UTC).date()
        buckets = []
        day = start
        while day < end:
            stamp = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
            buckets.append(
                {
                    "object": "bucket",
                    "start_time": stamp,
                    "end_time": stamp + 86400,
                    "results": by_day.get(day, []),
                }
            )
            day += timedelta(days=1)
        return json_response(
            {"object": "page", "data": buckets, "has_more": False, "next_page": None}
        )

    empty = {"object": "page", "data": [], "has_more": False, "next_page": None}
    httpserver.expect_request(OPENAI_COSTS).respond_with_handler(costs)
    httpserver.expect_request(OPENAI_COMPLETIONS).respond_with_json(empty)
    httpserver.expect_request(OPENAI_EMBEDDINGS).respond_with_json(empty)


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_it_replaces_a_bucket_the_provider_revised(server, sync):
    state = {
        "lines": [
            (date(2026, 8, 2), "gpt-4o, input", "1.25"),
            (date(2026, 8, 3), "gpt-4o, input", "0.40"),
        ]
    }
    serve_openai_costs(server, state)
    account = make_account("openai")
    sync(account)
    assert record_total(account) == Decimal("1.65")  # 1.25 + 0.40

    state["lines"][1] = (date(2026, 8, 3), "gpt-4o, input", "0.90")  # the day kept running
    run = sync(account)

    assert (run.fetched, run.created, run.updated) == (2, 0, 1)
    # Replaced, not added: 1.25 + 0.90 = $2.15 (adding would give 1.25 + 0.40 + 0.90 = $2.55)
    assert record_total(account) == Decimal("2.15")
    assert rollup_total(account) == Decimal("2.15")
    assert official(account).count() == 2
    day3 = DailyUsage.objects.get(account=account, day=date(2026, 8, 3))
    assert day3.cost == Decimal("0.90")


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_it_removes_a_line_the_provider_no_longer_reports(server, sync):
    state = {
        "lines": [
            (date(2026, 8, 2), "gpt-4o, input", "1.25"),
            (date(2026, 8, 2), "gpt-4o, output", "2.50"),
        ]
    }
    serve_openai_costs(server, state)
    account = make_account("openai")
    sync(account)
    assert record_total(account) == Decimal("3.75")  # 1.25 + 2.50

    state["lines"].pop()
    run = sync(account)

    # The removal is a change of the window: counted with the updates.
    assert (run.fetched, run.created, run.updated) == (1, 0, 1)
    assert list(official(account).values_list("line_item", flat=True)) == ["gpt-4o, input"]
    assert record_total(account) == Decimal("1.25")
    assert rollup_total(account) == Decimal("1.25")


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_it_keeps_days_outside_the_window(server, sync):
    state = {"lines": [(date(2026, 7, 10), "gpt-4o, input", "5"), (date(2026, 8, 2), "x, y", "1")]}
    serve_openai_costs(server, state)
    account = make_account("openai")
    sync(account)  # 30-day backfill holds both days
    state["lines"] = [(date(2026, 8, 2), "x, y", "1")]  # 07-10 is outside the 3-day re-sync

    run = sync(account)

    assert (run.window_start, run.created, run.updated) == (date(2026, 8, 1), 0, 0)
    assert record_total(account) == Decimal("6")  # 5 + 1: the old day stays


# --- concurrency and kill-safety ---


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@time_machine.travel(NOW, tick=False)
def test_it_writes_no_duplicates_when_two_syncs_run_at_once(server, sleeps):
    page2_started = threading.Event()

    def slow_page2(request: Request) -> Response:
        page2_started.set()
        time.sleep(0.5)  # keep the first sync fetching while the second starts
        return json_response(fixture("anthropic", "cost_report_page2.json"))

    serve_anthropic(server, page2=slow_page2)
    account = make_account("anthropic")
    runs: list = []
    errors: list = []

    def worker():
        try:
            runs.append(usage_sync(account_id=account.pk, adapter_options={"sleep": sleeps.append}))
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    first = threading.Thread(target=worker)
    first.start()
    assert page2_started.wait(5)
    second = threading.Thread(target=worker)
    second.start()
    first.join(10)
    second.join(10)

    assert errors == []
    # The first claimed the account before fetching, so the second finds it running.
    assert sorted(run.status for run in runs) == [SyncRun.Status.SKIPPED, SyncRun.Status.SUCCEEDED]
    (skipped,) = [run for run in runs if run.status == SyncRun.Status.SKIPPED]
    assert skipped.error_message == "skipped: already running"
    assert official(account).count() == 7
    assert record_total(account) == ANTHROPIC_TOTAL  # $2.0555912, once
    assert rollup_total(account) == ANTHROPIC_TOTAL
    assert SyncRun.objects.filter(account=account).count() == 2


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@time_machine.travel(NOW, tick=False)
def test_it_writes_no_duplicates_when_a_stale_run_overlaps_a_new_one(threaded_server, sleeps):
    """A worker thought dead (its run looks stale) still finishes while a new sync runs."""
    server = threaded_server
    release = threading.Event()
    page2_calls: list[int] = []

    def gated_page2(request: Request) -> Response:
        page2_calls.append(1)
        if len(page2_calls) == 1:
            release.wait(5)  # the first worker stalls here until the second has written
        return json_response(fixture("anthropic", "cost_report_page2.json"))

    serve_anthropic(server, page2=gated_page2)
    account = make_account("anthropic")
    runs: dict[str, SyncRun] = {}
    errors: list = []

    def worker(name: str):
        try:
            runs[name] = usage_sync(account_id=account.pk, adapter_options={"sleep": sleeps.append})
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    old = threading.Thread(target=worker, args=("old",))
    old.start()
    deadline = time.monotonic() + 5
    while not page2_calls and time.monotonic() < deadline:
        time.sleep(0.01)
    # Make the first run's lease look expired, as if its worker had been killed.
    SyncRun.objects.filter(account=account).update(
        started_at=datetime(2026, 8, 3, 11, 0, tzinfo=UTC),
        heartbeat_at=datetime(2026, 8, 3, 11, 0, tzinfo=UTC),
    )
    new = threading.Thread(target=worker, args=("new",))
    new.start()
    new.join(10)
    release.set()
    old.join(10)

    assert errors == []
    assert runs["new"].status == SyncRun.Status.SUCCEEDED, runs["new"].error_message
    assert runs["new"].created == 7
    # The new run marked the old one stale; the old worker, alive after all, finds it lost
    # its lease and writes nothing: only one run per account ever writes.
    assert runs["old"].status == SyncRun.Status.FAILED
    assert runs["old"].error_class == "stale"
    assert (runs["old"].created, runs["old"].updated) == (0, 0)
    assert official(account).count() == 7
    assert record_total(account) == ANTHROPIC_TOTAL  # $2.0555912, once
    assert rollup_total(account) == ANTHROPIC_TOTAL


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_it_skips_while_another_sync_of_the_account_runs(server, sync):
    serve_openai(server)
    account = make_account("openai")
    SyncRun.objects.create(
        account=account,
        window_start=date(2026, 8, 1),
        window_end=date(2026, 8, 4),
        status=SyncRun.Status.RUNNING,
        started_at=datetime(2026, 8, 3, 11, 59, tzinfo=UTC),  # one minute ago: alive
    )

    run = sync(account)

    assert run.status == SyncRun.Status.SKIPPED
    assert run.error_message == "skipped: already running"
    assert run.finished_at is not None
    assert len(server.log) == 0
    assert official(account).count() == 0


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_it_is_not_blocked_by_a_stale_running_run(server, sync):
    serve_openai(server)
    account = make_account("openai")
    # A worker killed mid-run an hour ago (longer than the 300 s task timeout).
    stale = SyncRun.objects.create(
        account=account,
        window_start=date(2026, 8, 1),
        window_end=date(2026, 8, 4),
        status=SyncRun.Status.RUNNING,
        started_at=datetime(2026, 8, 3, 11, 0, tzinfo=UTC),
    )

    run = sync(account)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error_message
    assert record_total(account) == OPENAI_TOTAL  # $15.531920
    stale.refresh_from_db()
    assert stale.status == SyncRun.Status.FAILED
    assert stale.error_class == "stale"
    assert stale.finished_at is not None


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_it_reruns_a_redelivered_task_whose_worker_was_killed(server, sync):
    serve_openai(server)
    account = make_account("openai")
    run, created = sync_run_queue(account=account)
    assert created
    # The first delivery claimed the run and the worker died before writing anything.
    SyncRun.objects.filter(pk=run.pk).update(
        status=SyncRun.Status.RUNNING, started_at=datetime(2026, 8, 3, 11, 0, tzinfo=UTC)
    )

    again = sync(account, run_id=run.pk)

    assert again.pk == run.pk
    assert again.status == SyncRun.Status.SUCCEEDED, again.error_message
    assert record_total(account) == OPENAI_TOTAL  # $15.531920
    # A third delivery of the finished run does nothing.
    assert sync(account, run_id=run.pk) is None
    assert SyncRun.objects.filter(account=account).count() == 1
    assert record_total(account) == OPENAI_TOTAL


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_it_ignores_a_duplicate_delivery_while_the_run_is_alive(server, sync):
    serve_openai(server)
    account = make_account("openai")
    run, _ = sync_run_queue(account=account)
    SyncRun.objects.filter(pk=run.pk).update(
        status=SyncRun.Status.RUNNING, started_at=datetime(2026, 8, 3, 11, 59, tzinfo=UTC)
    )

    assert sync(account, run_id=run.pk) is None
    assert len(server.log) == 0


# --- failures ---


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_it_writes_nothing_when_a_later_page_keeps_failing(server, sync, sleeps):
    serve_anthropic(server)
    account = make_account("anthropic")
    sync(account)
    before = dump(account)
    server.clear()

    def broken(request: Request) -> Response:
        return json_response({"type": "error", "error": {"message": "overloaded"}}, status=500)

    # Page 1 now reports more money, page 2 fails: the new page 1 must not be written.
    page1 = json.loads(fixture("anthropic", "cost_report_page1.json"))
    page1["data"][0]["results"][0]["amount"] = "99"

    def costs(request: Request) -> Response:
        return broken(request) if request.args.get("page") else json_response(page1)

    server.expect_request(ANTHROPIC_COSTS).respond_with_handler(costs)
    run = sync(account)

    assert run.status == SyncRun.Status.FAILED
    assert "provider error (500): overloaded" in run.error_message
    assert "Response excerpt:" in run.error_message
    # 4 tries of page 2 (bounded), 3 waits between them
    assert len([r for r in requests_to(server, ANTHROPIC_COSTS) if r.args.get("page")]) == 4
    assert len(sleeps) == 3
    assert dump(account) == before
    assert record_total(account) == ANTHROPIC_TOTAL  # unchanged $2.0555912
    account.refresh_from_db()
    assert account.last_sync_status == SyncStatus.FAILED
    assert account.needs_attention is False


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_it_fails_with_an_excerpt_on_a_malformed_page(server, sync):
    def garbled(request: Request) -> Response:
        return Response('{"data": [{"starting_at": "2026-08-02T00:00:00Z", "resul', status=200)

    serve_anthropic(server, page2=garbled)
    account = make_account("anthropic")

    run = sync(account)

    assert run.status == SyncRun.Status.FAILED
    assert run.error_message.startswith("malformed response: not JSON")
    assert 'Response excerpt: {"data": [{"starting_at": "2026-08-02T00:00:00Z"' in run.error_message
    assert official(account).count() == 0
    assert DailyUsage.objects.filter(account=account).count() == 0


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_it_fails_with_an_excerpt_on_an_unexpected_shape(server, sync):
    serve_anthropic(server)
    server.clear()
    server.expect_request(ANTHROPIC_COSTS).respond_with_json({"data": {"not": "a list"}})
    account = make_account("anthropic")

    run = sync(account)

    assert run.status == SyncRun.Status.FAILED
    assert "unexpected response shape: 'data' should be a list" in run.error_message
    assert '"not": "a list"' in run.error_message
    assert official(account).count() == 0


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_it_marks_the_account_on_401_and_does_not_retry(server, sync, sleeps):
    server.expect_request(ANTHROPIC_COSTS).respond_with_data(
        fixture("anthropic", "error_401.json"), status=401, content_type="application/json"
    )
    account = make_account("anthropic")

    run = sync(account)

    assert run.status == SyncRun.Status.FAILED
    assert len(server.log) == 1  # permanent: no retry
    assert sleeps == []
    account.refresh_from_db()
    assert account.needs_attention is True
    assert account.last_sync_status == SyncStatus.FAILED
    assert account.last_sync_error == "key rejected (401): invalid x-api-key"
    assert ADMIN_KEYS["anthropic"] not in run.error_message


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_it_marks_the_account_on_403_with_the_provider_message(server, sync):
    server.expect_request(OPENAI_COSTS).respond_with_data(
        fixture("openai", "error_403.json"), status=403, content_type="application/json"
    )
    account = make_account("openai")

    run = sync(account)

    assert run.status == SyncRun.Status.FAILED
    assert len(server.log) == 1
    account.refresh_from_db()
    assert account.needs_attention is True
    detail = json.loads(fixture("openai", "error_403.json"))["error"]["message"]
    assert detail[:50] in account.last_sync_error


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_it_clears_needs_attention_after_a_good_sync(server, sync):
    serve_openai(server)
    account = make_account("openai", needs_attention=True, last_sync_error="key rejected (401)")

    sync(account)

    account.refresh_from_db()
    assert (account.needs_attention, account.last_sync_error) == (False, "")


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_it_never_shows_the_key_a_provider_echoes(server, sync):
    key = ADMIN_KEYS["openai"]
    server.expect_request(OPENAI_COSTS).respond_with_json(
        {"error": {"message": f"Incorrect API key provided: {key}"}}, status=401
    )
    account = make_account("openai")

    run = sync(account)

    account.refresh_from_db()
    assert key not in run.error_message
    assert key not in account.last_sync_error
    assert "[redacted]" in account.last_sync_error


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_it_honours_retry_after_capped_at_60_seconds(server, sync, sleeps, settings):
    settings.SYNC_TIME_BUDGET_SECONDS = 600  # a 60 s wait fits; the default budget would not
    serve_openai(server)
    server.clear()
    served = {"costs": 0}

    def costs(request: Request) -> Response:
        served["costs"] += 1
        if served["costs"] == 1:
            return json_response({"error": {"message": "slow down"}}, 429, {"Retry-After": "120"})
        return json_response(fixture("openai", "empty.json"))

    server.expect_request(OPENAI_COSTS).respond_with_handler(costs)
    server.expect_request(OPENAI_COMPLETIONS).respond_with_data(
        fixture("openai", "empty.json"), content_type="application/json"
    )
    server.expect_request(OPENAI_EMBEDDINGS).respond_with_data(
        fixture("openai", "empty.json"), content_type="application/json"
    )
    account = make_account("openai")

    run = sync(account)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error_message
    assert sleeps == [60.0]  # Retry-After 120 s, capped at 60 s
    assert served["costs"] == 2


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_it_backs_off_with_jitter_on_429_without_retry_after(server, sync, sleeps):
    server.expect_request(OPENAI_COSTS).respond_with_json({"error": "busy"}, status=429)
    account = make_account("openai")

    run = sync(account)

    assert run.status == SyncRun.Status.FAILED
    assert "rate limited (429)" in run.error_message
    assert len(server.log) == 4  # bounded
    # Exponential 1, 2, 4 s plus up to 1 s of jitter each
    for wait, base in zip(sleeps, (1, 2, 4), strict=True):
        assert base <= wait < base + 1
    account.refresh_from_db()
    assert account.needs_attention is False


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_it_records_a_missing_key_without_calling_the_provider(server, sync):
    account = AccountFactory(provider=provider("openai"))

    run = sync(account)

    assert run.status == SyncRun.Status.FAILED
    assert "admin key" in run.error_message
    assert len(server.log) == 0


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_it_refuses_a_provider_without_a_usage_api(server, sync):
    account = AccountFactory(provider=provider("groq"), keys={"api_key": "gsk_test_key_123456"})

    run = sync(account)

    assert run.status == SyncRun.Status.FAILED
    assert run.error_message == "Groq has no official usage API."
    account.refresh_from_db()
    assert account.needs_attention is False


# --- scheduling ---


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_one_accounts_500_does_not_stop_another(server, settings, monkeypatch):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": True}
    monkeypatch.setattr(http, "BACKOFF_BASE", 0)  # retries still happen, without the waits
    server.expect_request(OPENAI_COSTS).respond_with_json({"error": "down"}, status=500)
    serve_anthropic(server)
    broken, healthy = make_account("openai"), make_account("anthropic")
    AccountFactory(provider=provider("groq"), keys={"api_key": "gsk_not_synced_123"})
    make_account("openai", is_active=False)

    assert sync_all_accounts() == 2

    failed = SyncRun.objects.get(account=broken)
    assert failed.status == SyncRun.Status.FAILED
    assert "provider error (500)" in failed.error_message
    assert failed.error_class == "server_error"
    # Tried once: the worker is not held; a later task will try again.
    assert len(requests_to(server, OPENAI_COSTS)) == 1
    assert failed.next_retry_at is not None
    ok = SyncRun.objects.get(account=healthy)
    assert ok.status == SyncRun.Status.SUCCEEDED, ok.error_message
    assert record_total(healthy) == ANTHROPIC_TOTAL  # $2.0555912
    assert SyncRun.objects.count() == 2  # none for the Groq or the inactive account


@pytest.mark.django_db
def test_sync_all_accounts_enqueues_one_task_per_account(settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    first, second = make_account("openai"), make_account("copilot")

    assert sync_all_accounts() == 2

    assert OrmQ.objects.count() == 2
    assert {task.func() for task in OrmQ.objects.all()} == {"usage.tasks.sync_account"}
    assert sorted(task.args()[0] for task in OrmQ.objects.all()) == [first.pk, second.pk]


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_it_backfills_a_new_account_and_resyncs_three_days_after(settings):
    settings.SYNC_BACKFILL_DAYS = 30
    account = make_account("openai")
    today = date(2026, 8, 3)

    assert sync_window(account=account, days=None, today=today) == (
        date(2026, 7, 5),  # 30 days including today
        date(2026, 8, 4),
    )
    SyncRun.objects.create(
        account=account,
        window_start=date(2026, 7, 5),
        window_end=date(2026, 8, 4),
        status=SyncRun.Status.SUCCEEDED,
    )
    assert sync_window(account=account, days=None, today=today) == (
        date(2026, 8, 1),
        date(2026, 8, 4),
    )
    assert sync_window(account=account, days=90, today=today)[0] == date(2026, 5, 6)


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_sync_run_queue_does_not_queue_twice():
    account = make_account("openai")

    run, created = sync_run_queue(account=account)
    again, created_again = sync_run_queue(account=account)

    assert (created, created_again) == (True, False)
    assert again.pk == run.pk
    account.refresh_from_db()
    assert account.last_sync_status == SyncStatus.QUEUED


# --- official supersedes estimated ---


@pytest.mark.django_db
def test_month_summary_counts_official_instead_of_estimated_on_the_same_day():
    account = make_account("openai")
    day1, day2 = date(2026, 8, 1), date(2026, 8, 2)
    for natural_key, day, cost in (("req:a", day1, "4.00"), ("req:b", day2, "0.75")):
        UsageRecord.objects.create(
            account=account,
            provider=account.provider,
            natural_key=natural_key,
            bucket_start=day_start(day) + timedelta(hours=9),
            granularity="event",
            source=Source.ESTIMATED,
            model="gpt-4o",
            cost=Decimal(cost),
        )
    rollup_rebuild(account_id=account.pk, days=[day1, day2], source=Source.ESTIMATED)
    usage_lines_replace_window(
        account=account,
        start=day1,
        end=day2,
        lines=[UsageLine(day=day1, model="gpt-4o", line_item="gpt-4o, input", cost=Decimal("5"))],
    )

    (summary,) = month_summary(workspace=account.workspace, today=date(2026, 8, 3))

    # Day 1: official $5 replaces the $4 estimate; day 2: only the $0.75 estimate -> $5.75
    # (adding both would give 4 + 5 + 0.75 = $9.75)
    assert summary.cost == Decimal("5.75")
    assert summary.sources == {Source.OFFICIAL, Source.ESTIMATED}
