"""The one place secrets are taken out of text before it is logged, stored or shown.

Two layers: the exact secrets of the account being called (set for the duration of an adapter
call with :func:`secrets_redacted`, so every :class:`providers.http.ProviderError` built inside
it is redacted as it is made), and, as a fallback for a secret we were never told about,
anything shaped like a known provider token or a bearer credential.
"""

from __future__ import annotations

import json
import logging
import re
import traceback
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from urllib.parse import quote

REDACTED = "[redacted]"
# Shorter strings are too likely to occur in ordinary text to be replaced blindly.
MIN_SECRET_CHARS = 8

# Credential shapes that are not any one provider's: our own ingest (cti_) and API (ctk_)
# tokens, and whatever follows "Bearer ". Each provider's own key shapes are declared by its
# adapter (ProviderAdapter.secret_shapes) and joined to these on first use.
_GENERIC_SHAPES = (
    r"\bct[ik]_[A-Za-z0-9_\-]{16,}",  # ingest keys (IngestKey.PREFIX), API tokens (ApiToken)
    r"(?<=[Bb]earer\ )[A-Za-z0-9._~+/=\-]{12,}",  # Authorization: Bearer <anything>
)


@cache
def _token_shapes() -> re.Pattern[str]:
    from providers.registry import ADAPTERS, get_adapter_class

    own = (shape for kind in ADAPTERS for shape in get_adapter_class(kind).secret_shapes)
    return re.compile("|".join(dict.fromkeys((*_GENERIC_SHAPES, *own))))


_active: ContextVar[tuple[str, ...]] = ContextVar("provider_secrets", default=())


def _variants(secret: str) -> Iterator[str]:
    # The secret as sent, as a JSON string would escape it, and as a URL would encode it.
    yield secret
    yield json.dumps(secret)[1:-1]
    yield quote(secret, safe="")


def redact(text: str, secrets: Iterable[str] = (), *, shapes: bool = True) -> str:
    """``text`` with every given secret, and (unless ``shapes`` is off: a body relayed to its
    client) every token-shaped string, replaced."""
    if not text:
        return text
    for secret in sorted({*secrets, *_active.get()}, key=len, reverse=True):
        if secret and len(secret) >= MIN_SECRET_CHARS:
            for variant in _variants(secret):
                text = text.replace(variant, REDACTED)
    return _token_shapes().sub(REDACTED, text) if shapes else text


def active_secrets() -> tuple[str, ...]:
    return _active.get()


@contextmanager
def secrets_redacted(secrets: Iterable[str]) -> Iterator[None]:
    """While inside, :func:`redact` (and so every ProviderError) also removes ``secrets``."""
    token = _active.set((*_active.get(), *(s for s in secrets if s)))
    try:
        yield
    finally:
        _active.reset(token)


class RedactingFilter(logging.Filter):
    """A logger filter that redacts a record's message and traceback before any handler sees
    it (the secrets of the call in progress and every token-shaped string)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[0] is not None:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_text = redact(text)
            record.exc_info = None
        return True


def redacted_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with a :class:`RedactingFilter` attached (once)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
    return logger
