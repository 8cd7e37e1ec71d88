"""The account page's Rate limits panel: headroom, the tightest limit, staleness, 429s."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from providers.models import RateLimitHit
from providers.ratelimits.readings import RateLimitReading, Window
from providers.ratelimits.services import Observation, ratelimit_hits_add, ratelimit_states_upsert
from providers.tests.factories import AccountFactory

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 8, 21, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def state(account, model: str, at: datetime, **dims: Window) -> None:
    reading = RateLimitReading(**dims)
    ratelimit_states_upsert(observations=[Observation(account.pk, model, at, reading)])


def panel(client, account) -> str:
    client.force_login(account.workspace.personal_for)
    response = client.get(f"/accounts/{account.pk}/overview/")
    assert response.status_code == 200
    html = response.content.decode()
    return re.search(r'data-testid="account-rate-limits">(.*?)</table>', html, re.S).group(1)


def test_it_shows_headroom_with_the_tightest_limit_marked(client):
    account = AccountFactory()
    state(
        account,
        "gpt-4o",
        NOW - timedelta(seconds=5),
        requests=Window(500, 450, NOW + timedelta(seconds=30)),  # 90.0 %
        tokens=Window(200000, 10000, NOW + timedelta(minutes=6)),  # 5.0 %: tightest, low
    )

    html = panel(client, account)

    assert "gpt-4o" in html
    assert "450 / 500" in html and "90.0% left" in html
    assert "10,000 / 200,000" in html and "5.0% left" in html
    tokens = re.search(r'data-testid="rate-limit-tokens">(.*?)</div>', html, re.S).group(1)
    assert "tightest" in tokens and "badge critical" in tokens  # under 10 %: highlighted
    requests = re.search(r'data-testid="rate-limit-requests">(.*?)</div>', html, re.S).group(1)
    assert "tightest" not in requests and "critical" not in requests
    assert "full again 2026-08-21 12:06" in tokens
    assert "stale" not in html


def test_a_refilled_bucket_is_not_the_tightest_and_an_old_reading_is_stale(client):
    account = AccountFactory()
    state(
        account,
        "claude-sonnet-4-6",
        NOW - timedelta(minutes=20),
        requests=Window(50, 0, NOW - timedelta(minutes=19)),  # refilled since
        tokens=Window(1000, 600, NOW + timedelta(minutes=1)),
    )

    html = panel(client, account)

    assert 'data-testid="rate-limit-stale"' in html
    assert "refilled since" in html
    tokens = re.search(r'data-testid="rate-limit-tokens">(.*?)</div>', html, re.S).group(1)
    assert "tightest" in tokens  # 60 % beats the refilled 0 %


def test_it_shows_429s_per_day_for_a_week_including_a_syncs(client):
    account = AccountFactory()
    ratelimit_hits_add(hits={(account.pk, "", RateLimitHit.Source.SYNC, NOW): 2})
    ratelimit_hits_add(
        hits={(account.pk, "", RateLimitHit.Source.PROXY, NOW - timedelta(days=2)): 3}
    )
    ratelimit_hits_add(hits={(account.pk, "", "proxy", NOW - timedelta(days=9)): 100})  # too old

    html = panel(client, account)

    assert "(usage API)" in html
    assert 'data-testid="rate-limit-429-total">5<' in html  # 2 today + 3 two days ago
    assert 'title="2026-08-19" class="warning">Wed 3<' in html
    assert 'title="2026-08-21" class="warning">Fri 2<' in html
    assert "No rate-limit headers seen." in html


def test_it_shows_only_this_accounts_limits(client):
    account, other = AccountFactory(), AccountFactory()  # another workspace's
    state(other, "secret-model", NOW, requests=Window(5, 1, None))

    html = panel(client, account)

    assert "secret-model" not in html
    assert "Nothing yet" in html
