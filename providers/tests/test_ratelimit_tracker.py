"""The proxy's in-memory rate-limit state: flushed at most once a second, newest wins."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from providers.models import RateLimitHit, RateLimitState
from providers.ratelimits.readings import RateLimitReading, Window
from providers.ratelimits.services import (
    Observation,
    ratelimit_hits_add,
    ratelimit_states_upsert,
)
from providers.ratelimits.tracker import Pending, RateLimitTracker
from providers.tests.factories import AccountFactory

NOW = datetime(2026, 8, 21, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reading(remaining: int, limit: int = 100) -> RateLimitReading:
    return RateLimitReading(requests=Window(limit, remaining, NOW + timedelta(seconds=30)))


def observe(t: RateLimitTracker, *, remaining: int, at: datetime = NOW, limited=False, model="m"):
    t.observe(
        account_id=1,
        workspace_id=7,
        model=model,
        at=at,
        reading=reading(remaining),
        rate_limited=limited,
    )


def test_it_flushes_at_most_once_a_second():
    clock, batches = Clock(), []
    t = RateLimitTracker(clock=clock, writer=batches.append, start_thread=False)

    assert t.wait_seconds() is None and not t.flush()  # nothing to write
    observe(t, remaining=90)
    assert t.wait_seconds() == 0
    assert t.flush()  # the first change goes at once
    observe(t, remaining=80, at=NOW + timedelta(seconds=0.2), limited=True)
    clock.now += 0.2
    assert t.wait_seconds() == pytest.approx(0.8)
    assert not t.flush()
    observe(t, remaining=70, at=NOW + timedelta(seconds=0.9), limited=True)
    clock.now += 0.7
    assert not t.flush()  # 0.9 s since the last: still held
    clock.now += 0.1

    assert t.flush()  # a second after the last

    assert len(batches) == 2 and t.flushes == 2
    assert batches[0].states[(1, "m")].reading.requests.remaining == 90
    # The newest of the held changes, and both 429s (same minute) in one count.
    assert batches[1].states[(1, "m")].reading.requests.remaining == 70
    assert batches[1].hits == {(1, "m", "proxy", NOW): 2}
    assert batches[1].workspaces == {7}
    assert t.wait_seconds() is None


def test_an_older_observation_arriving_late_does_not_replace_a_newer_one():
    batches = []
    t = RateLimitTracker(clock=Clock(), writer=batches.append, start_thread=False)
    observe(t, remaining=10, at=NOW + timedelta(seconds=5))
    observe(t, remaining=99, at=NOW)  # a slower thread's answer, received earlier

    t.flush()

    assert batches[0].states[(1, "m")].reading.requests.remaining == 10


def test_a_failed_flush_is_logged_and_kept_for_the_next(caplog):
    clock, written = Clock(), []

    def writer(batch: Pending) -> None:
        if not written:
            written.append(None)
            raise RuntimeError("database down")
        written.append(batch)

    t = RateLimitTracker(clock=clock, writer=writer, start_thread=False)
    observe(t, remaining=50, limited=True)

    assert not t.flush()  # no exception reaches the caller
    assert "flush failed" in caplog.text
    observe(t, remaining=40, at=NOW + timedelta(seconds=1), limited=True)
    clock.now += 1

    assert t.flush()
    batch = written[1]
    assert batch.states[(1, "m")].reading.requests.remaining == 40
    assert batch.hits == {(1, "m", "proxy", NOW): 2}  # the failed one's 429 is not lost


def test_the_flush_thread_writes_soon_after_traffic_stops():
    # A real thread and clock: the last change must reach the writer without another call.
    written = threading.Event()
    batches = []

    def writer(batch):
        batches.append(batch)
        written.set()

    t = RateLimitTracker(interval=0.05, writer=writer)
    observe(t, remaining=5)

    assert written.wait(5), "the flush thread never wrote"
    assert batches[0].states[(1, "m")].reading.requests.remaining == 5


def test_it_does_nothing_for_an_answer_without_limits_or_429():
    t = RateLimitTracker(writer=lambda b: None, start_thread=False)
    t.observe(account_id=1, workspace_id=1, model="m", at=NOW, reading=None, rate_limited=False)
    assert t.wait_seconds() is None


@pytest.mark.django_db
def test_the_upsert_keeps_the_newest_observation_whoever_flushes_last():
    account = AccountFactory()
    newer = Observation(account.pk, "gpt-4o", NOW + timedelta(seconds=2), reading(10))
    older = Observation(account.pk, "gpt-4o", NOW, reading(99))

    ratelimit_states_upsert(observations=[newer])
    ratelimit_states_upsert(observations=[older])  # another process's late flush

    state = RateLimitState.objects.get(account=account, model="gpt-4o")
    assert (state.requests_remaining, state.observed_at) == (10, NOW + timedelta(seconds=2))
    assert state.requests_reset_at == NOW + timedelta(seconds=30)
    assert state.tokens_limit is None

    ratelimit_states_upsert(observations=[newer])  # the same again: the same row
    assert RateLimitState.objects.count() == 1
    newest = Observation(account.pk, "gpt-4o", NOW + timedelta(seconds=3), reading(0))
    ratelimit_states_upsert(observations=[newest])
    assert RateLimitState.objects.get().requests_remaining == 0


@pytest.mark.django_db
def test_429_counts_add_up_per_minute_across_flushes():
    account = AccountFactory()
    at = NOW + timedelta(seconds=42)

    ratelimit_hits_add(hits={(account.pk, "m", "proxy", at): 2})
    ratelimit_hits_add(hits={(account.pk, "m", "proxy", NOW): 3})  # same minute, other process
    ratelimit_hits_add(hits={(account.pk, "m", "proxy", NOW + timedelta(minutes=1)): 1})

    rows = list(RateLimitHit.objects.order_by("minute").values_list("minute", "count"))
    assert rows == [(NOW, 5), (NOW + timedelta(minutes=1), 1)]


@pytest.mark.django_db
def test_a_flush_for_a_deleted_account_writes_the_others():
    account = AccountFactory()
    gone = AccountFactory()
    gone_id = gone.pk
    gone.delete()

    ratelimit_states_upsert(
        observations=[
            Observation(gone_id, "m", NOW, reading(1)),
            Observation(account.pk, "m", NOW, reading(2)),
        ]
    )
    ratelimit_hits_add(hits={(gone_id, "m", "proxy", NOW): 1, (account.pk, "m", "proxy", NOW): 1})

    assert list(RateLimitState.objects.values_list("account_id", flat=True)) == [account.pk]
    assert list(RateLimitHit.objects.values_list("account_id", flat=True)) == [account.pk]
