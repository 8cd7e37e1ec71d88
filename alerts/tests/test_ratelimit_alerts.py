"""Rate-limit alerts: headroom under the threshold, and a burst of 429s; once per window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from django_q.conf import Conf

from alerts import services
from alerts.models import Alert, NotificationChannel, NotificationDelivery
from providers.models import RateLimitHit
from providers.ratelimits.readings import RateLimitReading, Window
from providers.ratelimits.services import (
    Observation,
    ratelimit_hits_add,
    ratelimit_states_upsert,
)
from providers.tests.factories import AccountFactory

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 8, 21, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _run_tasks_inline(settings, monkeypatch):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": True}
    monkeypatch.setattr(Conf, "SYNC", True)  # django-q2 reads `sync` once at import
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def account():
    account = AccountFactory(name="Prod Groq")
    services.channel_create(
        workspace=account.workspace, kind=NotificationChannel.Kind.EMAIL, target="ops@example.com"
    )
    return account


def observe(account, *, remaining: int, at: datetime, limit: int = 6000, reset_in=60):
    reading = RateLimitReading(
        requests=Window(14400, 14000, at + timedelta(hours=1)),
        tokens=Window(limit, remaining, at + timedelta(seconds=reset_in)),
    )
    ratelimit_states_upsert(observations=[Observation(account.pk, "llama-3", at, reading)])


def evaluate(account) -> list[Alert]:
    return services.alerts_evaluate_for_workspace(workspace=account.workspace)


def kinds(account, kind) -> list[Alert]:
    return list(Alert.objects.filter(workspace=account.workspace, kind=kind).order_by("id"))


def test_it_alerts_once_when_headroom_runs_low_and_again_next_hour(account, clock):
    observe(account, remaining=500, at=NOW)  # 500 / 6000 = 8.3 % < 10 %

    first = evaluate(account)
    again = evaluate(account)

    (alert,) = first
    assert again == []
    assert alert.kind == Alert.Kind.RATELIMIT_LOW
    assert alert.message.startswith("Prod Groq, llama-3: 8.3% of the tokens rate limit left")
    assert alert.data["dimension"] == "tokens" and alert.data["remaining"] == 500
    assert NotificationDelivery.objects.filter(alert=alert).count() == 1  # like budget alerts
    assert len(mail.outbox) == 1 and "8.3%" in mail.outbox[0].body

    clock.move_to(NOW + timedelta(hours=1, minutes=5))
    observe(account, remaining=100, at=NOW + timedelta(hours=1, minutes=5))
    (later,) = evaluate(account)
    assert later.pk != alert.pk
    assert len(kinds(account, Alert.Kind.RATELIMIT_LOW)) == 2


@pytest.mark.parametrize(
    ("remaining", "age", "reset_in", "why"),
    [
        (600, timedelta(0), 60, "600 / 6000 = 10.0 %: not below 10 %"),
        (100, timedelta(minutes=16), 3600, "stale: not read for over 15 minutes"),
        (100, timedelta(minutes=2), 30, "the bucket refilled since (reset passed)"),
    ],
)
def test_it_does_not_alert_on_enough_or_outdated_headroom(
    account, clock, remaining, age, reset_in, why
):
    observe(account, remaining=remaining, at=NOW - age, reset_in=reset_in)

    assert evaluate(account) == [], why


def test_the_threshold_is_a_setting(account, clock, settings):
    settings.RATELIMIT_HEADROOM_PERCENT = 50
    observe(account, remaining=2000, at=NOW)  # 33.3 %

    (alert,) = evaluate(account)
    assert alert.data["threshold_percent"] == "50"


def hits(account, at: datetime, n: int, model="llama-3"):
    ratelimit_hits_add(hits={(account.pk, model, "proxy", at): n})


def test_it_alerts_once_on_a_burst_of_429s_and_again_in_a_new_window(account, clock):
    hits(account, NOW + timedelta(minutes=3), 3)
    hits(account, NOW + timedelta(minutes=4), 2)  # 5 in 10 minutes
    clock.move_to(NOW + timedelta(minutes=5))

    (alert,) = evaluate(account)
    assert evaluate(account) == []
    assert alert.kind == Alert.Kind.RATELIMIT_BURST
    assert alert.data == {
        "model": "llama-3",
        "count": 5,
        "minutes": 10,
        "since": "2026-08-21T11:56:00+00:00",
    }
    assert "429 (rate limited) 5 times in the last 10 minutes" in alert.message
    assert NotificationDelivery.objects.filter(alert=alert).count() == 1

    # The next window (12:10-12:19) still sees the same 429s: the same burst, no new alert.
    clock.move_to(NOW + timedelta(minutes=11))
    assert evaluate(account) == []

    # A burst of its own, later.
    hits(account, NOW + timedelta(minutes=24), 5)
    clock.move_to(NOW + timedelta(minutes=25))
    (second,) = evaluate(account)
    assert second.data["count"] == 5  # 12:16-12:25: only the new ones
    assert len(kinds(account, Alert.Kind.RATELIMIT_BURST)) == 2


def test_four_429s_or_old_ones_are_no_burst(account, clock):
    hits(account, NOW - timedelta(minutes=20), 10)  # long ago
    hits(account, NOW, 4)

    assert evaluate(account) == []


def test_the_burst_rule_is_a_setting_and_counts_sync_429s(account, clock, settings):
    settings.RATELIMIT_BURST_COUNT = 2
    settings.RATELIMIT_BURST_MINUTES = 1
    ratelimit_hits_add(hits={(account.pk, "", "sync", NOW): 1})
    ratelimit_hits_add(hits={(account.pk, "", "proxy", NOW): 1})

    (alert,) = evaluate(account)
    assert alert.data["count"] == 2 and alert.data["minutes"] == 1
    assert "its usage API" in alert.message


def test_another_workspaces_limits_never_alert_here(account, clock):
    other = AccountFactory()
    observe(other, remaining=0, at=NOW)
    hits(other, NOW, 50)

    assert evaluate(account) == []
    assert len(evaluate(other)) == 2


def test_evaluation_drops_429_counts_past_the_retention(account, clock):
    hits(account, NOW - timedelta(days=32), 1)  # past the 31 days kept
    hits(account, NOW - timedelta(days=8), 1)  # older than the panel's week, still kept
    other = AccountFactory()
    hits(other, NOW - timedelta(days=40), 1)  # another workspace: its own evaluation's

    evaluate(account)

    kept = RateLimitHit.objects.order_by("minute").values_list("account_id", "minute")
    assert list(kept) == [
        (other.pk, NOW - timedelta(days=40)),
        (account.pk, NOW - timedelta(days=8)),
    ]
