"""OTLP/HTTP trace exports: request bytes -> ExportTraceServiceRequest -> spans with attributes.

Both OTLP/HTTP encodings (opentelemetry-proto `docs/specification.md`): binary protobuf
(`application/x-protobuf`) and the OTLP JSON mapping (`application/json`: lowerCamelCase keys,
trace and span ids as hex rather than proto3-JSON's base64, 64-bit integers as strings or
numbers, enums as integers, unknown fields ignored). `Content-Encoding: gzip` is undone first,
with the size limit applied to the decompressed bytes too.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


class MalformedExport(ValueError):
    """The export cannot be read (bad gzip, protobuf or JSON); the message says why."""


class ExportTooLarge(ValueError):
    """The export, once decompressed, is past the size limit."""


def encoding_of(content_type: str) -> str | None:
    """PROTOBUF or JSON for a request's Content-Type (parameters ignored); None otherwise."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media if media in (PROTOBUF, JSON) else None


def decompressed(body: bytes, *, content_encoding: str, limit: int) -> bytes:
    """The body without its Content-Encoding (identity or gzip), at most `limit` bytes."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise MalformedExport(f"Content-Encoding {encoding[:40]!r} is not supported (use gzip)")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise MalformedExport(f"body is not valid gzip: {exc}") from None
    if len(out) > limit:
        raise ExportTooLarge()
    if not inflater.eof:
        raise MalformedExport("body is not valid gzip: truncated")
    return out


def _hex_ids_to_base64(data: Any) -> None:
    """The OTLP JSON ids (hex) as proto3 JSON wants bytes (base64), in place."""
    for resource_spans in _items(data, "resourceSpans", "resource_spans"):
        for scope_spans in _items(resource_spans, "scopeSpans", "scope_spans"):
            for span in _items(scope_spans, "spans"):
                _convert_ids(span)
                for link in _items(span, "links"):
                    _convert_ids(link)


def _items(data: Any, *names: str) -> list:
    if not isinstance(data, dict):
        return []
    for name in names:
        value = data.get(name)
        if isinstance(value, list):
            return value
    return []


def _convert_ids(item: Any) -> None:
    if not isinstance(item, dict):
        return
    for camel in _ID_FIELDS:
        snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)
        for name in (camel, snake):
            value = item.get(name)
            if isinstance(value, str) and value:
                try:
                    item[name] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
                except ValueError:
                    raise MalformedExport(f"{camel}: expected a hex string") from None


def parse_export(body: bytes, *, encoding: str) -> ExportTraceServiceRequest:
    """The export in `body` (already decompressed); MalformedExport when unreadable."""
    if encoding == PROTOBUF:
        try:
            return ExportTraceServiceRequest.FromString(body)
        except (DecodeError, RecursionError, ValueError) as exc:
            raise MalformedExport(f"body is not an ExportTraceServiceRequest: {exc}") from None
    if not body.strip():
        return ExportTraceServiceRequest()  # an empty request is a success
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise MalformedExport(f"malformed JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise MalformedExport("expected a JSON object with resourceSpans")
    _hex_ids_to_base64(data)
    try:
        return json_format.ParseDict(data, ExportTraceServiceRequest(), ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError, ValueError, TypeError) as exc:
        raise MalformedExport(f"not an OTLP trace export: {str(exc)[:200]}") from None


def any_value(value: Any) -> Any:
    """An AnyValue as Python: str, bool, int, float, list or dict; None when unset."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, kind)


def attributes(pairs: Any) -> dict[str, Any]:
    """A repeated KeyValue as a dict (a repeated key: the last one wins)."""
    return {kv.key: any_value(kv.value) for kv in pairs}


@dataclass(frozen=True)
class Span:
    """One span as the mapping reads it."""

    trace_id: str  # hex
    span_id: str  # hex
    end_time_unix_nano: int
    start_time_unix_nano: int
    status_code: int  # 0 unset, 1 ok, 2 error
    attributes: Mapping[str, Any]
    resource: Mapping[str, Any]


def spans(export: ExportTraceServiceRequest) -> Iterator[Span]:
    """Every span of the export, with its resource's attributes."""
    for resource_spans in export.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield Span(
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    end_time_unix_nano=span.end_time_unix_nano,
                    start_time_unix_nano=span.start_time_unix_nano,
                    status_code=span.status.code,
                    attributes=attributes(span.attributes),
                    resource=resource,
                )


def span_count(export: ExportTraceServiceRequest) -> int:
    return sum(len(ss.spans) for rs in export.resource_spans for ss in rs.scope_spans)


def response_body(*, rejected: int, message: str, encoding: str) -> bytes:
    """An ExportTraceServiceResponse: partial_success only when something is to be said."""
    response = ExportTraceServiceResponse()
    if rejected or message:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    if encoding == PROTOBUF:
        return response.SerializeToString()
    return json_format.MessageToJson(response, indent=None).encode()


def status_body(*, code: int, message: str, encoding: str) -> bytes:
    """A google.rpc.Status, the body of an OTLP/HTTP error response. `code`: a gRPC code
    (3 INVALID_ARGUMENT, 16 UNAUTHENTICATED, 8 RESOURCE_EXHAUSTED...)."""
    from google.rpc.status_pb2 import Status

    status = Status(code=code, message=message)
    if encoding == PROTOBUF:
        return status.SerializeToString()
    return json_format.MessageToJson(status, indent=None).encode()
