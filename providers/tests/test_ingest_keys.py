"""Ingest keys: created in the UI and API, shown once, stored hashed, revocable, owner only."""

from __future__ import annotations

import re

import pytest
import time_machine

from accounts.tests.factories import UserFactory
from providers.models import IngestKey, hash_ingest_key
from providers.selectors import ingest_key_lookup
from providers.services import ingest_key_create
from providers.tests.factories import AccountFactory

pytestmark = pytest.mark.django_db

KEY_RE = re.compile(r"cti_[A-Za-z0-9_-]{40,}")


@pytest.fixture
def account():
    return AccountFactory(name="Prod OpenAI")


def test_it_creates_a_key_in_the_ui_and_shows_it_once(client, account):
    client.force_login(account.workspace.personal_for)
    page = client.get(f"/accounts/{account.pk}/ingest-keys/")
    assert page.status_code == 200
    assert b"No ingest keys yet" in page.content
    with time_machine.travel("2026-11-15 12:00:00Z", tick=False):
        response = client.post(f"/accounts/{account.pk}/ingest-keys/", {"name": "billing-svc"})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    shown = KEY_RE.findall(response.content.decode())
    assert shown and len(set(shown)) == 1
    raw = shown[0]
    # With the OpenTelemetry exporter's settings for it.
    assert (
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://testserver/v1/traces"
        in response.content.decode()
    )
    assert f"Authorization=Bearer%20{raw}" in response.content.decode()
    key = IngestKey.objects.get(account=account)
    assert key.digest == hash_ingest_key(raw) and raw not in key.digest
    assert (key.name, key.hint) == ("billing-svc", raw[:10])
    # Listed afterwards with hint, creation time and "never" used, but never the key again.
    again = client.get(f"/accounts/{account.pk}/ingest-keys/").content.decode()
    assert raw not in again
    assert key.hint in again and "billing-svc" in again and "2026-11-15 12:00" in again
    assert "never" in again


def test_it_links_the_page_from_the_account_list(client, account):
    client.force_login(account.workspace.personal_for)
    page = client.get("/accounts/").content.decode()
    assert f'href="/accounts/{account.pk}/ingest-keys/"' in page


def test_it_revokes_a_key_in_the_ui(client, account):
    raw, key = ingest_key_create(account=account)
    client.force_login(account.workspace.personal_for)
    response = client.post(f"/accounts/{account.pk}/ingest-keys/{key.pk}/revoke/")
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert ingest_key_lookup(raw=raw) is None
    page = client.get(f"/accounts/{account.pk}/ingest-keys/").content.decode()
    assert "revoked" in page
    assert client.get(f"/accounts/{account.pk}/ingest-keys/{key.pk}/revoke/").status_code == 405


def test_it_answers_404_for_another_users_account_or_key(client, api_client, account):
    raw, key = ingest_key_create(account=account, name="theirs")
    stranger = UserFactory()
    own = AccountFactory(workspace=stranger.personal_workspace)
    client.force_login(stranger)
    api_client.force_authenticate(stranger)
    assert client.get(f"/accounts/{account.pk}/ingest-keys/").status_code == 404
    assert client.post(f"/accounts/{account.pk}/ingest-keys/", {"name": "x"}).status_code == 404
    assert client.post(f"/accounts/{account.pk}/ingest-keys/{key.pk}/revoke/").status_code == 404
    # Their key through my own account's URL is not mine either.
    assert client.post(f"/accounts/{own.pk}/ingest-keys/{key.pk}/revoke/").status_code == 404
    assert api_client.get(f"/api/accounts/{account.pk}/ingest-keys").status_code == 404
    assert api_client.post(f"/api/accounts/{account.pk}/ingest-keys", {}).status_code == 404
    url = f"/api/accounts/{own.pk}/ingest-keys/{key.pk}/revoke"
    assert api_client.post(url).status_code == 404
    url = f"/api/accounts/{account.pk}/ingest-keys/{key.pk}/revoke"
    assert api_client.post(url).status_code == 404
    key.refresh_from_db()
    assert key.revoked_at is None
    assert IngestKey.objects.filter(account=account).count() == 1


def test_it_requires_login(client, api_client, account):
    assert client.get(f"/accounts/{account.pk}/ingest-keys/").status_code == 302
    assert api_client.get(f"/api/accounts/{account.pk}/ingest-keys").status_code in (401, 403)


def test_it_creates_lists_and_revokes_keys_through_the_api(api_client, account):
    api_client.force_authenticate(account.workspace.personal_for)
    url = f"/api/accounts/{account.pk}/ingest-keys"
    created = api_client.post(url, {"name": "ci"}, format="json")
    assert created.status_code == 201
    body = created.json()
    assert KEY_RE.fullmatch(body["key"])
    assert body["hint"] == body["key"][:10] and body["is_active"] is True
    stored = IngestKey.objects.get(pk=body["id"])
    assert stored.digest == hash_ingest_key(body["key"])
    listed = api_client.get(url).json()
    assert [k["id"] for k in listed] == [body["id"]]
    assert "key" not in listed[0] and "digest" not in listed[0]
    assert body["key"] not in api_client.get(url).content.decode()
    revoked = api_client.post(f"{url}/{body['id']}/revoke")
    assert revoked.status_code == 200 and revoked.json()["is_active"] is False
    first_revocation = revoked.json()["revoked_at"]
    # Revoking again changes nothing.
    assert api_client.post(f"{url}/{body['id']}/revoke").json()["revoked_at"] == first_revocation
    assert ingest_key_lookup(raw=body["key"]) is None


def test_it_validates_the_key_name(api_client, account):
    api_client.force_authenticate(account.workspace.personal_for)
    response = api_client.post(
        f"/api/accounts/{account.pk}/ingest-keys", {"name": "x" * 101}, format="json"
    )
    assert response.status_code == 400 and "name" in response.json()
    assert IngestKey.objects.count() == 0


def test_it_finds_only_active_keys_by_plaintext(account):
    raw, key = ingest_key_create(account=account)
    assert ingest_key_lookup(raw=raw) == key
    assert ingest_key_lookup(raw=raw + "x") is None
    assert ingest_key_lookup(raw=key.digest) is None  # the stored digest is not a key


def test_it_loads_the_account_and_provider_with_the_key_in_one_query(django_assert_num_queries):
    account = AccountFactory(
        keys={"api_key": "sk-upstream-000000000001"}, config={"compute_rate_per_hour": "0.36"}
    )
    raw, key = ingest_key_create(account=account)
    with django_assert_num_queries(1):
        found = ingest_key_lookup(raw=raw)
        assert found.pk == key.pk and found.account.pk == account.pk
        assert found.account.provider.slug == "openai"
        assert found.account.config == {"compute_rate_per_hour": "0.36"}
        assert found.account.api_key.reveal() == "sk-upstream-000000000001"
        assert found.created_at == key.created_at and found.revoked_at is None
    account.is_active = False
    account.save()
    assert ingest_key_lookup(raw=raw) is None  # an inactive account takes no usage


def test_a_key_in_use_is_marked_at_most_once_a_minute(django_assert_num_queries):
    from datetime import UTC, datetime

    from providers.services import ingest_key_mark_used

    _, key = ingest_key_create(account=AccountFactory(), name="t")
    start = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        with django_assert_num_queries(1):
            ingest_key_mark_used(key=key)
    assert key.last_used_at == start  # the caller's (perhaps remembered) copy too
    with time_machine.travel(start.replace(second=59), tick=False):
        with django_assert_num_queries(0):
            ingest_key_mark_used(key=key)
    with time_machine.travel(start.replace(minute=1, second=1), tick=False):
        with django_assert_num_queries(1):
            ingest_key_mark_used(key=key)
    key.refresh_from_db()
    assert key.last_used_at == start.replace(minute=1, second=1)
