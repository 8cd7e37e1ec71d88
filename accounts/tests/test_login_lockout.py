"""A successful login clears the failures counted so far — on the API and the web alike."""

from __future__ import annotations

import pytest

from accounts.tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def _api_login(api_client, username: str, password: str) -> int:
    return api_client.post(
        "/api/auth/login", {"username": username, "password": password}, format="json"
    ).status_code


def _web_login(client, username: str, password: str) -> int:
    return client.post("/login/", {"username": username, "password": password}).status_code


def test_it_resets_the_failure_count_on_a_successful_api_login(api_client):
    user = UserFactory()
    # The sequence from the issue: 4 wrong, 1 right, 1 wrong — no lock.
    assert [_api_login(api_client, user.username, "wrong") for _ in range(4)] == [400] * 4
    assert _api_login(api_client, user.username, PASSWORD) == 200
    assert _api_login(api_client, user.username, "wrong") == 400
    assert _api_login(api_client, user.username, PASSWORD) == 200
    # The count restarted at the good login: four more failures are plain refusals and
    # the fifth since the last success locks (AXES_FAILURE_LIMIT = 5).
    assert [_api_login(api_client, user.username, "wrong") for _ in range(5)] == [400] * 4 + [429]
    assert _api_login(api_client, user.username, PASSWORD) == 429


def test_it_counts_and_resets_the_same_way_on_the_web_and_the_api(api_client, client):
    user = UserFactory()
    # Failures on either path count towards one lock (username + address)…
    assert [_api_login(api_client, user.username, "wrong") for _ in range(2)] == [400] * 2
    assert [_web_login(client, user.username, "wrong") for _ in range(2)] == [200] * 2
    # …a web login clears what the API counted…
    assert _web_login(client, user.username, PASSWORD) == 302
    assert [_api_login(api_client, user.username, "wrong") for _ in range(4)] == [400] * 4
    # …and an API login clears what both counted.
    assert _api_login(api_client, user.username, PASSWORD) == 200
    assert [_web_login(client, user.username, "wrong") for _ in range(4)] == [200] * 4
    assert _api_login(api_client, user.username, PASSWORD) == 200
    # Without a success in between, the fifth failure locks both paths.
    assert [_web_login(client, user.username, "wrong") for _ in range(4)] == [200] * 4
    assert _api_login(api_client, user.username, "wrong") == 429
    assert _web_login(client, user.username, PASSWORD) == 429
    assert _api_login(api_client, user.username, PASSWORD) == 429
