"""One OpenTelemetry span -> one RequestEvent, by the GenAI semantic conventions.

Facts: ../shared/reference/otel-genai.md (semantic-conventions gen-ai spans and registry).

- A span counts when it names a provider (`gen_ai.provider.name`, or the older `gen_ai.system`),
  is a model call (`gen_ai.operation.name` chat, generate_content, text_completion, embeddings,
  or not given) and carries token counts. Anything else is ignored: agent, tool and workflow
  spans may repeat their children's usage, and would count it twice. (The Vercel AI SDK's
  outer `ai.generateText` spans carry `ai.usage.*` but no provider: their `doGenerate` child,
  which has `gen_ai.*`, is the one counted.)
- Counts: the current names first, then the deprecated and vendor spellings (Traceloop's
  underscore cache names, Sentry's `.cached` / `.reasoning` subsets). Per the conventions,
  `gen_ai.usage.input_tokens` INCLUDES cache reads and writes, and output includes reasoning;
  our RequestUsage keeps uncached input apart (usage.extraction), so uncached input is
  input - cache read - cache write. An emitter whose cache counts exceed its input evidently
  reported uncached input (as Anthropic's own API does): its input is taken as it is.
- Provider: the ingest key's account must be the span's provider, by its adapter's
  ``otel_provider_names`` (providers.registry.kinds_for_otel_provider), or by `server.address`
  being its API's host (an OpenAI SDK pointed at another provider still names OpenAI).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from providers.models import ProviderAccount
from providers.registry import get_adapter_class, kinds_for_otel_provider
from usage.bounds import tag_problem
from usage.extraction import RequestUsage
from usage.ingest_apis import EARLIEST, FUTURE_SLACK, MAX_ID_LENGTH
from usage.models import RecordStatus
from usage.otlp.decode import Span
from usage.services.requests import RequestEvent

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
STATUS_ERROR = 2

PROVIDER = ("gen_ai.provider.name", "gen_ai.system")
MODEL = ("gen_ai.response.model", "gen_ai.request.model")
MODEL_CALLS = frozenset({"chat", "generate_content", "text_completion", "embeddings"})
INPUT = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
OUTPUT = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
CACHE_READ = (
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",  # Traceloop / OpenLLMetry
    "gen_ai.usage.input_tokens.cached",  # Sentry
)
CACHE_WRITE = (
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",  # Traceloop / OpenLLMetry
)
REASONING = (
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.output_tokens.reasoning",  # Sentry
)
USER = ("enduser.id", "user.id")
# The SDKs' stand-in when an app names no service: not a project.
_UNNAMED_SERVICE = "unknown_service"


class SpanIgnored(Exception):
    """Not a GenAI model call with usage: nothing to record, nothing wrong."""


class SpanRejected(ValueError):
    """A GenAI span that cannot be recorded; the message says why, naming the attribute."""


def provider_matcher(account: ProviderAccount) -> Callable[[str, str], bool]:
    """Whether a span's (provider name, server.address) is this account's provider."""
    kind = account.provider.slug
    adapter = get_adapter_class(kind)
    hosts = {
        (urlsplit(url).hostname or "").lower()
        for url in (adapter.default_base_url, account.provider.base_url)
        if url
    } - {""}

    def matches(name: str, server: str) -> bool:
        return kind in kinds_for_otel_provider(name) or server.strip().lower() in hosts

    return matches


def _first(attributes: Mapping[str, Any], names: tuple[str, ...]) -> tuple[str, Any]:
    for name in names:
        value = attributes.get(name)
        if value is not None and value != "":
            return name, value
    return names[0], None


def _count(attributes: Mapping[str, Any], names: tuple[str, ...]) -> int | None:
    name, value = _first(attributes, names)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())  # ASCII only: "²".isdigit() is True, int("²") raises
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SpanRejected(f"{name}: expected a non-negative whole number")
    return value


def _text(attributes: Mapping[str, Any], names: tuple[str, ...]) -> tuple[str, str]:
    name, value = _first(attributes, names)
    if value is None:
        return name, ""
    if not isinstance(value, str):
        raise SpanRejected(f"{name}: expected a string")
    return name, value.strip()


def _end_time(span: Span, now: datetime) -> datetime | None:
    """The span's end (its start without one); the ingestion API's bounds on event times."""
    nanos = span.end_time_unix_nano or span.start_time_unix_nano
    if not nanos:
        return None
    at = _EPOCH + timedelta(microseconds=nanos // 1000)
    if at < EARLIEST or at > now + FUTURE_SLACK:
        raise SpanRejected("endTimeUnixNano: out of range (after 2000 and not in the future)")
    return at


def _tag_text(attributes: Mapping[str, Any], names: tuple[str, ...]) -> tuple[str, str]:
    """A tag's text; a whole number (a numeric user id) is taken as its digits."""
    name, value = _first(attributes, names)
    if isinstance(value, int) and not isinstance(value, bool):
        return name, str(value)
    return _text(attributes, names)


def _tags(span: Span) -> dict[str, str]:
    tags = {}
    name, project = _text(span.resource, ("service.name",))
    if project and not project.startswith(_UNNAMED_SERVICE):
        tags["project"] = (name, project)
    name, user = _tag_text(span.attributes, USER)
    if not user:
        name, user = _tag_text(span.resource, USER)
    if user:
        tags["user"] = (name, user)
    for name, value in tags.values():
        if problem := tag_problem(value):
            raise SpanRejected(f"{name}: {problem}")
    return {tag: value for tag, (_, value) in tags.items()}


def _printable(name: str, value: str) -> str:
    if len(value) > MAX_ID_LENGTH:
        raise SpanRejected(f"{name}: at most {MAX_ID_LENGTH} characters")
    if not value.isprintable():
        raise SpanRejected(f"{name}: control characters are not allowed")
    return value


def span_event(*, span: Span, matches: Callable[[str, str], bool], now: datetime) -> RequestEvent:
    """The usage event of a GenAI span. SpanIgnored when it is not one (no provider, not a
    model call, no token counts); SpanRejected, naming the attribute, when it cannot be
    recorded (another provider than the key's account's, no model, a bad count or time)."""
    attrs = span.attributes
    provider_attr, provider = _first(attrs, PROVIDER)
    if not isinstance(provider, str) or not provider.strip():
        raise SpanIgnored()
    operation = attrs.get("gen_ai.operation.name")
    if isinstance(operation, str) and operation and operation not in MODEL_CALLS:
        raise SpanIgnored()
    input_total = _count(attrs, INPUT)
    output = _count(attrs, OUTPUT)
    if input_total is None and output is None:
        raise SpanIgnored()
    _, server = _text(attrs, ("server.address",))
    if not matches(provider, server):
        raise SpanRejected(
            f"{provider_attr}: {provider.strip()[:60]!r} is not this ingest key's "
            "account's provider"
        )
    model_attr, model = _text(attrs, MODEL)
    if not model:
        raise SpanRejected("gen_ai.response.model: required (or gen_ai.request.model)")
    model = _printable(model_attr, model)
    input_total, output = input_total or 0, output or 0
    cache_read = _count(attrs, CACHE_READ) or 0
    cache_write = _count(attrs, CACHE_WRITE) or 0
    reasoning = _count(attrs, REASONING) or 0
    cached = cache_read + cache_write
    uncached = input_total - cached if cached <= input_total else input_total
    if reasoning > output:  # the emitter left reasoning out of output
        output += reasoning
    _, response_id = _text(attrs, ("gen_ai.response.id",))
    if not response_id or len(response_id) > MAX_ID_LENGTH or not response_id.isprintable():
        # Stable across re-sends of the same export: a retried export is not counted twice.
        response_id = ""
    request_id = response_id or f"otel:{span.trace_id}:{span.span_id}"
    usage = RequestUsage(
        model=model,
        response_id=response_id,
        input_tokens=uncached,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        output_tokens=output,
        reasoning_tokens=reasoning,
        found=True,
    )
    raw = {
        name: attrs[name]
        for name in (*PROVIDER, *MODEL, *INPUT, *OUTPUT, *CACHE_READ, *CACHE_WRITE, *REASONING)
        if name in attrs
    }
    raw["otel"] = {"trace_id": span.trace_id, "span_id": span.span_id}
    return RequestEvent(
        request_id=request_id,
        usage=usage,
        occurred_at=_end_time(span, now),
        # A failed span that still reports usage was cut short: priced from what it used.
        status=RecordStatus.INCOMPLETE if span.status_code == STATUS_ERROR else RecordStatus.OK,
        tags=_tags(span),
        raw_usage=raw,
    )
