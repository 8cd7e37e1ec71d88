"""OpenTelemetry ingestion: OTLP/HTTP trace exports whose GenAI spans become usage events.

- `decode`: request bytes (protobuf or OTLP JSON, maybe gzipped) -> spans with attributes;
  the response and error bodies.
- `mapping`: one span -> one RequestEvent (GenAI semantic conventions), or ignored/rejected.
- `ingest`: an export's spans recorded for an ingest key's account (the service).
- `views`: `POST /v1/traces`.
"""
