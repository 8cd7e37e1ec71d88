"""API tokens page: create (plaintext shown once), list, revoke; owner only."""

from __future__ import annotations

import re

import pytest
import time_machine
from rest_framework.test import APIClient

from accounts.models import ApiToken, hash_token
from accounts.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@time_machine.travel("2026-11-15 12:00:00Z", tick=False)
def test_it_creates_a_token_shown_once_that_works_on_the_api(client, settings):
    user = UserFactory()
    client.force_login(user)
    response = client.post("/profile/tokens/", {"name": "nightly export"})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    html = response.content.decode()
    raw = re.search(r'data-testid="new-token-value">(ctk_[^<]+)<', html).group(1)
    token = ApiToken.objects.get()
    # Stored hashed, named, expiring after API_TOKEN_TTL (30 days by default): 2026-12-15.
    assert (token.user, token.name, token.digest) == (user, "nightly export", hash_token(raw))
    assert token.expires_at.isoformat() == "2026-12-15T12:00:00+00:00"
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api.get("/api/auth/me").json()["username"] == user.username
    # Listed by name and hint on the next visit; the plaintext never again.
    listing = client.get("/profile/tokens/").content.decode()
    assert "nightly export" in listing and f"{token.hint}…" in listing
    assert raw not in listing
    # Expires 2026-12-15; last used just now by the API call above.
    assert "2026-12-15 12:00" in listing and "never" not in listing


def test_it_revokes_a_token_so_the_api_refuses_it(client):
    user = UserFactory()
    client.force_login(user)
    html = client.post("/profile/tokens/", {"name": ""}).content.decode()
    raw = re.search(r'data-testid="new-token-value">(ctk_[^<]+)<', html).group(1)
    token = ApiToken.objects.get()
    assert client.get(f"/profile/tokens/{token.pk}/revoke/").status_code == 405
    response = client.post(f"/profile/tokens/{token.pk}/revoke/")
    assert response.status_code == 302 and response["Location"] == "/profile/tokens/"
    assert not ApiToken.objects.exists()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api.get("/api/auth/me").status_code == 401


def test_it_only_shows_and_revokes_your_own_tokens(client):
    owner, other = UserFactory(), UserFactory()
    client.force_login(owner)
    client.post("/profile/tokens/", {"name": "owner's script"})
    token = ApiToken.objects.get()
    client.force_login(other)
    assert "owner&#x27;s script" not in client.get("/profile/tokens/").content.decode()
    assert client.post(f"/profile/tokens/{token.pk}/revoke/").status_code == 404
    assert ApiToken.objects.filter(pk=token.pk).exists()


def test_it_refuses_an_overlong_name_in_place(client):
    client.force_login(UserFactory())
    response = client.post("/profile/tokens/", {"name": "x" * 101})
    assert response.status_code == 200
    assert "at most 100 characters" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_it_is_linked_from_profile_and_export(client):
    client.force_login(UserFactory())
    assert 'href="/profile/tokens/"' in client.get("/profile/").content.decode()
    assert 'href="/profile/tokens/"' in client.get("/export/").content.decode()


def test_it_needs_a_login(client):
    assert client.get("/profile/tokens/").status_code == 302
    assert client.post("/profile/tokens/", {"name": "x"}).status_code == 302
    assert not ApiToken.objects.exists()


def test_it_renders_without_inline_script_style_or_handlers(client):
    client.force_login(UserFactory())
    html = client.post("/profile/tokens/", {"name": "x"}).content.decode()
    assert " style=" not in html
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert not re.search(r"\son[a-z]+=", html)
