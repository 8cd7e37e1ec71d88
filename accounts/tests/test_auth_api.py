"""Auth API: register, login (hashed expiring tokens), logout, me, login throttle."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from accounts.models import ApiToken, hash_token
from accounts.tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def test_it_registers_and_returns_a_working_token(api_client):
    response = api_client.post(
        "/api/auth/register", {"username": "ada", "password": PASSWORD}, format="json"
    )
    assert response.status_code == 201, response.content
    token = response.json()["token"]
    assert token.startswith("ctk_") and response.json()["expiry"]
    # Only the hash is stored.
    assert not ApiToken.objects.filter(digest=token).exists()
    assert ApiToken.objects.filter(digest=hash_token(token)).exists()
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    me = api_client.get("/api/auth/me")
    assert me.status_code == 200 and me.json()["username"] == "ada"


def test_it_rejects_a_weak_password_and_a_taken_username(api_client):
    UserFactory(username="taken")
    weak = api_client.post(
        "/api/auth/register", {"username": "bob", "password": "123"}, format="json"
    )
    assert weak.status_code == 400 and "password" in weak.json()
    taken = api_client.post(
        "/api/auth/register", {"username": "TAKEN", "password": PASSWORD}, format="json"
    )
    assert taken.status_code == 400 and "username" in taken.json()


def test_it_refuses_sign_up_when_disabled(api_client, client, settings):
    settings.ALLOW_SIGNUP = False
    response = api_client.post(
        "/api/auth/register", {"username": "eve", "password": PASSWORD}, format="json"
    )
    assert response.status_code == 403
    assert client.get("/signup/").status_code == 404


def test_it_logs_in_and_out_revoking_the_token(api_client):
    user = UserFactory()
    response = api_client.post(
        "/api/auth/login", {"username": user.username, "password": PASSWORD}, format="json"
    )
    assert response.status_code == 200
    token = response.json()["token"]
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api_client.post("/api/auth/logout").status_code == 204
    assert api_client.get("/api/auth/me").status_code == 401


def test_it_expires_tokens(api_client, settings):
    user = UserFactory()
    token = api_client.post(
        "/api/auth/login", {"username": user.username, "password": PASSWORD}, format="json"
    ).json()["token"]
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    with time_machine.travel(timezone.now() + settings.API_TOKEN_TTL + timedelta(seconds=1)):
        assert api_client.get("/api/auth/me").status_code == 401


def test_it_locks_a_username_and_ip_after_five_failures(api_client):
    user = UserFactory()
    statuses = [
        api_client.post(
            "/api/auth/login", {"username": user.username, "password": "wrong"}, format="json"
        ).status_code
        for _ in range(5)
    ]
    # Four plain refusals; the fifth failure trips the lock.
    assert statuses == [400, 400, 400, 400, 429]
    # Now even the right password is refused for a while…
    locked = api_client.post(
        "/api/auth/login", {"username": user.username, "password": PASSWORD}, format="json"
    )
    assert locked.status_code == 429 and "Too many failed logins" in locked.json()["detail"]
    # Another username from the same address is not locked (the key is username + IP).
    other = UserFactory()
    assert (
        api_client.post(
            "/api/auth/login", {"username": other.username, "password": PASSWORD}, format="json"
        ).status_code
        == 200
    )
    # …and the cool-off is finite.
    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        ok = api_client.post(
            "/api/auth/login", {"username": user.username, "password": PASSWORD}, format="json"
        )
        assert ok.status_code == 200


def test_it_throttles_the_web_login_too(client):
    user = UserFactory()
    for _ in range(5):
        client.post("/login/", {"username": user.username, "password": "wrong"})
    response = client.post("/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 429
    assert b"Too many failed logins" in response.content


def test_it_signs_up_logs_in_and_changes_password_on_the_web(client):
    response = client.post(
        "/signup/", {"username": "web", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 302
    assert client.get("/").status_code == 200
    response = client.post(
        "/password/",
        {
            "old_password": PASSWORD,
            "new_password1": "an0ther-long-pass",
            "new_password2": "an0ther-long-pass",
        },
    )
    assert response.status_code == 302
    client.post("/logout/")
    assert client.get("/").status_code == 302
    assert (
        client.post("/login/", {"username": "web", "password": "an0ther-long-pass"}).status_code
        == 302
    )


def test_it_requires_auth_on_every_api_route(api_client):
    for url in [
        "/api/services",
        "/api/accounts",
        "/api/usage",
        "/api/usage/history",
        "/api/usage/by-service",
        "/api/usage/daily",
        "/api/auth/me",
    ]:
        assert api_client.get(url).status_code in (401, 403), url
