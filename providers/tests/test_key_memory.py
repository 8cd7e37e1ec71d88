"""Ingest keys remembered between requests (providers/key_memory.py).

On PostgreSQL a process remembers keys while it hears of every change (LISTEN/NOTIFY from
triggers); the tests here change keys the way another process would, by committed UPDATEs
that send no Django signal, so only the triggers can tell the memory.
"""

from __future__ import annotations

import threading
import time

import pytest
import requests
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from providers import key_memory
from providers.models import IngestKey, ProviderAccount
from providers.services import ingest_key_create
from providers.tests.factories import AccountFactory, provider
from providers.tests.test_proxy import (  # noqa: F401 - fixtures are used by name
    MESSAGES,
    connect,
    received,
    upstream_fixture,
)

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="LISTEN/NOTIFY exists only on PostgreSQL"
)
# Committed writes, as another process makes them; serialized_rollback keeps the catalogue.
transactional = pytest.mark.django_db(transaction=True, serialized_rollback=True)

PROXY_LOOKUP = 0  # the proxy's fallback_max_age: never remember without a listener


def _new_key() -> tuple[str, IngestKey]:
    account = AccountFactory(provider=provider("openai"))
    return ingest_key_create(account=account, name="t")


def _lookup_queries(raw: str, fallback_max_age: float = PROXY_LOOKUP) -> tuple:
    with CaptureQueriesContext(connection) as queries:
        key = key_memory.ingest_key_remembered(raw=raw, fallback_max_age=fallback_max_age)
    return key, len(queries)


def _wait_for(predicate, seconds: float = 3.0) -> float:
    """Seconds until predicate() held; fails the test after `seconds`."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.002)
    raise AssertionError(f"not within {seconds} s")


@pytest.fixture
def listening(settings):
    settings.DATABASE_LISTEN = True
    key_memory.stop_listening()  # each test starts its own listener on its own data
    assert key_memory.listening()
    yield
    key_memory.stop_listening()


@postgresql_only
@transactional
def test_a_key_is_read_once_while_the_process_listens(listening):
    raw, stored = _new_key()
    key, first = _lookup_queries(raw)
    again, second = _lookup_queries(raw)
    assert key.pk == again.pk == stored.pk
    assert key.account.provider.slug == "openai"
    assert (first, second) == (1, 0)


@postgresql_only
@transactional
def test_a_key_revoked_by_another_process_is_refused_within_moments(listening):
    raw, stored = _new_key()
    assert _lookup_queries(raw)[0] is not None
    assert _lookup_queries(raw)[1] == 0  # remembered

    # An UPDATE sends no Django signal: only the trigger's notification can tell us.
    IngestKey.objects.filter(pk=stored.pk).update(revoked_at=timezone.now())

    lag = _wait_for(lambda: key_memory.ingest_key_remembered(raw=raw, fallback_max_age=0) is None)
    assert lag < 1.0


@postgresql_only
@transactional
def test_a_deactivated_account_is_refused_within_moments(listening):
    raw, stored = _new_key()
    assert _lookup_queries(raw)[0] is not None
    ProviderAccount.objects.filter(pk=stored.account_id).update(is_active=False)
    _wait_for(lambda: key_memory.ingest_key_remembered(raw=raw, fallback_max_age=0) is None)


@postgresql_only
@transactional
def test_the_triggers_notify_changes_but_not_last_used_at():
    raw, stored = _new_key()
    # A connection like the listener's own, listening on the channel the triggers notify.
    with key_memory._listen_connection() as watcher:

        def heard() -> list[str]:
            return [n.payload for n in watcher.notifies(timeout=3, stop_after=1)]

        IngestKey.objects.filter(pk=stored.pk).update(last_used_at=timezone.now())
        # Written once a minute per key in use: not a change worth forgetting keys for; nor
        # is what a sync run writes on the account.
        ProviderAccount.objects.filter(pk=stored.account_id).update(
            last_sync_at=timezone.now(), last_sync_status="succeeded", needs_attention=True
        )
        assert list(watcher.notifies(timeout=0.3)) == []

        IngestKey.objects.filter(pk=stored.pk).update(name="renamed")
        assert heard() == ["providers_ingestkey"]
        ProviderAccount.objects.filter(pk=stored.account_id).update(monthly_budget=5)
        assert heard() == ["providers_provideraccount"]
        IngestKey.objects.filter(pk=stored.pk).delete()
        assert heard() == ["providers_ingestkey"]


@postgresql_only
@transactional
def test_a_lost_listener_stops_the_memory_until_a_new_one_is_up(listening):
    raw, _ = _new_key()
    assert _lookup_queries(raw)[0] is not None
    old_pid = key_memory._memory.backend_pid
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [old_pid])
    _wait_for(lambda: not key_memory._memory.listener.is_alive())
    assert key_memory._memory.entries == {}  # what it vouched for is forgotten
    key_memory._memory.retry_at = 0.0  # restarts are spaced out by RETRY_SECONDS

    key, queries = _lookup_queries(raw)  # starts a new listener, then reads the key again
    assert key is not None and queries == 1
    assert key_memory._memory.backend_pid not in (None, old_pid)
    assert _lookup_queries(raw)[1] == 0


@postgresql_only
@transactional
def test_without_its_triggers_the_memory_is_off_rather_than_stale(listening, monkeypatch):
    # A database not yet migrated, or with a trigger disabled, would never tell us of some
    # changes: the listener's pings stop coming back and the memory is no longer used.
    monkeypatch.setattr(key_memory, "STALE_SECONDS", 1.5)
    raw, _ = _new_key()
    assert _lookup_queries(raw)[0] is not None
    assert _lookup_queries(raw)[1] == 0
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE providers_provider DISABLE TRIGGER ct_provider_changed")
    try:
        _wait_for(lambda: not key_memory.listening(), seconds=5)
        assert [_lookup_queries(raw)[1] for _ in range(2)] == [1, 1]  # looked up every time
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE providers_provider ENABLE TRIGGER ct_provider_changed")
    _wait_for(key_memory.listening, seconds=5)  # its pings come back: trusted again


def test_a_listener_gone_quiet_is_not_trusted(settings):
    settings.DATABASE_LISTEN = False  # no new listener may stand in for the quiet one
    memory = key_memory._Memory()
    quiet = threading.Event()
    memory.listener = threading.Thread(target=quiet.wait, daemon=True)
    memory.listener.start()
    memory.heard_at = time.monotonic() - key_memory.STALE_SECONDS - 1
    memory.entries["digest"] = (time.monotonic(), True, object())
    try:
        assert memory.listening() is False
        assert memory.entries == {}
    finally:
        quiet.set()


@pytest.mark.django_db
def test_a_key_changed_during_its_lookup_is_not_remembered(monkeypatch):
    raw, _ = _new_key()
    real_lookup = key_memory.ingest_key_lookup

    def lookup_raced_by_a_change(*, raw):
        key = real_lookup(raw=raw)
        key_memory.forget_all()  # what a notification arriving now does
        return key

    monkeypatch.setattr(key_memory, "ingest_key_lookup", lookup_raced_by_a_change)
    assert key_memory.ingest_key_remembered(raw=raw, fallback_max_age=10) is not None
    assert key_memory._memory.entries == {}


@pytest.mark.django_db
def test_without_a_listener_the_proxy_looks_every_key_up(settings):
    settings.DATABASE_LISTEN = False
    key_memory.stop_listening()
    raw, _ = _new_key()
    assert [_lookup_queries(raw)[1] for _ in range(3)] == [1, 1, 1]
    # Ingestion, whose write checks the key again, may remember it for a few seconds.
    assert [_lookup_queries(raw, fallback_max_age=10)[1] for _ in range(2)] == [1, 0]


@pytest.mark.django_db
def test_a_change_made_in_this_process_is_forgotten_at_once():
    raw, stored = _new_key()
    assert key_memory.ingest_key_remembered(raw=raw, fallback_max_age=10) is not None
    stored.revoked_at = timezone.now()
    stored.save()  # inside the test's transaction: no notification until a commit
    assert key_memory.ingest_key_remembered(raw=raw, fallback_max_age=10) is None


@transactional
def test_the_proxy_refuses_a_key_revoked_by_another_process(live_server, upstream, settings):
    settings.DATABASE_LISTEN = True
    upstream.expect_request("/v1/chat/completions").respond_with_json(
        {"id": "c1", "model": "gpt-4o-mini", "choices": [], "usage": {"prompt_tokens": 1}}
    )
    _, raw = connect("openai")
    url = f"{live_server.url}/proxy/openai/v1/chat/completions"
    body = {"model": "gpt-4o-mini", "messages": MESSAGES}

    def call() -> int:
        headers = {"Authorization": f"Bearer {raw}"}
        return requests.post(url, json=body, headers=headers, timeout=10).status_code

    assert [call(), call()] == [200, 200]
    IngestKey.objects.filter(account__provider__slug="openai").update(revoked_at=timezone.now())
    lag = _wait_for(lambda: call() == 401)
    forwarded = len(received(upstream, "/v1/chat/completions"))
    assert lag < 1.0
    assert call() == 401
    assert len(received(upstream, "/v1/chat/completions")) == forwarded  # nothing more went on
    key_memory.stop_listening()
