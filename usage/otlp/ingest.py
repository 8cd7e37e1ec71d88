"""Recording an OTLP trace export's GenAI spans for an ingest key's account."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from django.utils import timezone

from providers.models import IngestKey
from usage.otlp.decode import ExportTraceServiceRequest, spans
from usage.otlp.mapping import SpanIgnored, SpanRejected, provider_matcher, span_event
from usage.services.prices import shared_price_book
from usage.services.requests import RequestEvent, request_events_record
from usage.services.tag_values import tag_values_problem, tag_values_refused


@dataclass
class ExportOutcome:
    """What became of each span of one export."""

    created: int = 0
    duplicate: int = 0
    ignored: int = 0
    reasons: Counter = field(default_factory=Counter)  # why spans were rejected -> how many

    @property
    def rejected(self) -> int:
        return sum(self.reasons.values())

    def message(self) -> str:
        """The partial-success error_message: empty when every span was used."""
        if not self.ignored and not self.reasons:
            return ""
        parts = [
            f"{self.created} recorded, {self.duplicate} already recorded, {self.ignored} "
            f"ignored (not GenAI model calls with token usage), {self.rejected} rejected"
        ]
        parts += [f"{reason} ({n})" for reason, n in self.reasons.most_common(5)]
        return "; ".join(parts)


def otlp_export_record(*, key: IngestKey, export: ExportTraceServiceRequest) -> ExportOutcome:
    """Record the GenAI spans of `export` as usage events of the key's account.

    Priced, deduplicated by request id and rolled up by the one write path,
    request_events_record; a span with no `gen_ai.response.id` gets a request id made of its
    trace and span ids, so a re-sent export records nothing twice. Raises IngestKeyInactive,
    writing nothing, when the key is no longer active.
    """
    account = key.account
    matches = provider_matcher(account)
    now = timezone.now()
    outcome = ExportOutcome()
    events: list[RequestEvent] = []
    for span in spans(export):
        try:
            events.append(span_event(span=span, matches=matches, now=now))
        except SpanIgnored:
            outcome.ignored += 1
        except SpanRejected as exc:
            outcome.reasons[str(exc)] += 1
    refused = tag_values_refused(
        account_id=account.pk,
        tagged=[((e.occurred_at or now).date(), e.tags) for e in events],
    )
    for tag in refused.values():
        outcome.reasons[f"{tag}: {tag_values_problem(tag)}"] += 1
    events = [e for i, e in enumerate(events) if i not in refused]
    reasons: dict[str, str] = {}
    results = request_events_record(
        account=account,
        events=events,
        reasons=reasons,
        book=shared_price_book(),
        ingest_key_id=key.pk,
    )
    seen: set[str] = set()
    for event in events:
        # Spans repeating a request id within the export: the first one counts.
        status = "duplicate" if event.request_id in seen else results[event.request_id]
        seen.add(event.request_id)
        if status == "created":
            outcome.created += 1
        elif status == "duplicate":
            outcome.duplicate += 1
        else:
            outcome.reasons[reasons.get(event.request_id, "could not be stored")] += 1
    return outcome
