"""Ingest keys remembered between requests, and on PostgreSQL forgotten the moment they change.

Looking the key up is a database round trip on every proxied call and ingested batch, about a
quarter of the proxy's overhead. On PostgreSQL, triggers (providers migration 0003) send a
NOTIFY on `CHANNEL` whenever a key, an account or a provider changes; each process LISTENs on
a connection of its own and forgets every key it remembers when one arrives. A revoked key is
therefore refused everywhere within milliseconds of the revocation's commit, as if every
request had looked it up.

The memory is trusted only while the listener is known to be alive: it proves its connection
every PING_SECONDS, and if it has not done so within STALE_SECONDS the process forgets all and
looks keys up again until a new listener is up. Anything the triggers could ever miss is
bounded by LISTENING_MAX_AGE.

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

from providers.models import IngestKey, hash_ingest_key
from providers.selectors import ingest_key_lookup

logger = logging.getLogger(__name__)

CHANNEL = "ct_ingest_keys"
PING_SECONDS = 1.0
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
        self.heard_at = 0.0  # when the listener last proved alive; 0.0 while it is not
        self.pid = os.getpid()
        self.listener: threading.Thread | None = None
        self.backend_pid: int | None = None  # the listener's PostgreSQL backend
        self.stopping = threading.Event()
        self.starting = threading.Lock()
        self.retry_at = 0.0

    def forget_all(self) -> None:
        with self.lock:
            self.generation += 1
            self.entries.clear()

    def forget(self, digest: str) -> None:
        with self.lock:
            self.generation += 1
            self.entries.pop(digest, None)

    def listening(self) -> bool:
        if self.pid != os.getpid():
            self._after_fork()
        if self.heard_at and time.monotonic() - self.heard_at <= STALE_SECONDS:
            return True
        if self.heard_at:  # the listener went quiet: nothing it vouched for is trusted
            self.heard_at = 0.0
            self.forget_all()
        if self.listener is None or not self.listener.is_alive():
            self._start()
        return bool(self.heard_at)

    def _after_fork(self) -> None:
        # A forked child has the parent's memory but not its listener thread.
        self.__init__()

    def _start(self) -> None:
        if not self.starting.acquire(blocking=False):
            return  # another thread is starting it; this request looks its key up
        try:
            self._start_once()
        finally:
            self.starting.release()

    def _start_once(self) -> None:
        now = time.monotonic()
        if now < self.retry_at or not _can_listen():
            return
        try:
            conn = _listen_connection()
        except Exception as exc:  # unreachable database: look keys up until it is back
            self.retry_at = now + RETRY_SECONDS  # and do not try on every request meanwhile
            logger.warning("key memory: cannot listen for key changes (%s)", type(exc).__name__)
            return
        self.stopping.clear()
        self.backend_pid = conn.info.backend_pid
        self.forget_all()  # whatever was remembered before now was not watched
        self.heard_at = time.monotonic()
        self.listener = threading.Thread(
            target=self._listen, args=(conn,), name="ingest-key-listener", daemon=True
        )
        self.listener.start()

    def _listen(self, conn) -> None:
        try:
            while not self.stopping.is_set():
                for _ in conn.notifies(timeout=PING_SECONDS, stop_after=1):
                    self.forget_all()
                conn.execute("SELECT 1")  # a dead or cut-off connection raises here
                self.heard_at = time.monotonic()
        except Exception as exc:
            if not self.stopping.is_set():
                logger.warning("key memory: listener lost (%s)", type(exc).__name__)
        finally:
            self.heard_at = 0.0
            self.forget_all()
            try:
                conn.close()
            except Exception:  # noqa: S110 - closing a broken connection may fail too
                pass

    def stop(self) -> None:
        """End the listener (tests, before their database is dropped)."""
        self.stopping.set()
        listener = self.listener
        if listener is not None and listener.is_alive():
            _wake_listeners()
            listener.join(timeout=PING_SECONDS * 3)
        self.listener = None
        self.heard_at = 0.0
        self.retry_at = 0.0
        self.forget_all()


def _can_listen() -> bool:
    return connections[DEFAULT_DB_ALIAS].vendor == "postgresql" and getattr(
        settings, "DATABASE_LISTEN", True
    )


def _wake_listeners() -> None:
    """A notification ends a listener's wait at once (heard by every process as a change)."""
    try:
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, 'stop')", [CHANNEL])
    except Exception:  # noqa: S110 - then the listener ends at its next ping instead
        pass


def _listen_connection():
    """A connection of the listener's own, autocommit, listening on CHANNEL."""
    import psycopg

    params = connections[DEFAULT_DB_ALIAS].get_connection_params()
    for name in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(name, None)
    params.setdefault("connect_timeout", 5)
    conn = psycopg.connect(**params, autocommit=True)
    conn.execute(f"LISTEN {CHANNEL}")
    return conn


_memory = _Memory()


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
