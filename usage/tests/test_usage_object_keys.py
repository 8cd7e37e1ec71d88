"""A provider's own usage object (ProviderAdapter.usage_object_keys): a native API that names
it something other than `usage`. Its stream events repeat it cumulatively: the last one wins,
an event without it never erases it; the ingestion API keeps that object alone for audit.

Exercised on a registered provider given the hook for the test, so the generic code is tested
apart from any provider that uses it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from providers.registry import get_adapter_class
from usage.extraction import RequestUsage, StreamUsageTracker, extract_usage
from usage.extraction.parsing import carries_usage, count_of, last_usage_body, usage_raw
from usage.ingest_apis import event_from_item

KIND = "openai"


def _from_meter(cls, body: dict):
    meter = body.get("meter")
    if not isinstance(meter, dict):
        return None
    return RequestUsage(
        model=str(body.get("model") or ""),
        input_tokens=count_of(meter.get("in"), "meter.in"),
        output_tokens=count_of(meter.get("out"), "meter.out"),
        found=True,
    )


@pytest.fixture(autouse=True)
def own_usage_object(monkeypatch):
    adapter = get_adapter_class(KIND)
    monkeypatch.setattr(adapter, "usage_object_keys", ("meter",))
    monkeypatch.setattr(adapter, "usage_from_final_object", classmethod(_from_meter))


def event(text: str, meter: dict | None = None) -> dict:
    body = {"model": "m-2", "parts": [{"text": text}]}
    if meter is not None:
        body["meter"] = meter
    return body


def sse(*events: dict) -> bytes:
    return b"".join(f"data: {json.dumps(e)}\r\n\r\n".encode() for e in events)


def test_the_last_event_carrying_it_wins_and_one_without_never_erases_it():
    # "meter" holds no "usage": events are still read once the model is known.
    tracker = StreamUsageTracker(KIND, "sse")
    tracker.feed(sse(event("He", {"in": 10, "out": 1}), event("llo", {"in": 10, "out": 4})))
    tracker.feed(sse(event("!")))  # no usage object: the last counts stand

    usage = tracker.usage()

    assert (usage.model, usage.input_tokens, usage.output_tokens) == ("m-2", 10, 4)
    assert usage.found


def test_a_stream_cut_before_any_usage_has_none():
    tracker = StreamUsageTracker(KIND, "sse")
    tracker.feed(sse(event("He")))
    assert tracker.usage().found is False


def test_it_tells_a_body_carrying_it_and_finds_the_last_in_an_array():
    first, second, bare = event("a", {"in": 1}), event("b", {"in": 2}), event("c")

    assert carries_usage(KIND, first) and not carries_usage(KIND, bare)
    assert last_usage_body(KIND, [first, second, bare, 7]) is second
    assert last_usage_body(KIND, [bare]) is None


def test_it_keeps_that_object_alone_for_audit_never_the_content():
    body = event("secret words", {"in": 3, "out": 2})

    assert usage_raw(KIND, body) == {"in": 3, "out": 2}
    recorded = event_from_item(
        kind=KIND, item={"request_id": "r1", "usage": body}, now=datetime.now(UTC)
    )
    assert recorded.raw_usage == {"in": 3, "out": 2}
    assert extract_usage(KIND, body).input_tokens == 3


def test_a_usage_object_still_comes_first():
    assert usage_raw(KIND, {"usage": {"prompt_tokens": 1}, "meter": {"in": 2}}) == {
        "prompt_tokens": 1
    }
