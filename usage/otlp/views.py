"""`POST /v1/traces`: OTLP/HTTP trace exports from OpenTelemetry-instrumented apps.

Authenticated by an ingest key (`Authorization: Bearer cti_…`, which an exporter sends with
OTEL_EXPORTER_OTLP_HEADERS), whose account the GenAI spans' usage is recorded for. Answers
per the OTLP/HTTP specification, in the request's encoding (protobuf or JSON): 200 with an
ExportTraceServiceResponse (partial_success counting rejected spans and saying what was
ignored); 400 with a google.rpc.Status for an export that cannot be read (not retried by
exporters); 401 without a valid key; 413 past INGEST_MAX_BODY_BYTES (also decompressed); 415
for a Content-Type other than application/x-protobuf or application/json.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions

from providers.key_memory import ingest_key_forget
from usage.ingest_apis import BodyTooLarge, ingest_key_from_header, max_body_bytes, read_body
from usage.otlp import decode
from usage.otlp.ingest import otlp_export_record
from usage.services.requests import IngestKeyInactive

# google.rpc.Code values for the Status bodies.
INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNAUTHENTICATED = 3, 8, 16


def _answer(body: bytes, *, encoding: str, status: int = 200) -> HttpResponse:
    return HttpResponse(body, status=status, content_type=encoding)


def _error(status: int, code: int, message: str, encoding: str) -> HttpResponse:
    body = decode.status_body(code=code, message=message, encoding=encoding)
    response = _answer(body, encoding=encoding, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="ingest"'
    return response


@csrf_exempt  # a machine credential in a header, never a cookie
def traces(request: HttpRequest) -> HttpResponse:
    encoding = decode.encoding_of(request.content_type or "")
    answer_as = encoding or decode.JSON
    if request.method != "POST":
        response = _error(405, INVALID_ARGUMENT, "use POST", answer_as)
        response["Allow"] = "POST"
        return response
    try:
        key = ingest_key_from_header(request, recent=True)
    except exceptions.APIException:
        return _error(401, UNAUTHENTICATED, "a valid ingest key is required", answer_as)
    if encoding is None:
        message = f"Content-Type must be {decode.PROTOBUF} or {decode.JSON}"
        return _error(415, INVALID_ARGUMENT, message, answer_as)
    limit = max_body_bytes()
    too_large = f"at most {limit} bytes per export (decompressed)"
    try:
        body = decode.decompressed(
            read_body(request, limit=limit),
            content_encoding=request.headers.get("Content-Encoding", ""),
            limit=limit,
        )
        export = decode.parse_export(body, encoding=encoding)
    except (BodyTooLarge, decode.ExportTooLarge):
        return _error(413, RESOURCE_EXHAUSTED, too_large, encoding)
    except decode.MalformedExport as exc:
        return _error(400, INVALID_ARGUMENT, str(exc), encoding)
    try:
        outcome = otlp_export_record(key=key, export=export)
    except IngestKeyInactive:
        # Revoked, or its account deactivated, since it was read: nothing was written.
        ingest_key_forget(digest=key.digest)
        return _error(401, UNAUTHENTICATED, "a valid ingest key is required", encoding)
    body = decode.response_body(
        rejected=outcome.rejected, message=outcome.message(), encoding=encoding
    )
    return _answer(body, encoding=encoding)
