"""POST /v1/traces: OTLP/HTTP exports whose GenAI spans become usage events.

Spans come from the real OpenTelemetry SDK and its OTLP/HTTP exporter (protobuf), posted to a
live server, and from hand-written OTLP JSON. Every expected figure is worked out by hand in
the comment beside it.
"""

from __future__ import annotations

import gzip
import json
from decimal import Decimal

import pytest
import requests
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status as SpanStatus
from opentelemetry.trace import StatusCode

from providers.models import IngestKey
from providers.registry import kinds_for_otel_provider
from providers.services import ingest_key_create, ingest_key_revoke
from providers.tests.factories import AccountFactory, provider
from usage.models import DailyUsage, Price, RecordStatus, UsageRecord
from usage.services.prices import EPOCH

D = Decimal
PER_M = D("0.000001")
URL = "/v1/traces"
PROTOBUF = "application/x-protobuf"
# 2026-08-01T16:00:01.25Z, as OTLP times are: nanoseconds since the epoch.
END_NS = 1_785_600_001_250_000_000
START_NS = 1_785_600_000_000_000_000


@pytest.fixture
def openai_prices():
    Price.objects.create(
        provider=provider("openai"),
        model="gpt-4o",
        valid_from=EPOCH,
        input_per_token=D("2.50") * PER_M,
        cache_read_per_token=D("1.25") * PER_M,
        output_per_token=D("10") * PER_M,
    )


@pytest.fixture
def anthropic_prices():
    Price.objects.create(
        provider=provider("anthropic"),
        model="claude-sonnet-4-5",
        valid_from=EPOCH,
        input_per_token=D("3") * PER_M,
        cache_read_per_token=D("0.30") * PER_M,
        cache_write_per_token=D("3.75") * PER_M,
        output_per_token=D("15") * PER_M,
    )


def key_for(slug: str) -> str:
    raw, _ = ingest_key_create(account=AccountFactory(provider=provider(slug)), name="otel")
    return raw


# --- spans made by the real OpenTelemetry SDK ---------------------------------------------------


def sdk_spans(*, service: str = "billing-bot") -> list:
    """Finished SDK spans: an OpenAI chat call with cache and reasoning counts, a plain HTTP
    span, an Anthropic call (another provider) and an OpenAI call without a response id."""
    memory = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": service}))
    tracer_provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = tracer_provider.get_tracer("opentelemetry.instrumentation.openai_v2")
    with tracer.start_as_current_span(
        "POST /checkout", start_time=START_NS, end_on_exit=False
    ) as root:
        chat = tracer.start_span("chat gpt-4o", start_time=START_NS)
        chat.set_attributes(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.response.model": "gpt-4o",
                "gen_ai.response.id": "chatcmpl-otel-1",
                "gen_ai.usage.input_tokens": 1200,
                "gen_ai.usage.cache_read.input_tokens": 1024,
                "gen_ai.usage.output_tokens": 85,
                "gen_ai.usage.reasoning.output_tokens": 40,
                "enduser.id": "user-7",
            }
        )
        chat.end(end_time=END_NS)
        other = tracer.start_span("chat claude", start_time=START_NS)
        other.set_attributes(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "anthropic",
                "gen_ai.request.model": "claude-sonnet-4-5",
                "gen_ai.usage.input_tokens": 10,
                "gen_ai.usage.output_tokens": 5,
            }
        )
        other.end(end_time=END_NS)
        unnamed = tracer.start_span("chat gpt-4o", start_time=START_NS)
        unnamed.set_attributes(
            {
                "gen_ai.system": "openai",  # the older attribute name
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.prompt_tokens": 2000,  # the older count names
                "gen_ai.usage.completion_tokens": 0,
            }
        )
        unnamed.set_status(SpanStatus(StatusCode.ERROR, "stream cut"))
        unnamed.end(end_time=END_NS)
        root.end(end_time=END_NS)
    tracer_provider.shutdown()
    return list(memory.get_finished_spans())


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_it_records_genai_spans_from_the_sdk_exporter(live_server, openai_prices, monkeypatch):
    raw = key_for("openai")
    # Configured as the README says, by the environment alone.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{live_server.url}{URL}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer%20{raw}")
    exporter = OTLPSpanExporter()
    spans = sdk_spans()
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    records = {r.request_id: r for r in UsageRecord.objects.all()}
    assert len(records) == 2  # two OpenAI calls; the HTTP span ignored, Anthropic's rejected
    chat = records["chatcmpl-otel-1"]
    # 1,200 input of which 1,024 cached: 176 uncached; output 85 of which 40 reasoning
    assert (chat.input_tokens, chat.cache_read_tokens, chat.cache_write_tokens) == (176, 1024, 0)
    assert (chat.output_tokens, chat.reasoning_tokens) == (85, 40)
    # 176 × $2.50/M + 1,024 × $1.25/M + 85 × $10/M = 0.00044 + 0.00128 + 0.00085
    assert chat.cost == D("0.00257")
    assert chat.model == "gpt-4o"
    assert chat.tags == {"project": "billing-bot", "user": "user-7"}
    assert chat.bucket_start.isoformat() == "2026-08-01T16:00:01.250000+00:00"  # span end
    [unnamed] = [r for r in records.values() if r.request_id.startswith("otel:")]
    span = next(s for s in spans if s.attributes.get("gen_ai.system"))
    trace_hex = f"{span.context.trace_id:032x}"
    assert unnamed.request_id == f"otel:{trace_hex}:{span.context.span_id:016x}"
    assert unnamed.status == RecordStatus.INCOMPLETE  # span status ERROR, usage reported
    assert unnamed.cost == D("0.005")  # 2,000 × $2.50/M
    assert DailyUsage.objects.get().cost == D("0.00757")  # 0.00257 + 0.005


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_it_counts_a_resent_gzipped_export_once_and_answers_in_protobuf(live_server, openai_prices):
    raw = key_for("openai")
    exporter = OTLPSpanExporter(
        endpoint=f"{live_server.url}{URL}",
        headers={"Authorization": f"Bearer {raw}"},
        compression=Compression.Gzip,
    )
    spans = sdk_spans()
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    assert exporter.export(spans) == SpanExportResult.SUCCESS  # an exporter's retry
    assert UsageRecord.objects.count() == 2
    day = DailyUsage.objects.get()
    assert (day.record_count, day.cost) == (2, D("0.00757"))  # as after one export
    # The same bytes the exporter sends, posted by hand to read the protobuf answer.
    body = gzip.compress(encode_spans(spans).SerializeToString())
    reply = requests.post(
        f"{live_server.url}{URL}",
        data=body,
        headers={
            "Authorization": f"Bearer {raw}",
            "Content-Type": PROTOBUF,
            "Content-Encoding": "gzip",
        },
        timeout=10,
    )
    assert reply.status_code == 200
    assert reply.headers["Content-Type"] == PROTOBUF
    answer = ExportTraceServiceResponse.FromString(reply.content)
    assert answer.partial_success.rejected_spans == 1  # Anthropic's span
    message = answer.partial_success.error_message
    assert "0 recorded, 2 already recorded, 1 ignored" in message
    assert (
        "gen_ai.provider.name: 'anthropic' is not this ingest key's account's provider" in message
    )
    assert UsageRecord.objects.count() == 2


# --- hand-written OTLP JSON -----------------------------------------------------------------------


def attr(key: str, value) -> dict:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}  # int64 as a string
    return {"key": key, "value": {"stringValue": value}}


def span_json(span_id: str, attributes: dict, **extra) -> dict:
    return {
        "traceId": "5B8EFFF798038103D269B633813FC60C",
        "spanId": span_id,
        "name": "chat",
        "kind": 3,
        "startTimeUnixNano": str(START_NS),
        "endTimeUnixNano": str(END_NS),
        "attributes": [attr(k, v) for k, v in attributes.items()],
        "status": {"code": 1},
        **extra,
    }


def export_json(*spans: dict, service: str = "support-bot") -> dict:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [attr("service.name", service)]},
                "scopeSpans": [
                    {"scope": {"name": "openllmetry", "version": "0.50"}, "spans": list(spans)}
                ],
            }
        ]
    }


CLAUDE = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "anthropic",
    "gen_ai.request.model": "claude-sonnet-4-5",
    "gen_ai.response.id": "msg_01",
    "gen_ai.usage.input_tokens": 3000,
    "gen_ai.usage.cache_read.input_tokens": 1000,
    "gen_ai.usage.cache_creation.input_tokens": 500,
    "gen_ai.usage.output_tokens": 200,
    "user.id": "alice",
}


def post(client, key: str | None, body, *, content_type="application/json", **headers):
    if key:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    data = body if isinstance(body, bytes) else json.dumps(body)
    return client.post(URL, data=data, content_type=content_type, **headers)


@pytest.mark.django_db
def test_it_reads_otlp_json_with_cache_writes(client, anthropic_prices):
    key = key_for("anthropic")
    reply = post(client, key, export_json(span_json("EEE19B7EC3C1B174", CLAUDE)))
    assert reply.status_code == 200
    assert reply["Content-Type"] == "application/json"
    assert reply.json() == {}  # everything used: no partialSuccess
    record = UsageRecord.objects.get()
    assert record.request_id == "msg_01"
    # 3,000 input includes 1,000 cache reads and 500 cache writes: 1,500 uncached
    assert (record.input_tokens, record.cache_read_tokens, record.cache_write_tokens) == (
        1500,
        1000,
        500,
    )
    # 1,500 × $3/M + 1,000 × $0.30/M + 500 × $3.75/M + 200 × $15/M
    # = 0.0045 + 0.0003 + 0.001875 + 0.003 = 0.009675
    assert record.cost == D("0.009675")
    assert record.tags == {"project": "support-bot", "user": "alice"}
    assert record.raw["usage"]["otel"] == {
        "trace_id": "5b8efff798038103d269b633813fc60c",
        "span_id": "eee19b7ec3c1b174",
    }


@pytest.mark.django_db
def test_it_takes_uncached_input_as_is_when_the_cache_counts_exceed_it(client, anthropic_prices):
    key = key_for("anthropic")
    # Traceloop's Anthropic instrumentation has reported Anthropic's own input_tokens, which
    # leave the cache out: 100 < 1,000 + 500 cannot include them.
    attributes = {**CLAUDE, "gen_ai.usage.input_tokens": 100}
    assert post(client, key, export_json(span_json("EEE19B7EC3C1B174", attributes))).json() == {}
    record = UsageRecord.objects.get()
    assert (record.input_tokens, record.cache_read_tokens, record.cache_write_tokens) == (
        100,
        1000,
        500,
    )
    # 100 × $3/M + 1,000 × $0.30/M + 500 × $3.75/M + 200 × $15/M
    # = 0.0003 + 0.0003 + 0.001875 + 0.003 = 0.005475
    assert record.cost == D("0.005475")


@pytest.mark.django_db
def test_it_accepts_gzipped_json_and_counts_a_resend_once(client, openai_prices):
    key = key_for("openai")
    attributes = {
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 1000,
        "gen_ai.usage.output_tokens": 100,
    }
    body = gzip.compress(
        json.dumps(export_json(span_json("00000000000000A1", attributes))).encode()
    )
    for _ in range(2):
        reply = post(client, key, body, HTTP_CONTENT_ENCODING="gzip")
        assert reply.status_code == 200
    record = UsageRecord.objects.get()
    assert record.request_id == "otel:5b8efff798038103d269b633813fc60c:00000000000000a1"
    assert record.cost == D("0.0035")  # 1,000 × $2.50/M + 100 × $10/M
    assert DailyUsage.objects.get().cost == D("0.0035")  # once


@pytest.mark.django_db
def test_it_ignores_spans_without_genai_usage_and_rejects_other_providers(client, openai_prices):
    key = key_for("openai")
    spans = [
        span_json("0000000000000001", {"http.method": "GET"}),  # not GenAI
        span_json(  # GenAI, but an agent span: its usage repeats its children's
            "0000000000000002",
            {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.provider.name": "openai",
                "gen_ai.usage.input_tokens": 5000,
            },
        ),
        span_json(  # a tool call: no usage
            "0000000000000003",
            {"gen_ai.operation.name": "execute_tool", "gen_ai.provider.name": "openai"},
        ),
        span_json("0000000000000004", CLAUDE),  # another provider than the key's
        span_json(  # no model
            "0000000000000005",
            {"gen_ai.provider.name": "openai", "gen_ai.usage.input_tokens": 5},
        ),
        span_json(  # a count that is no count
            "0000000000000006",
            {
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": "many",
            },
        ),
        span_json(  # ended in 1990
            "0000000000000007",
            {**CLAUDE, "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"},
            endTimeUnixNano="631152000000000000",
        ),
    ]
    reply = post(client, key, export_json(*spans))
    assert reply.status_code == 200
    partial = reply.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "4"  # int64 as a string, as OTLP JSON has it
    message = partial["errorMessage"]
    assert message.startswith("0 recorded, 0 already recorded, 3 ignored")
    assert "'anthropic' is not this ingest key's account's provider (1)" in message
    assert "gen_ai.response.model: required" in message
    assert "gen_ai.usage.input_tokens: expected a non-negative whole number" in message
    assert "endTimeUnixNano: out of range" in message
    assert not UsageRecord.objects.exists()


@pytest.mark.django_db
def test_it_counts_the_vercel_ai_sdks_model_call_once(client, openai_prices):
    key = key_for("openai")
    outer = span_json(  # ai.generateText: the call's total, in the SDK's own names only
        "0000000000000001",
        {
            "ai.model.provider": "openai.chat",
            "ai.model.id": "gpt-4o",
            "ai.usage.promptTokens": 1000,
            "ai.usage.completionTokens": 100,
        },
    )
    inner = span_json(  # ai.generateText.doGenerate: the model call, with gen_ai.*
        "0000000000000002",
        {
            "gen_ai.system": "openai.chat",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.id": "chatcmpl-vercel",
            "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.output_tokens": 100,
        },
    )
    reply = post(client, key, export_json(outer, inner))
    assert reply.json()["partialSuccess"]["errorMessage"].startswith("1 recorded, 0 already")
    assert reply.json()["partialSuccess"].get("rejectedSpans", "0") == "0"
    record = UsageRecord.objects.get()
    assert record.request_id == "chatcmpl-vercel"
    assert record.cost == D("0.0035")  # 1,000 × $2.50/M + 100 × $10/M, counted once


@pytest.mark.django_db
def test_it_takes_the_provider_from_server_address_behind_an_openai_client(client):
    key = key_for("groq")
    attributes = {
        "gen_ai.provider.name": "openai",  # the OpenAI SDK's instrumentation, pointed at Groq
        "gen_ai.request.model": "llama-3.1-8b-instant",
        "gen_ai.usage.input_tokens": 10,
        "gen_ai.usage.output_tokens": 5,
    }
    elsewhere = span_json("0000000000000001", attributes)
    at_groq = span_json("0000000000000002", {**attributes, "server.address": "api.groq.com"})
    reply = post(client, key, export_json(elsewhere, at_groq))
    assert reply.json()["partialSuccess"]["rejectedSpans"] == "1"
    record = UsageRecord.objects.get()
    assert record.request_id.endswith(":0000000000000002")
    assert record.cost is None  # no Groq price in this test's book: unpriced, never $0
    assert record.tags == {"project": "support-bot"}


@pytest.mark.django_db
def test_it_takes_a_numeric_user_id_and_rejects_a_tag_past_its_bounds(client, openai_prices):
    key = key_for("openai")
    attributes = {
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 10,
    }
    spans = [
        span_json("0000000000000001", {**attributes, "enduser.id": 42}),
        span_json("0000000000000002", {**attributes, "user.id": "x" * 201}),
    ]
    reply = post(client, key, export_json(*spans))
    partial = reply.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1"
    assert "user.id: at most 200 characters (1)" in partial["errorMessage"]
    record = UsageRecord.objects.get()
    assert record.tags == {"project": "support-bot", "user": "42"}
    assert record.cost == D("0.000025")  # 10 × $2.50/M


@pytest.mark.django_db
def test_it_rejects_a_count_in_digits_int_cannot_read(client, openai_prices):
    """ "²" passes str.isdigit() but not int(): the span is rejected, the export answered."""
    key = key_for("openai")
    attributes = {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"}
    spans = [
        span_json("0000000000000001", {**attributes, "gen_ai.usage.input_tokens": "²"}),
        span_json("0000000000000002", {**attributes, "gen_ai.usage.input_tokens": "10"}),
    ]
    reply = post(client, key, export_json(*spans))
    assert reply.status_code == 200
    assert reply.json()["partialSuccess"]["rejectedSpans"] == "1"
    assert UsageRecord.objects.get().cost == D("0.000025")  # the other: 10 × $2.50/M


def test_it_maps_otel_provider_names_to_our_kinds_in_the_adapters():
    assert kinds_for_otel_provider("x_ai") == {"xai"}
    assert kinds_for_otel_provider("xai") == {"xai"}  # the older gen_ai.system value
    assert kinds_for_otel_provider("gcp.gemini") == {"gemini"}
    assert kinds_for_otel_provider("Anthropic") == {"anthropic"}
    assert kinds_for_otel_provider("openai") == {"openai", "openai_compatible"}
    assert kinds_for_otel_provider("aws.bedrock") == frozenset()  # no adapter for it
    # The Vercel AI SDK's provider ids, <provider>.<api>
    assert kinds_for_otel_provider("anthropic.messages") == {"anthropic"}
    assert kinds_for_otel_provider("mistral.chat") == {"mistral"}
    assert kinds_for_otel_provider("google.generative-ai") == {"gemini"}
    assert kinds_for_otel_provider("gcp.vertex_ai") == frozenset()  # not "gcp" then


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "content_type", "headers", "says"),
    [
        (b"\xff\xff\xff", PROTOBUF, {}, "not an ExportTraceServiceRequest"),
        (b'{"resourceSpans": [', "application/json", {}, "malformed JSON"),
        (b'{"resourceSpans": 3}', "application/json", {}, "not an OTLP trace export"),
        (b"not gzip", "application/json", {"HTTP_CONTENT_ENCODING": "gzip"}, "not valid gzip"),
        (
            json.dumps(export_json(span_json("zz", CLAUDE))).encode(),
            "application/json",
            {},
            "spanId: expected a hex string",
        ),
    ],
)
def test_it_answers_400_with_a_status_for_a_malformed_export(
    client, body, content_type, headers, says
):
    key = key_for("openai")
    reply = post(client, key, body, content_type=content_type, **headers)
    assert reply.status_code == 400
    assert reply["Content-Type"] == content_type
    if content_type == PROTOBUF:
        status = Status.FromString(reply.content)
        code, message = status.code, status.message
    else:
        code, message = reply.json()["code"], reply.json()["message"]
    assert code == 3  # INVALID_ARGUMENT
    assert says in message
    assert not UsageRecord.objects.exists()


@pytest.mark.django_db
def test_it_answers_401_without_a_valid_key(client):
    body = export_json(span_json("0000000000000001", CLAUDE))
    revoked = key_for("anthropic")
    ingest_key_revoke(key=IngestKey.objects.get())
    for key in (None, "cti_not-a-key", revoked):
        reply = post(client, key, body)
        assert reply.status_code == 401
        assert reply.json()["code"] == 16  # UNAUTHENTICATED
        assert reply["WWW-Authenticate"].startswith("Bearer")
    assert not UsageRecord.objects.exists()


@pytest.mark.django_db
def test_it_answers_413_past_the_body_limit_also_once_decompressed(client, settings):
    settings.INGEST_MAX_BODY_BYTES = 2000
    key = key_for("openai")
    big = json.dumps(export_json(*[span_json(f"{n:016x}", CLAUDE) for n in range(20)])).encode()
    assert len(big) > 2000
    assert post(client, key, big).status_code == 413
    small_but_big = gzip.compress(big)
    assert len(small_but_big) < 2000  # under the limit as sent, over it decompressed
    reply = post(client, key, small_but_big, HTTP_CONTENT_ENCODING="gzip")
    assert reply.status_code == 413
    assert reply.json()["code"] == 8  # RESOURCE_EXHAUSTED


@pytest.mark.django_db
def test_it_answers_415_for_another_content_type_and_an_empty_export_is_a_success(client):
    key = key_for("openai")
    assert post(client, key, b"x", content_type="text/plain").status_code == 415
    # (The test client leaves the Content-Type of an empty body out unless told.)
    reply = post(client, key, b"", content_type=PROTOBUF, CONTENT_TYPE=PROTOBUF)
    assert reply.status_code == 200
    assert ExportTraceServiceResponse.FromString(reply.content) == ExportTraceServiceResponse()
