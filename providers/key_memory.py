"""Ingest keys remembered between requests, and on PostgreSQL forgotten the moment they change.

Looking the key up is a database round trip on every proxied call and ingested batch, about a
quarter of the proxy's overhead. On PostgreSQL, triggers (providers migration 0003) send a
NOTIFY on `CHANNEL` whenever a key, an account or a provider changes; each process LISTENs on
a connection of its own and forgets every key it remembers when one arrives. A revoked key is
therefore refused everywhere within milliseconds of the revocation's commit, as if every
request had looked it up.

The memory is trusted only while the listener proves, every PING_SECONDS, that notifications
reach it: it notifies a channel of its own and waits for the echo, which PostgreSQL sends only
while all the triggers are in place and enabled. Without an echo within STALE_SECONDS the
process forgets all and looks keys up again. So a pooler that breaks LISTEN, a database not
yet migrated, or disabled triggers turn the memory off instead of making it stale. Anything
else the triggers could miss is bounded by LISTENING_MAX_AGE.

Without a listener (SQLite, `DATABASE_LISTEN=false`, or the database unreachable) a caller
gets its `fallback_max_age`: ingestion's write checks the key again in the same statement, so
it may remember a key for a few seconds; the proxy forwards calls before anything could
refuse them, so it passes 0 and looks the key up every time.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

from providers import crypto
from providers.models import IngestKey, hash_ingest_key
from providers.selectors import ingest_key_lookup

logger = logging.getLogger(__name__)

CHANNEL = "ct_ingest_keys"
# Created by providers migration 0003; the listener's pings check they are all there.
TRIGGERS = (
    "ct_ingest_key_updated",
    "ct_ingest_key_removed",
    "ct_account_updated",
    "ct_account_removed",
    "ct_provider_changed",
)
PING_SECONDS = 1.0
FIRST_ECHO_SECONDS = 0.25
STALE_SECONDS = 5.0
LISTENING_MAX_AGE = 300.0
RETRY_SECONDS = 5.0
MAX_ENTRIES = 10_000


class _Memory:
    """One per process: remembered keys plus the listener thread that invalidates them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # digest -> (monotonic time read, stored while listening, key with account+provider)
        self.entries: dict[str, tuple[float, bool, IngestKey]] = {}
        # Bumped by every forget: a lookup that raced a change is not stored (see remember).
        self.generation = 0
        self.heard_at = 0.0  # when the listener's last ping came back; 0.0 while it has not
        self.listener: threading.Thread | None = None
        self.stop_listener = threading.Event()
        self.ping_channel = ""
        self.backend_pid: int | None = None  # the listener's PostgreSQL backend
        self.starting = threading.Lock()
        self.retry_at = 0.0

    def forget_all(self) -> None:
        with self.lock:
            self.generation += 1
            self.entries.clear()
        crypto.forget_decrypted()  # rotated or removed provider keys go too

    def forget(self, digest: str) -> None:
        with self.lock:
            self.generation += 1
            self.entries.pop(digest, None)

    def listening(self) -> bool:
        if self.heard_at and time.monotonic() - self.heard_at <= STALE_SECONDS:
            return True
        if self.heard_at:  # the pings stopped coming back: nothing is trusted any more
            self.heard_at = 0.0
            self.forget_all()
        if self.listener is None or not self.listener.is_alive():
            self._start()
        return bool(self.heard_at)

    def _start(self) -> None:
        if not self.starting.acquire(blocking=False):
            return  # another thread is starting it; this request looks its key up
        try:
            self._start_once()
        finally:
            self.starting.release()

    def _start_once(self) -> None:
        if self.listener is not None and self.listener.is_alive():
            return  # started by another thread since this one looked
        now = time.monotonic()
        if now < self.retry_at or not _can_listen():
            return
        # Every start, failed or not, spaces out the next: a database (or a pooler) that keeps
        # ending the listener's session is not reconnected to on every request.
        self.retry_at = now + RETRY_SECONDS
        try:
            conn = _listen_connection()
        except Exception as exc:  # unreachable database: look keys up until it is back
            logger.warning("key memory: cannot listen for key changes (%s)", type(exc).__name__)
            return
        stop = threading.Event()
        self.stop_listener, self.ping_channel = stop, _ping_channel(conn)
        self.backend_pid = conn.info.backend_pid
        self.forget_all()  # whatever was remembered before now was not watched
        # The first ping is answered before this request goes on, so it can use the memory;
        # without an echo soon (a pooler, missing triggers) the request looks its key up.
        try:
            _ping(conn, self.ping_channel)
            self._receive(conn, timeout=FIRST_ECHO_SECONDS)
        except Exception as exc:
            logger.warning("key memory: listener lost (%s)", type(exc).__name__)
            conn.close()
            return
        self.listener = threading.Thread(
            target=self._listen, args=(conn, stop), name="ingest-key-listener", daemon=True
        )
        self.listener.start()

    def _receive(self, conn, *, timeout: float) -> None:
        for note in conn.notifies(timeout=max(timeout, 0.0), stop_after=1):
            if note.channel == self.ping_channel:
                if note.payload != "stop":
                    self.heard_at = time.monotonic()
            else:
                self.forget_all()

    def _listen(self, conn, stop: threading.Event) -> None:
        next_ping = time.monotonic() + PING_SECONDS
        try:
            while not stop.is_set():
                wait = next_ping - time.monotonic()
                if wait <= 0:
                    _ping(conn, self.ping_channel)
                    next_ping = time.monotonic() + PING_SECONDS
                else:
                    self._receive(conn, timeout=wait)
        except Exception as exc:
            if not stop.is_set():
                logger.warning("key memory: listener lost (%s)", type(exc).__name__)
        finally:
            if self.listener is threading.current_thread():
                self.heard_at = 0.0
            self.forget_all()
            try:
                conn.close()
            except Exception:  # noqa: S110 - closing a broken connection may fail too
                pass

    def stop(self) -> None:
        """End the listener (tests, before their database is dropped)."""
        self.stop_listener.set()
        listener = self.listener
        if listener is not None and listener.is_alive():
            _wake(self.ping_channel)
            listener.join(timeout=PING_SECONDS * 3)
        self.listener = None
        self.heard_at = 0.0
        self.retry_at = 0.0
        self.forget_all()


def _can_listen() -> bool:
    return connections[DEFAULT_DB_ALIAS].vendor == "postgresql" and getattr(
        settings, "DATABASE_LISTEN", True
    )


def _ping_channel(conn) -> str:
    return f"ct_key_ping_{conn.info.backend_pid}"


def _ping(conn, channel: str) -> None:
    """Send a notification to this listener only, and only while every trigger is in place.

    Its echo is the proof of life: a connection that answers queries but hears no
    notifications (a transaction-mode pooler between us and PostgreSQL) never sends one back,
    and neither does a database whose triggers are missing (code deployed before its
    migration) or disabled. Either way the memory stays off.
    """
    conn.execute(
        "SELECT pg_notify(%s, '') WHERE (SELECT count(*) FROM pg_trigger "
        "WHERE tgname = ANY(%s) AND tgenabled <> 'D') = %s",
        [channel, list(TRIGGERS), len(TRIGGERS)],
    )


def _wake(channel: str) -> None:
    """End the listener's wait at once."""
    try:
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, 'stop')", [channel])
    except Exception:  # noqa: S110 - then the listener ends at its next ping instead
        pass


def _listen_connection():
    """A connection of the listener's own, autocommit, listening for changes and its pings."""
    import psycopg

    params = connections[DEFAULT_DB_ALIAS].get_connection_params()
    for name in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(name, None)
    params.setdefault("connect_timeout", 5)
    # A peer that silently vanishes is noticed within seconds, not the kernel's 15 minutes.
    for name, value in (
        ("keepalives", 1),
        ("keepalives_idle", 10),
        ("keepalives_interval", 5),
        ("keepalives_count", 3),
        ("tcp_user_timeout", 15_000),
    ):
        params.setdefault(name, value)
    conn = psycopg.connect(**params, autocommit=True)
    try:
        conn.execute(f"LISTEN {CHANNEL}")
        conn.execute(f"LISTEN {_ping_channel(conn)}")
    except Exception:
        conn.close()
        raise
    return conn


_memory = _Memory()


def _after_fork_in_child() -> None:
    # A forked child has its parent's memory but not the listener thread that kept it true.
    global _memory
    _memory = _Memory()


os.register_at_fork(after_in_child=_after_fork_in_child)


def ingest_key_remembered(*, raw: str, fallback_max_age: float) -> IngestKey | None:
    """ingest_key_lookup, answered from this process's memory when that is safe (see above).

    The key (with its account and provider) may be shared by concurrent requests: read it,
    never change it, except last_used_at, which is only a hint.
    """
    if not raw.startswith(IngestKey.PREFIX):
        return None
    listening = _memory.listening()
    max_age = LISTENING_MAX_AGE if listening else fallback_max_age
    if max_age <= 0:
        return ingest_key_lookup(raw=raw)
    digest = hash_ingest_key(raw)
    now = time.monotonic()
    hit = _memory.entries.get(digest)
    if hit is not None:
        read_at, watched, key = hit
        if now - read_at <= (max_age if watched else min(max_age, fallback_max_age)):
            return key
    generation = _memory.generation
    key = ingest_key_lookup(raw=raw)
    with _memory.lock:
        if key is None:
            _memory.entries.pop(digest, None)
        elif _memory.generation == generation:  # nothing changed while we looked
            if len(_memory.entries) >= MAX_ENTRIES:
                _memory.entries.clear()  # a crude bound; keys are few and re-read cheaply
            _memory.entries[digest] = (now, listening, key)
    return key


def ingest_key_forget(*, digest: str) -> None:
    """Forget one key in this process (after a write found it inactive)."""
    _memory.forget(digest)


def forget_all() -> None:
    """Forget every key in this process (a change made here; tests)."""
    _memory.forget_all()


def listening() -> bool:
    """Whether this process is listening for key changes now (starting it if it can)."""
    return _memory.listening()


def stop_listening() -> None:
    _memory.stop()


def _forget_on_change(sender, **kwargs) -> None:
    # Changes made by this process are forgotten here at once; those made by others (and by
    # this process, once committed) arrive as notifications.
    _memory.forget_all()


def connect_signals() -> None:
    from django.db.models.signals import post_delete, post_save

    from providers.models import Provider, ProviderAccount

    for model in (IngestKey, ProviderAccount, Provider):
        post_save.connect(_forget_on_change, sender=model, dispatch_uid=f"key-memory-{model}")
        post_delete.connect(_forget_on_change, sender=model, dispatch_uid=f"key-memory-d-{model}")
