"""A model field that stores a secret encrypted and never hands out its plaintext by accident."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models

from providers import crypto


class SealedSecret:
    """An encrypted value read from the database.

    It prints as a mask, so a secret cannot leak through repr(), a template, a log line or an
    error report; code that really needs the plaintext (a sync, the proxy) calls reveal().
    """

    __slots__ = ("ciphertext",)

    def __init__(self, ciphertext: str) -> None:
        self.ciphertext = ciphertext

    def reveal(self) -> str:
        return crypto.decrypt(self.ciphertext)

    def __str__(self) -> str:
        return "••••••••"

    __repr__ = __str__

    def __bool__(self) -> bool:
        return bool(self.ciphertext)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SealedSecret) and other.ciphertext == self.ciphertext

    def __hash__(self) -> int:
        return hash(self.ciphertext)


class EncryptedSecretField(models.TextField):
    """Stores a Fernet token. Assign a plain str to set a secret; reads give a SealedSecret."""

    def from_db_value(self, value, expression, connection):
        if value in (None, ""):
            return None
        return SealedSecret(value)

    def to_python(self, value):
        if value is None or isinstance(value, SealedSecret):
            return value
        return value  # a plain str that is yet to be encrypted on save

    def get_prep_value(self, value):
        if value in (None, ""):
            return None
        if isinstance(value, SealedSecret):
            return value.ciphertext
        return crypto.encrypt(str(value))

    def value_to_string(self, obj):
        # dumpdata/serialisers get the ciphertext, never the plaintext.
        value = self.value_from_object(obj)
        return value.ciphertext if isinstance(value, SealedSecret) else ""


def secret_text_validate(value: str | None) -> None:
    """A provider key travels in an HTTP header: printable ASCII, no spaces. A pasted key with
    a stray character would otherwise fail on every call, far from where it was typed. The one
    rule for the account form, the API and the admin."""
    if value and not (value.isascii() and value.isprintable() and " " not in value):
        raise ValidationError("Use printable ASCII characters only, no spaces.")
