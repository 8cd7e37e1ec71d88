"""Encryption of stored provider secrets with MultiFernet.

Keys come from settings.ENCRYPTION_KEYS (env `ENCRYPTION_KEYS`, comma-separated Fernet keys):
the first key encrypts, every key decrypts, so an operator rotates by putting a new key first
and running `manage.py rotate_encryption_keys`. The keys are independent of SECRET_KEY on
purpose: changing SECRET_KEY (sessions, CSRF) must never make stored secrets unreadable.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class SecretUnreadable(Exception):
    """A stored secret could not be decrypted with any configured key."""


@lru_cache(maxsize=4)
def _fernet_for(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("ENCRYPTION_KEYS is empty: secrets cannot be encrypted.")
    try:
        return MultiFernet([Fernet(k.strip().encode()) for k in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "ENCRYPTION_KEYS must be comma-separated Fernet keys "
            "(generate one with `python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'`)."
        ) from exc


def _fernet() -> MultiFernet:
    return _fernet_for(tuple(settings.ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    return _decrypt(tuple(settings.ENCRYPTION_KEYS), token)


# The proxy reveals the account's provider key on every call, and a Fernet decryption costs
# ~0.15 ms (HMAC, AES, base64). A token always decrypts to the same plaintext under the same
# keys, so a process remembers the last few; they are in its memory while in use anyway, and
# forgotten whenever an account changes (providers/key_memory.py).
@lru_cache(maxsize=256)
def _decrypt(keys: tuple[str, ...], token: str) -> str:
    try:
        return _fernet_for(keys).decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable("stored secret cannot be decrypted with ENCRYPTION_KEYS") from exc


def rotate(token: str) -> str:
    """Re-encrypt a token with the first key (MultiFernet.rotate keeps the timestamp)."""
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable("stored secret cannot be decrypted with ENCRYPTION_KEYS") from exc


def forget_decrypted() -> None:
    _decrypt.cache_clear()
