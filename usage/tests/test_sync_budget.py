"""A slow provider never holds a worker: the sync time budget, retries on later tasks, the
structured error class, the heartbeat lease and stale runs."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta

import pytest
import requests
import time_machine
from django.urls import reverse
from django_q.models import Schedule
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from providers import http
from providers.http import Budget, ProviderError
from providers.models import SyncStatus
from usage.models import SyncRun
from usage.services.sync import sync_retry_delay, sync_run_heartbeat, usage_sync
from usage.tasks import sync_account
from usage.tests.test_sync import (
    ANTHROPIC_COSTS,
    OPENAI_COSTS,
    OPENAI_TOTAL,
    fixture,
    json_response,
    make_account,
    point_settings_at,
    record_total,
    requests_to,
    serve_anthropic,
    serve_openai,
)

NOW = datetime(2026, 8, 3, 12, 0, tzinfo=UTC)
HTMX = {"HTTP_HX_REQUEST": "true"}

pytestmark = pytest.mark.django_db


@pytest.fixture
def server(settings, httpserver):
    point_settings_at(settings, httpserver)
    settings.SYNC_RETRY_BASE_SECONDS = 60
    settings.SYNC_MAX_ATTEMPTS = 4
    return httpserver


@pytest.fixture
def hanging(settings):
    """A provider that never answers in time (each request held for 3 s)."""
    release = threading.Event()

    def hang(request: Request) -> Response:
        release.wait(3)
        return json_response(fixture("openai", "empty.json"))

    server = HTTPServer(threaded=True)
    server.expect_request(OPENAI_COSTS).respond_with_handler(hang)
    server.start()
    point_settings_at(settings, server)
    yield server
    release.set()
    time.sleep(0.05)
    server.clear()
    server.stop()


def retry_schedule(run: SyncRun) -> Schedule:
    return Schedule.objects.get(name=f"sync-retry-run-{run.pk}")


# --- the time budget ---


def test_it_bounds_each_request_by_what_is_left_of_the_budget(hanging, settings):
    settings.SYNC_TIME_BUDGET_SECONDS = 0.5  # the read timeout alone is 30 s
    account = make_account("openai")

    started = time.monotonic()
    run = usage_sync(account_id=account.pk, retry_later=True)
    elapsed = time.monotonic() - started

    assert elapsed < 2.5
    assert run.status == SyncRun.Status.FAILED
    assert run.error_class == "timeout"
    assert run.error_message.startswith("Timed out waiting for localhost to answer")
    assert len(hanging.log) <= 1  # tried once; the retry is a later task


def test_a_provider_trickling_its_body_cannot_outlast_the_budget():
    """One byte every 0.2 s for 6 s: no single read times out, the budget still holds."""

    def trickle(request: Request) -> Response:
        def body():
            yield b'{"data": ['
            for _ in range(30):
                time.sleep(0.2)
                yield b" "
            yield b"]}"

        return Response(body(), content_type="application/json")

    server = HTTPServer(threaded=True)
    server.expect_request("/slow").respond_with_handler(trickle)
    server.start()
    try:
        started = time.monotonic()
        with pytest.raises(ProviderError) as info:
            http.get_json(
                requests.Session(), server.url_for("/slow"), budget=Budget(seconds=1, max_tries=1)
            )
        elapsed = time.monotonic() - started
    finally:
        time.sleep(0.1)
        server.clear()
        server.stop()

    assert elapsed < 2.5
    assert info.value.error_class == "timeout"
    assert "time budget (1 s) ran out" in info.value.detail


def test_it_makes_no_request_once_the_budget_is_used_up(httpserver):
    now = [100.0]
    budget = Budget(seconds=10, clock=lambda: now[0])
    now[0] = 110.0

    with pytest.raises(ProviderError) as info:
        http.get_json(requests.Session(), httpserver.url_for("/x"), budget=budget)

    assert info.value.error_class == "timeout"
    assert info.value.message == "Gave up: the sync's time budget (10 s) is used up"
    assert len(httpserver.log) == 0


def test_it_does_not_wait_for_a_retry_that_would_overrun_the_budget(httpserver):
    httpserver.expect_request("/x").respond_with_json({"error": "busy"}, status=429)
    sleeps: list[float] = []
    budget = Budget(seconds=5)  # the first backoff (1 to 2 s) fits, Retry-After 60 does not

    httpserver.clear()
    httpserver.expect_request("/x").respond_with_json(
        {"error": "busy"}, status=429, headers={"Retry-After": "60"}
    )
    with pytest.raises(ProviderError) as info:
        http.get_json(
            requests.Session(), httpserver.url_for("/x"), sleep=sleeps.append, budget=budget
        )

    assert info.value.error_class == "rate_limited"
    assert info.value.retry_after == 60
    assert sleeps == []
    assert len(httpserver.log) == 1


def test_budget_max_tries_caps_the_tries(httpserver):
    httpserver.expect_request("/x").respond_with_json({"error": "down"}, status=500)
    sleeps: list[float] = []

    with pytest.raises(ProviderError) as info:
        http.get_json(
            requests.Session(),
            httpserver.url_for("/x"),
            sleep=sleeps.append,
            budget=Budget(max_tries=1),
        )

    assert info.value.error_class == "server_error"
    assert (len(httpserver.log), sleeps) == (1, [])


def test_the_budget_renews_the_heartbeat_before_each_request(server, monkeypatch):
    """Time moves 10 s per served page; the lease is renewed as the sync goes."""
    from usage.services import sync as sync_service

    beats: list[datetime] = []
    renew = sync_service.sync_run_heartbeat

    def recording(*, run_id, at=None):
        beats.append(at or datetime.now(UTC))
        return renew(run_id=run_id, at=at)

    monkeypatch.setattr(sync_service, "sync_run_heartbeat", recording)
    account = make_account("anthropic")
    with time_machine.travel(NOW, tick=False) as traveller:
        served: list[datetime] = []

        def costs(request: Request) -> Response:
            served.append(datetime.now(UTC))
            traveller.shift(10)
            page = (
                "cost_report_page2.json" if request.args.get("page") else "cost_report_page1.json"
            )
            return json_response(fixture("anthropic", page))

        serve_anthropic(server)
        server.clear()
        server.expect_request(ANTHROPIC_COSTS).respond_with_handler(costs)
        server.expect_request("/v1/organizations/usage_report/messages").respond_with_data(
            fixture("anthropic", "usage_messages.json"), content_type="application/json"
        )
        run = usage_sync(account_id=account.pk)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error_message
    # Claimed at 12:00:00; each cost page moves time 10 s: renewed before page 2 (12:00:10),
    # before the usage call (12:00:20) and again as the write begins (still 12:00:20).
    assert served == [NOW, NOW + timedelta(seconds=10)]
    # Page 1 needs none (claimed that instant; at most one renewal per 5 s).
    assert beats == [NOW + timedelta(seconds=s) for s in (10, 20, 20)]
    assert run.started_at == NOW
    assert run.heartbeat_at == NOW + timedelta(seconds=20)


# --- retries on later tasks ---


def test_retry_delays_double_honour_retry_after_and_are_capped(settings):
    settings.SYNC_RETRY_BASE_SECONDS = 60
    assert [sync_retry_delay(attempt=n) for n in (1, 2, 3)] == [60, 120, 240]
    assert sync_retry_delay(attempt=1, retry_after=300) == 300  # the provider asked for more
    assert sync_retry_delay(attempt=1, retry_after=5) == 60
    assert sync_retry_delay(attempt=10) == 3600  # 60 × 2^9 capped at an hour


@time_machine.travel(NOW, tick=False)
def test_a_task_tries_once_and_schedules_a_later_retry(server):
    server.expect_request(OPENAI_COSTS).respond_with_json({"error": "down"}, status=500)
    account = make_account("openai")

    outcome = sync_account(account.pk)

    run = SyncRun.objects.get(account=account)
    assert outcome == f"account {account.pk}: failed (server_error)"
    assert (run.status, run.error_class, run.attempt) == ("failed", "server_error", 1)
    assert len(requests_to(server, OPENAI_COSTS)) == 1  # no retry inside the worker
    schedule = retry_schedule(run)
    assert schedule.func == "usage.tasks.sync_account"
    assert schedule.schedule_type == Schedule.ONCE
    assert schedule.next_run == NOW + timedelta(seconds=60)
    assert run.next_retry_at == NOW + timedelta(seconds=60)
    assert eval(schedule.args) == (account.pk,)  # noqa: S307 - django-q2 stores repr()
    assert eval(schedule.kwargs) == {"days": 30, "attempt": 2, "retry_of": run.pk}  # noqa: S307

    # The same task delivered again does not schedule a second retry.
    SyncRun.objects.filter(pk=run.pk).update(status=SyncRun.Status.QUEUED)
    sync_account(account.pk, run.pk)
    assert Schedule.objects.count() == 1


@time_machine.travel(NOW, tick=False)
def test_a_failed_run_is_never_stored_without_its_retry(server, monkeypatch):
    # The failure and its retry schedule are one transaction: a worker dying between them
    # (here: the schedule's write failing) leaves the run as it was - running, so its lease
    # runs out and it is marked stale and synced again - never "failed" with no retry coming.
    server.expect_request(OPENAI_COSTS).respond_with_json({"error": "down"}, status=500)
    account = make_account("openai")

    def worker_dies(*args, **kwargs):
        raise SystemExit("worker killed")

    monkeypatch.setattr("django_q.tasks.schedule", worker_dies)

    with pytest.raises(SystemExit):
        sync_account(account.pk)

    run = SyncRun.objects.get(account=account)
    assert (run.status, run.next_retry_at) == ("running", None)
    assert not Schedule.objects.filter(name=f"sync-retry-run-{run.pk}").exists()


@time_machine.travel(NOW, tick=False)
def test_the_retry_task_syncs_again_and_succeeds(server):
    server.expect_request(OPENAI_COSTS).respond_with_json({"error": "down"}, status=500)
    account = make_account("openai")
    sync_account(account.pk)
    failed = SyncRun.objects.get(account=account)
    server.clear()
    serve_openai(server)

    outcome = sync_account(account.pk, **eval(retry_schedule(failed).kwargs))  # noqa: S307

    retry = SyncRun.objects.exclude(pk=failed.pk).get(account=account)
    assert outcome == f"account {account.pk}: succeeded"
    assert (retry.trigger, retry.attempt, retry.status) == ("retry", 2, "succeeded")
    assert (retry.window_start, retry.window_end) == (failed.window_start, failed.window_end)
    assert record_total(account) == OPENAI_TOTAL  # $15.531920
    account.refresh_from_db()
    assert (account.last_sync_status, account.last_sync_error) == (SyncStatus.SUCCEEDED, "")


@time_machine.travel(NOW, tick=False)
def test_it_backs_off_and_stops_after_the_last_attempt(server):
    server.expect_request(OPENAI_COSTS).respond_with_json({"error": "down"}, status=503)
    account = make_account("openai")

    sync_account(account.pk)
    for expected_attempt in (2, 3, 4):
        previous = SyncRun.objects.filter(account=account).first()
        kwargs = eval(retry_schedule(previous).kwargs)  # noqa: S307
        assert kwargs["attempt"] == expected_attempt
        sync_account(account.pk, **kwargs)

    runs = list(SyncRun.objects.filter(account=account).order_by("pk"))
    assert [run.attempt for run in runs] == [1, 2, 3, 4]
    # 60, 120, 240 s after each failure; none after the 4th (SYNC_MAX_ATTEMPTS)
    delays = [
        (run.next_retry_at - NOW).total_seconds() if run.next_retry_at else None for run in runs
    ]
    assert delays == [60, 120, 240, None]
    assert Schedule.objects.count() == 3
    assert len(requests_to(server, OPENAI_COSTS)) == 4


@time_machine.travel(NOW, tick=False)
def test_a_rate_limit_retries_no_sooner_than_retry_after(server):
    server.expect_request(OPENAI_COSTS).respond_with_json(
        {"error": "slow down"}, status=429, headers={"Retry-After": "300"}
    )
    account = make_account("openai")

    sync_account(account.pk)

    run = SyncRun.objects.get(account=account)
    assert run.error_class == "rate_limited"
    assert retry_schedule(run).next_run == NOW + timedelta(seconds=300)


@time_machine.travel(NOW, tick=False)
def test_a_rejected_key_is_not_retried(server):
    server.expect_request(OPENAI_COSTS).respond_with_json({"error": "no"}, status=401)
    account = make_account("openai")

    sync_account(account.pk)

    run = SyncRun.objects.get(account=account)
    assert (run.error_class, run.next_retry_at) == ("auth", None)
    assert Schedule.objects.count() == 0


@time_machine.travel(NOW, tick=False)
def test_a_retry_made_pointless_by_a_later_sync_does_nothing(server):
    server.expect_request(OPENAI_COSTS).respond_with_json({"error": "down"}, status=500)
    account = make_account("openai")
    sync_account(account.pk)
    failed = SyncRun.objects.get(account=account)
    server.clear()
    serve_openai(server)
    sync_account(account.pk)  # the hourly sync came first and succeeded

    outcome = sync_account(account.pk, **eval(retry_schedule(failed).kwargs))  # noqa: S307

    assert outcome == f"account {account.pk}: already handled"
    assert SyncRun.objects.filter(account=account).count() == 2


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (401, "auth"),
        (403, "auth"),
        (404, "config"),
        (400, "config"),
        (429, "rate_limited"),
        (500, "server_error"),
        (503, "server_error"),
    ],
)
@time_machine.travel(NOW, tick=False)
def test_each_failure_is_stored_with_its_class(server, status, error_class):
    server.expect_request(OPENAI_COSTS).respond_with_json({"error": "x"}, status=status)
    account = make_account("openai")

    run = usage_sync(account_id=account.pk, retry_later=True)

    assert run.error_class == error_class


@time_machine.travel(NOW, tick=False)
def test_a_malformed_body_and_an_unreachable_host_have_their_classes(server, settings):
    server.expect_request(OPENAI_COSTS).respond_with_data("<html>", status=200)
    account = make_account("openai")
    assert usage_sync(account_id=account.pk, retry_later=True).error_class == "malformed"

    settings.OPENAI_BASE_URL = "http://127.0.0.1:9"  # discard port: nothing listens
    run = usage_sync(account_id=account.pk, retry_later=True)
    assert run.error_class == "network"
    assert run.error_summary == "Couldn't reach 127.0.0.1: connection refused"
    assert "Detail:" in run.error_details


def test_dns_failures_read_as_one_human_line():
    exc = requests.ConnectionError(
        "HTTPSConnectionPool(host='api.openai.com', port=443): Max retries exceeded with url: "
        '/v1/x (Caused by NameResolutionError("<urllib3.connection.HTTPSConnection object>: '
        "Failed to resolve 'api.openai.com'\"))"
    )

    error = http._network_error(exc, "https://api.openai.com/v1/x")

    assert error.message == "Couldn't reach api.openai.com: DNS lookup failed"
    assert error.error_class == "network"
    assert "NameResolutionError" in error.detail


# --- stale runs: the heartbeat lease ---


def running_run(account, *, heartbeat: datetime) -> SyncRun:
    return SyncRun.objects.create(
        account=account,
        window_start=date(2026, 8, 1),
        window_end=date(2026, 8, 4),
        status=SyncRun.Status.RUNNING,
        started_at=heartbeat,
        heartbeat_at=heartbeat,
    )


@time_machine.travel(NOW, tick=False)
def test_sync_now_restarts_an_account_whose_run_lost_its_worker(client, settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    settings.SYNC_LEASE_SECONDS = 120
    account = make_account("openai")
    dead = running_run(account, heartbeat=NOW - timedelta(seconds=121))
    client.force_login(account.workspace.personal_for)

    status = client.get(reverse("account-sync-status", args=[account.pk]), **HTMX)
    assert "“Sync now” starts again" in status.content.decode()
    response = client.post(reverse("account-sync", args=[account.pk]), **HTMX)

    dead.refresh_from_db()
    assert (dead.status, dead.error_class) == ("failed", "stale")
    new = SyncRun.objects.exclude(pk=dead.pk).get(account=account)
    assert new.status == SyncRun.Status.QUEUED
    assert f"?run={new.pk}" in response.content.decode()


@time_machine.travel(NOW, tick=False)
def test_sync_now_waits_for_a_run_that_is_alive(client, settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    settings.SYNC_LEASE_SECONDS = 120
    account = make_account("openai")
    alive = running_run(account, heartbeat=NOW - timedelta(seconds=100))
    client.force_login(account.workspace.personal_for)

    client.post(reverse("account-sync", args=[account.pk]), **HTMX)

    assert list(SyncRun.objects.filter(account=account)) == [alive]
    alive.refresh_from_db()
    assert alive.status == SyncRun.Status.RUNNING


@time_machine.travel(NOW, tick=False)
def test_a_run_marked_stale_cannot_renew_its_lease_or_write(server):
    serve_openai(server)
    account = make_account("openai")
    old = running_run(account, heartbeat=NOW - timedelta(hours=1))
    new = usage_sync(account_id=account.pk)  # claims the account, marks the old run stale

    assert new.status == SyncRun.Status.SUCCEEDED
    assert sync_run_heartbeat(run_id=old.pk) is False
    old.refresh_from_db()
    assert (old.status, old.error_class) == ("failed", "stale")


# --- the API ---


@time_machine.travel(NOW, tick=False)
def test_the_sync_runs_api_gives_the_error_class(server, client):
    server.expect_request(OPENAI_COSTS).respond_with_json({"error": "down"}, status=500)
    account = make_account("openai")
    sync_account(account.pk)
    client.force_login(account.workspace.personal_for)

    body = client.get(reverse("api-sync-runs", args=[account.pk])).json()

    (run,) = body["results"]
    assert run["error_class"] == "server_error"
    assert run["error_message"].startswith("provider error (500): down")
    assert (run["attempt"], run["stale"]) == (1, False)
    assert run["next_retry_at"] == "2026-08-03T12:01:00Z"


def test_the_sync_runs_api_hides_another_users_account(client):
    from accounts.tests.factories import UserFactory

    account = make_account("openai")
    client.force_login(UserFactory())

    assert client.get(reverse("api-sync-runs", args=[account.pk])).status_code == 404
