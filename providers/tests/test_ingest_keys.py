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


# --- request limits (requests_per_minute) --------------------------------------------------


def _limit_cell(html: str, key: IngestKey) -> str:
    row = re.search(rf'<tr id="ingest-key-{key.pk}">(.*?)</tr>', html, re.S)
    assert row, f"no row for key {key.pk}"
    cell = re.search(r'<td class="key-limit">(.*?)</td>', row.group(1), re.S)
    return cell.group(1)


def test_it_sets_a_request_limit_when_creating_a_key_on_the_page(client, account):
    client.force_login(account.workspace.personal_for)
    url = f"/accounts/{account.pk}/ingest-keys/"
    assert client.post(url, {"name": "limited", "requests_per_minute": "60"}).status_code == 200
    assert client.post(url, {"name": "free", "requests_per_minute": ""}).status_code == 200
    limited = IngestKey.objects.get(name="limited")
    free = IngestKey.objects.get(name="free")
    assert (limited.requests_per_minute, free.requests_per_minute) == (60, None)
    page = client.get(url).content.decode()
    assert "60/min" in _limit_cell(page, limited)
    assert "no limit" in _limit_cell(page, free)


@pytest.mark.parametrize("value", ["0", "-1", "x", "1.5", "1000001"])
def test_it_refuses_a_bad_limit_on_the_create_form(client, account, value):
    client.force_login(account.workspace.personal_for)
    response = client.post(
        f"/accounts/{account.pk}/ingest-keys/", {"name": "k", "requests_per_minute": value}
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert not KEY_RE.search(html)  # no key was made, so none is shown
    assert re.search(
        r"Ensure this value is (greater|less) than or equal to|Enter a whole number", html
    ), html
    assert IngestKey.objects.count() == 0


def test_it_changes_and_lifts_a_keys_limit_on_the_page(client, account):
    from audit.models import AuditEvent

    user = account.workspace.personal_for
    client.force_login(user)
    _, key = ingest_key_create(account=account, name="svc", created_by=user)
    url = f"/accounts/{account.pk}/ingest-keys/{key.pk}/limit/"

    response = client.post(url, {"requests_per_minute": "1200"})
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.requests_per_minute == 1200
    page = client.get(f"/accounts/{account.pk}/ingest-keys/").content.decode()
    assert "1,200/min" in _limit_cell(page, key)
    assert 'value="1200"' in _limit_cell(page, key)

    # The same value again writes nothing, not even an audit event.
    assert client.post(url, {"requests_per_minute": "1200"}).status_code == 302
    events = AuditEvent.objects.filter(object_id=str(key.pk), action="updated")
    assert [e.changes for e in events] == [{"requests_per_minute": [None, 1200]}]

    assert client.post(url, {"requests_per_minute": ""}).status_code == 302
    key.refresh_from_db()
    assert key.requests_per_minute is None
    assert "no limit" in _limit_cell(
        client.get(f"/accounts/{account.pk}/ingest-keys/").content.decode(), key
    )
    assert client.get(url).status_code == 405


@pytest.mark.parametrize("value", ["0", "-1", "x", "1000001"])
def test_it_shows_a_bad_limit_in_the_keys_row(client, account, value):
    user = account.workspace.personal_for
    client.force_login(user)
    _, key = ingest_key_create(account=account, created_by=user, requests_per_minute=60)
    response = client.post(
        f"/accounts/{account.pk}/ingest-keys/{key.pk}/limit/", {"requests_per_minute": value}
    )
    assert response.status_code == 200
    cell = _limit_cell(response.content.decode(), key)
    assert '<span class="error">' in cell, cell
    assert f'value="{value}"' in cell  # what was typed, to correct
    key.refresh_from_db()
    assert key.requests_per_minute == 60


def test_only_who_may_revoke_a_key_sees_its_limit_form(client, account):
    from accounts.models import Membership, Role

    owner = account.workspace.personal_for
    _, owners_key = ingest_key_create(account=account, created_by=owner)
    member = UserFactory()
    Membership.objects.create(workspace=account.workspace, user=member, role=Role.MEMBER)
    _, members_key = ingest_key_create(account=account, created_by=member)
    client.force_login(member)
    switched = client.post("/workspaces/switch/", {"workspace": account.workspace.pk})
    assert switched.status_code == 302
    page = client.get(f"/accounts/{account.pk}/ingest-keys/").content.decode()
    assert "key-limit-form" in _limit_cell(page, members_key)
    assert "key-limit-form" not in _limit_cell(page, owners_key)
    response = client.post(
        f"/accounts/{account.pk}/ingest-keys/{owners_key.pk}/limit/", {"requests_per_minute": "5"}
    )
    assert response.status_code == 403
    owners_key.refresh_from_db()
    assert owners_key.requests_per_minute is None


def test_it_sets_and_changes_the_limit_through_the_api(api_client, account):
    api_client.force_authenticate(account.workspace.personal_for)
    url = f"/api/accounts/{account.pk}/ingest-keys"
    created = api_client.post(url, {"name": "ci", "requests_per_minute": 60}, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["requests_per_minute"] == 60
    key_url = f"{url}/{created.json()['id']}"

    assert api_client.get(url).json()[0]["requests_per_minute"] == 60
    changed = api_client.patch(key_url, {"requests_per_minute": 600}, format="json")
    assert changed.status_code == 200 and changed.json()["requests_per_minute"] == 600
    unchanged = api_client.patch(key_url, {}, format="json")
    assert unchanged.status_code == 200 and unchanged.json()["requests_per_minute"] == 600
    lifted = api_client.patch(key_url, {"requests_per_minute": None}, format="json")
    assert lifted.status_code == 200 and lifted.json()["requests_per_minute"] is None
    assert IngestKey.objects.get().requests_per_minute is None
    assert "key" not in lifted.json() and "digest" not in lifted.json()
    plain = api_client.post(url, {"name": "no limit"}, format="json")
    assert plain.status_code == 201 and plain.json()["requests_per_minute"] is None


@pytest.mark.parametrize("value", [0, -1, "x", 1.5, 1_000_001, True])
def test_it_answers_400_naming_requests_per_minute(api_client, account, value):
    api_client.force_authenticate(account.workspace.personal_for)
    url = f"/api/accounts/{account.pk}/ingest-keys"
    created = api_client.post(url, {"requests_per_minute": value}, format="json")
    assert created.status_code == 400 and "requests_per_minute" in created.json()
    assert IngestKey.objects.count() == 0
    _, key = ingest_key_create(account=account, requests_per_minute=30)
    patched = api_client.patch(f"{url}/{key.pk}", {"requests_per_minute": value}, format="json")
    assert patched.status_code == 400 and "requests_per_minute" in patched.json()
    key.refresh_from_db()
    assert key.requests_per_minute == 30


def test_the_limit_service_refuses_bad_values(account):
    from django.core.exceptions import ValidationError

    from providers.services import ingest_key_limit_set

    _, key = ingest_key_create(account=account)
    for bad in (0, -5, 1_000_001, "12", 2.0, True):
        with pytest.raises(ValidationError) as caught:
            ingest_key_limit_set(key=key, requests_per_minute=bad)
        assert set(caught.value.message_dict) == {"requests_per_minute"}
    with pytest.raises(ValidationError):
        ingest_key_create(account=account, requests_per_minute=0)
    assert IngestKey.objects.count() == 1
    assert ingest_key_limit_set(key=key, requests_per_minute=1_000_000).requests_per_minute == (
        1_000_000
    )


def test_the_limit_answers_404_for_another_workspaces_key(client, api_client, account):
    _, key = ingest_key_create(account=account, name="theirs")
    stranger = UserFactory()
    own = AccountFactory(workspace=stranger.personal_workspace)
    client.force_login(stranger)
    api_client.force_authenticate(stranger)
    body = {"requests_per_minute": 1}
    assert (
        client.post(f"/accounts/{account.pk}/ingest-keys/{key.pk}/limit/", body).status_code == 404
    )
    assert client.post(f"/accounts/{own.pk}/ingest-keys/{key.pk}/limit/", body).status_code == 404
    url = f"/api/accounts/{own.pk}/ingest-keys/{key.pk}"
    assert api_client.patch(url, body, format="json").status_code == 404
    key.refresh_from_db()
    assert key.requests_per_minute is None
