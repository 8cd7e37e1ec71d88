"""The proxy's rate-limit state, kept in memory and flushed at most once a second.

A proxied call only updates a dict under a lock (no database statement on the hot path); one
daemon thread per process writes what changed, at most once every ``interval`` seconds and
within about ``interval`` seconds of the last change, even when traffic stops. A failed flush
is logged and its data kept for the next one; it never reaches a call.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from providers.models import RateLimitHit
from providers.ratelimits.readings import RateLimitReading
from providers.ratelimits.services import (
    Observation,
    minute_of,
    ratelimit_hits_add,
    ratelimit_states_upsert,
)

logger = logging.getLogger(__name__)

FLUSH_INTERVAL = 1.0  # seconds
_MAX_PENDING = 10_000  # (account, model) pairs held between flushes before dropping the oldest


@dataclass
class Pending:
    """What changed since the last flush."""

    states: dict[tuple[int, str], Observation] = field(default_factory=dict)
    hits: dict[tuple[int, str, str, datetime], int] = field(default_factory=dict)
    workspaces: set[int] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.states or self.hits)

    def absorb(self, older: Pending) -> None:
        """Put back a batch whose flush failed, under anything newer seen since."""
        for key, obs in older.states.items():
            mine = self.states.get(key)
            if mine is None:
                self.states[key] = obs
            elif mine.observed_at >= obs.observed_at:
                self.states[key] = _merged(mine, obs)
        for key, n in older.hits.items():
            self.hits[key] = self.hits.get(key, 0) + n
        self.workspaces |= older.workspaces


def _merged(newer: Observation, older: Observation) -> Observation:
    reading = newer.reading.merged_over(older.reading)
    return Observation(newer.account_id, newer.model, newer.observed_at, reading)


def write(batch: Pending) -> None:
    """The default writer: upsert states, add 429 counts, ask for the workspaces' alert
    evaluation (headroom and bursts are judged there, off the proxy's path)."""
    ratelimit_states_upsert(observations=batch.states.values())
    ratelimit_hits_add(hits=batch.hits)
    from alerts.services import alerts_evaluation_request

    for workspace_id in sorted(batch.workspaces):
        alerts_evaluation_request(workspace_id=workspace_id)


class RateLimitTracker:
    """Latest state per (account, model) and 429 counts per minute, between flushes.

    ``clock`` (monotonic seconds) and ``writer`` are injectable so the once-a-second rule is
    tested without waiting; ``start_thread`` False leaves flushing to whoever calls flush().
    """

    def __init__(
        self,
        *,
        interval: float = FLUSH_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        writer: Callable[[Pending], None] = write,
        start_thread: bool = True,
    ) -> None:
        self.interval = interval
        self.clock = clock
        self.writer = writer
        self.start_thread = start_thread
        self._lock = threading.Lock()
        self._pending = Pending()
        self._last_flush: float | None = None
        self._wake = threading.Event()
        self._thread_pid: int | None = None
        self.flushes = 0

    # --- the hot path ---------------------------------------------------------------------

    def observe(
        self,
        *,
        account_id: int,
        workspace_id: int,
        model: str,
        at: datetime,
        reading: RateLimitReading | None,
        rate_limited: bool,
    ) -> None:
        """Note one proxied answer: its reading (if any) and whether it was a 429."""
        if reading is None and not rate_limited:
            return
        with self._lock:
            pending = self._pending
            if reading is not None:
                key = (account_id, model)
                obs = Observation(account_id, model, at, reading)
                old = pending.states.get(key)
                if old is None or old.observed_at <= at:
                    pending.states[key] = _merged(obs, old) if old else obs
                if len(pending.states) > _MAX_PENDING:
                    pending.states.pop(next(iter(pending.states)))
            if rate_limited:
                key4 = (account_id, model, RateLimitHit.Source.PROXY, minute_of(at))
                pending.hits[key4] = pending.hits.get(key4, 0) + 1
            pending.workspaces.add(workspace_id)
        self._ensure_thread()
        self._wake.set()

    # --- flushing -------------------------------------------------------------------------

    def wait_seconds(self) -> float | None:
        """Seconds until a flush may run; 0 when due, None when there is nothing to write."""
        with self._lock:
            if not self._pending:
                return None
            if self._last_flush is None:
                return 0.0
            return max(0.0, self._last_flush + self.interval - self.clock())

    def flush(self, *, force: bool = False) -> bool:
        """Write what changed if the last flush was at least ``interval`` ago (or ``force``,
        at exit); True if it wrote. Never raises: a failure is logged and the batch kept."""
        with self._lock:
            if not self._pending:
                return False
            now = self.clock()
            early = self._last_flush is not None and now - self._last_flush < self.interval
            if early and not force:
                return False
            batch, self._pending = self._pending, Pending()
            self._last_flush = now
            self.flushes += 1
        try:
            self.writer(batch)
        except Exception:
            logger.exception("rate limits: flush failed; kept for the next one")
            with self._lock:
                self._pending.absorb(batch)
            return False
        return True

    def _ensure_thread(self) -> None:
        # Started lazily, and again in a forked child (threads do not survive a fork).
        if not self.start_thread or self._thread_pid == os.getpid():
            return
        with self._lock:
            if self._thread_pid == os.getpid():
                return
            self._thread_pid = os.getpid()
        threading.Thread(target=self._run, name="ratelimit-flush", daemon=True).start()
        atexit.register(self.flush, force=True)  # the last second's changes on a clean stop

    def _run(self) -> None:
        from django.db import close_old_connections

        while True:
            wait = self.wait_seconds()
            if wait is None or wait > 0:
                self._wake.wait(wait)
                self._wake.clear()
                continue
            close_old_connections()  # a connection the database dropped is replaced
            self.flush()


_tracker = RateLimitTracker()


def tracker() -> RateLimitTracker:
    return _tracker


def tracker_replace(new: RateLimitTracker) -> RateLimitTracker:
    """Swap the process's tracker (tests); returns the old one."""
    global _tracker
    old, _tracker = _tracker, new
    return old


def proxy_answer_observe(
    *,
    kind: str,
    account_id: int,
    workspace_id: int,
    model: str,
    status: int,
    headers,
) -> None:
    """Note a proxied answer's rate-limit headers and whether it was a 429. Never raises:
    the call's answer must not depend on this bookkeeping (a failure is logged)."""
    try:
        from django.utils import timezone

        from providers.registry import get_adapter_class

        now = timezone.now()
        reading = get_adapter_class(kind).rate_limit_reading(headers, now=now)
        _tracker.observe(
            account_id=account_id,
            workspace_id=workspace_id,
            model=(model or "")[:200],
            at=now,
            reading=reading,
            rate_limited=status == 429,
        )
    except Exception:
        logger.exception("rate limits: could not read a %s answer for %s", kind, account_id)
