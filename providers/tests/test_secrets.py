"""Encrypted, write-only provider secrets."""

from __future__ import annotations

import base64
import logging

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from rest_framework import serializers

from accounts.tests.factories import UserFactory
from providers import crypto
from providers.fields import SealedSecret
from providers.models import ProviderAccount
from providers.tests.factories import AccountFactory, provider

SENTINEL = "sk-SENTINEL-d0-not-leak-7f3a9c1e5b"
SENTINEL_ADMIN = "sk-admin-SENTINEL-ADMIN-4b2e8d6a0c"


def _raw_column(account_id: int, field: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {field} FROM providers_provideraccount WHERE id = %s", [account_id])
        return cursor.fetchone()[0]


def _new_key() -> str:
    return Fernet.generate_key().decode()


@pytest.mark.django_db
def test_it_stores_ciphertext_and_round_trips():
    account = AccountFactory(keys={"api_key": SENTINEL})
    stored = _raw_column(account.pk, "api_key")
    assert SENTINEL not in stored
    loaded = ProviderAccount.objects.get(pk=account.pk)
    assert isinstance(loaded.api_key, SealedSecret)
    assert loaded.api_key.reveal() == SENTINEL
    assert SENTINEL not in repr(loaded.api_key) and SENTINEL not in str(loaded.api_key)
    assert loaded.api_key_last4 == SENTINEL[-4:]


@pytest.mark.django_db
def test_it_keeps_secrets_readable_when_secret_key_changes():
    account = AccountFactory(keys={"api_key": SENTINEL})
    with override_settings(SECRET_KEY="a-completely-different-secret-key-0123456789"):
        assert ProviderAccount.objects.get(pk=account.pk).api_key.reveal() == SENTINEL


@pytest.mark.django_db
def test_it_rotates_to_the_first_key_and_old_key_can_then_go(settings):
    old, new = settings.ENCRYPTION_KEYS[0], _new_key()
    account = AccountFactory(keys={"api_key": SENTINEL, "admin_key": SENTINEL_ADMIN})
    before = _raw_column(account.pk, "api_key")

    settings.ENCRYPTION_KEYS = [new, old]
    call_command("rotate_encryption_keys")
    after = _raw_column(account.pk, "api_key")
    assert after != before

    settings.ENCRYPTION_KEYS = [new]  # the old key is gone: rotated secrets still decrypt
    loaded = ProviderAccount.objects.get(pk=account.pk)
    assert loaded.api_key.reveal() == SENTINEL
    assert loaded.admin_key.reveal() == SENTINEL_ADMIN


@pytest.mark.django_db
def test_it_refuses_a_wrong_key_without_changing_anything(settings):
    account = AccountFactory(keys={"api_key": SENTINEL})
    before = _raw_column(account.pk, "api_key")
    settings.ENCRYPTION_KEYS = [_new_key()]
    with pytest.raises(Exception, match="cannot be decrypted"):
        call_command("rotate_encryption_keys")
    assert _raw_column(account.pk, "api_key") == before
    with pytest.raises(crypto.SecretUnreadable):
        ProviderAccount.objects.get(pk=account.pk).api_key.reveal()


def test_it_rejects_a_malformed_encryption_key(settings):
    settings.ENCRYPTION_KEYS = [base64.urlsafe_b64encode(b"short").decode()]
    with pytest.raises(Exception, match="Fernet keys"):
        crypto.encrypt("x")


@pytest.mark.django_db
def test_it_never_shows_a_secret_in_api_pages_admin_or_logs(client, api_client, caplog):
    caplog.set_level(logging.DEBUG)
    admin = UserFactory(is_staff=True, is_superuser=True)
    api_client.force_authenticate(admin)
    # Create through the API, as a user would.
    created = api_client.post(
        "/api/accounts",
        {"provider": "openai", "name": "Prod", "api_key": SENTINEL, "admin_key": SENTINEL_ADMIN},
        format="json",
    )
    assert created.status_code == 201, created.content
    pk = created.json()["id"]
    bodies = [created.content.decode()]
    assert created.json()["has_api_key"] is True
    assert created.json()["api_key_last4"] == SENTINEL[-4:]
    assert "api_key" not in created.json()

    for url in ["/api/accounts", f"/api/accounts/{pk}", "/api/usage"]:
        bodies.append(api_client.get(url).content.decode())
    bodies.append(
        api_client.patch(f"/api/accounts/{pk}", {"name": "Prod 2"}, format="json").content.decode()
    )
    # An invalid update echoes errors, never the key.
    bodies.append(
        api_client.patch(
            f"/api/accounts/{pk}", {"api_key": SENTINEL, "monthly_budget": "-5"}, format="json"
        ).content.decode()
    )

    client.force_login(admin)
    for url in [
        "/",
        "/accounts/",
        f"/accounts/{pk}/",
        "/usage/history/",
        "/admin/providers/provideraccount/",
        f"/admin/providers/provideraccount/{pk}/change/",
    ]:
        response = client.get(url)
        assert response.status_code == 200, url
        bodies.append(response.content.decode())
    # A failed form post re-renders the form: the key field must come back empty.
    response = client.post(f"/accounts/{pk}/", {"provider": "", "name": "", "api_key": SENTINEL})
    assert response.status_code == 200
    bodies.append(response.content.decode())

    for body in bodies:
        assert SENTINEL not in body and SENTINEL_ADMIN not in body
        # The ciphertext is no business of a page either.
        assert ProviderAccount.objects.get(pk=pk).api_key.ciphertext not in body
    assert SENTINEL not in caplog.text and SENTINEL_ADMIN not in caplog.text
    assert ProviderAccount.objects.get(pk=pk).api_key.reveal() == SENTINEL


@pytest.mark.django_db
def test_it_keeps_a_key_when_the_form_leaves_it_empty_and_clears_on_request(client):
    user = UserFactory()
    account = AccountFactory(workspace=user.personal_workspace, keys={"api_key": SENTINEL})
    client.force_login(user)
    data = {"provider": provider("openai").pk, "name": "Renamed", "is_active": "on"}
    assert client.post(f"/accounts/{account.pk}/", data).status_code == 302
    account.refresh_from_db()
    assert account.name == "Renamed" and account.api_key.reveal() == SENTINEL
    client.post(f"/accounts/{account.pk}/", {**data, "clear_api_key": "on"})
    account.refresh_from_db()
    assert not account.has_api_key and account.api_key_last4 == ""


@pytest.mark.parametrize("key", ["sk-tést-0123456789", "sk-test\t0123456789", "sk-test 012345"])
def test_it_refuses_a_key_that_cannot_travel_in_a_header_on_every_path(key):
    # One rule (providers.fields.secret_text_validate) for the form, the admin and the API.
    from providers.admin import ProviderAccountAdminForm
    from providers.apis import AccountSerializer
    from providers.forms import AccountForm

    for field in (
        AccountForm.base_fields["api_key"],
        AccountForm.base_fields["admin_key"],
        ProviderAccountAdminForm.base_fields["new_api_key"],
        ProviderAccountAdminForm.base_fields["new_admin_key"],
    ):
        with pytest.raises(ValidationError, match="printable ASCII"):
            field.clean(key)
    for name in ("api_key", "admin_key"):
        with pytest.raises(serializers.ValidationError, match="printable ASCII"):
            AccountSerializer().fields[name].run_validation(key)
