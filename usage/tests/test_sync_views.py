"""Sync now (HTMX), the live status fragment, the sync history page."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import time_machine
from django.urls import reverse
from django_q.models import OrmQ

from accounts.tests.factories import UserFactory
from providers.models import SyncStatus
from providers.registry import ADAPTERS, get_adapter_class
from providers.tests.factories import AccountFactory, provider
from usage.models import SyncRun
from usage.tasks import sync_account
from usage.tests.test_sync import (
    OPENAI_TOTAL,
    make_account,
    point_settings_at,
    record_total,
    serve_openai,
)

NOW = "2026-08-03 12:00:00+00:00"
HTMX = {"HTTP_HX_REQUEST": "true"}
POLL = 'hx-trigger="every 1s"'

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def owner_client(client):
    def login(account):
        client.force_login(account.workspace.personal_for)
        return client

    return login


@pytest.fixture(autouse=True)
def queue_for_real(settings):
    # Sync now must enqueue for the cluster, not run inline in the request.
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}


def test_it_queues_a_run_and_polls_until_it_is_done(owner_client, settings, httpserver):
    point_settings_at(settings, httpserver)
    serve_openai(httpserver)
    account = make_account("openai")
    client = owner_client(account)

    response = client.post(reverse("account-sync", args=[account.pk]), **HTMX)

    assert response.status_code == 200
    run = SyncRun.objects.get(account=account)
    assert (run.status, run.trigger) == (SyncRun.Status.QUEUED, "manual")
    html = response.content.decode()
    assert f'id="sync-{account.pk}"' in html
    assert POLL in html
    status_url = reverse("account-sync-status", args=[account.pk]) + f"?run={run.pk}"
    assert f'hx-get="{status_url}"' in html
    assert "Queued" in html
    # One task handed to the cluster, for this account and run.
    (task,) = OrmQ.objects.all()
    assert task.func() == "usage.tasks.sync_account"
    assert task.args() == (account.pk, run.pk)
    assert len(httpserver.log) == 0  # nothing fetched inside the request

    SyncRun.objects.filter(pk=run.pk).update(
        status=SyncRun.Status.RUNNING, started_at=datetime(2026, 8, 3, 12, 0, tzinfo=UTC)
    )
    running = client.get(status_url, **HTMX).content.decode()
    assert "Running" in running
    assert POLL in running

    SyncRun.objects.filter(pk=run.pk).update(status=SyncRun.Status.QUEUED, started_at=None)
    assert sync_account(*task.args()) == f"account {account.pk}: succeeded"
    done = client.get(status_url, **HTMX).content.decode()
    assert "Succeeded" in done
    assert "fetched 7 · created 7 · updated 0" in done
    assert "hx-trigger" not in done  # polling stops
    assert record_total(account) == OPENAI_TOTAL  # $15.531920


def test_it_shows_the_error_of_a_failed_run(owner_client):
    account = make_account("anthropic")
    run = SyncRun.objects.create(
        account=account,
        window_start=date(2026, 8, 1),
        window_end=date(2026, 8, 4),
        status=SyncRun.Status.FAILED,
        finished_at=datetime(2026, 8, 3, 11, 0, tzinfo=UTC),
        error_message="key rejected (401): invalid x-api-key",
    )
    url = reverse("account-sync-status", args=[account.pk]) + f"?run={run.pk}"

    html = owner_client(account).get(url, **HTMX).content.decode()

    assert "Failed" in html
    assert "key rejected (401): invalid x-api-key" in html
    assert "hx-trigger" not in html


def test_it_stops_polling_a_run_whose_worker_died(owner_client):
    account = make_account("openai")
    SyncRun.objects.create(
        account=account,
        window_start=date(2026, 8, 1),
        window_end=date(2026, 8, 4),
        status=SyncRun.Status.RUNNING,
        started_at=datetime(2026, 8, 3, 10, 0, tzinfo=UTC),
    )

    html = owner_client(account).get(reverse("account-sync-status", args=[account.pk]), **HTMX)

    assert "the worker stopped" in html.content.decode()
    assert "hx-trigger" not in html.content.decode()


def test_it_does_not_queue_twice_while_a_run_is_pending(owner_client):
    account = make_account("openai")
    client = owner_client(account)

    client.post(reverse("account-sync", args=[account.pk]), **HTMX)
    again = client.post(reverse("account-sync", args=[account.pk]), **HTMX)

    assert again.status_code == 200
    assert SyncRun.objects.filter(account=account).count() == 1
    assert OrmQ.objects.count() == 1


def test_it_redirects_a_plain_form_post(owner_client):
    account = make_account("openai")

    response = owner_client(account).post(reverse("account-sync", args=[account.pk]))

    assert response.status_code == 302
    assert response.url == reverse("account-list")
    assert SyncRun.objects.filter(account=account, status=SyncRun.Status.QUEUED).count() == 1


def test_it_hides_another_users_account(client):
    account = make_account("openai")
    run = SyncRun.objects.create(
        account=account, window_start=date(2026, 8, 1), window_end=date(2026, 8, 4)
    )
    client.force_login(UserFactory())

    assert client.post(reverse("account-sync", args=[account.pk]), **HTMX).status_code == 404
    status_url = reverse("account-sync-status", args=[account.pk]) + f"?run={run.pk}"
    assert client.get(status_url, **HTMX).status_code == 404
    assert client.get(reverse("account-sync-history", args=[account.pk])).status_code == 404
    assert SyncRun.objects.count() == 1
    assert OrmQ.objects.count() == 0


def test_it_does_not_show_a_run_of_another_account(owner_client):
    mine = make_account("openai")
    theirs = make_account("openai")
    SyncRun.objects.create(
        account=theirs,
        window_start=date(2026, 8, 1),
        window_end=date(2026, 8, 4),
        error_message="their secret failure",
        status=SyncRun.Status.FAILED,
    )
    other_run = SyncRun.objects.get(account=theirs)
    url = reverse("account-sync-status", args=[mine.pk]) + f"?run={other_run.pk}"

    html = owner_client(mine).get(url, **HTMX).content.decode()

    assert "their secret failure" not in html


def test_it_requires_login(client):
    account = make_account("openai")

    response = client.post(reverse("account-sync", args=[account.pk]))

    assert response.status_code == 302
    assert "/login" in response.url
    assert SyncRun.objects.count() == 0


def test_it_refuses_to_sync_a_per_request_provider(owner_client):
    account = AccountFactory(provider=provider("groq"), keys={"api_key": "gsk_test_key_12345"})

    response = owner_client(account).post(reverse("account-sync", args=[account.pk]), **HTMX)

    assert response.status_code == 400
    assert "per-request only" in response.content.decode()
    assert SyncRun.objects.count() == 0


def test_the_accounts_page_shows_sync_status_and_buttons(owner_client):
    account = make_account("openai")
    account.last_sync_status = SyncStatus.FAILED
    account.last_sync_at = datetime(2026, 8, 3, 11, 30, tzinfo=UTC)
    account.last_sync_error = "key rejected (401): invalid key"
    account.save()
    groq = AccountFactory(workspace=account.workspace, provider=provider("groq"))

    html = owner_client(account).get(reverse("account-list")).content.decode()

    assert f'hx-post="{reverse("account-sync", args=[account.pk])}"' in html
    assert reverse("account-sync", args=[groq.pk]) not in html
    assert "per-request only" in html
    assert "key rejected (401): invalid key" in html
    assert "2026-08-03 11:30 UTC" in html
    assert POLL not in html  # nothing under way


def test_the_accounts_page_polls_a_sync_under_way(owner_client):
    account = make_account("openai", last_sync_status=SyncStatus.RUNNING)

    html = owner_client(account).get(reverse("account-list")).content.decode()

    assert POLL in html
    assert f'hx-get="{reverse("account-sync-status", args=[account.pk])}"' in html


def test_the_history_page_lists_runs(owner_client):
    account = make_account("anthropic")
    SyncRun.objects.create(
        account=account,
        window_start=date(2026, 7, 5),
        window_end=date(2026, 8, 4),
        status=SyncRun.Status.SUCCEEDED,
        fetched=7,
        created=7,
        updated=0,
    )
    SyncRun.objects.create(
        account=account,
        window_start=date(2026, 8, 1),
        window_end=date(2026, 8, 4),
        status=SyncRun.Status.FAILED,
        error_class="ProviderError",
        error_message='malformed response: not JSON\nResponse excerpt: {"data": [',
    )

    response = owner_client(account).get(reverse("account-sync-history", args=[account.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    assert html.count('<tr id="run-') == 2
    assert "2026-07-05 – 2026-08-04" in html
    assert "Response excerpt: {&quot;data&quot;: [" in html  # escaped, shown in full
    assert "Succeeded" in html and "Failed" in html


def test_the_status_badges_follow_the_adapters():
    # The accounts page decides "Sync now" from the catalogue's has_official_api; the views
    # from the adapter. They must agree for every provider.
    for slug in ADAPTERS:
        assert provider(slug).has_official_api == get_adapter_class(slug).supports_sync, slug


@pytest.mark.parametrize("name", ["account-sync-status", "account-sync-history"])
def test_the_sync_pages_answer_head_as_get_and_refuse_writes(owner_client, name):
    account = AccountFactory(provider=provider("openai"))
    client = owner_client(account)
    url = reverse(name, args=[account.pk])
    get, head = client.get(url), client.head(url)
    assert (get.status_code, head.status_code, head.content) == (200, 200, b"")
    assert client.post(url).status_code == 405
