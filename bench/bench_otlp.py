"""OpenTelemetry ingestion benchmark: POST /v1/traces (OTLP/HTTP protobuf) through the
production server, plus the service alone.

    .venv/bin/python bench/bench_otlp.py                 # SQLite (a temporary file)
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/x .venv/bin/python bench/bench_otlp.py

Like bench_ingest.py (whose seeding and server start it shares): a database of its own
(`ct_otlp_bench` on PostgreSQL, dropped afterwards; else a temporary SQLite file), one user,
OpenAI account, prices and ingest key, then:

1. service: usage.otlp.ingest.otlp_export_record on decoded exports of --batch spans;
2. HTTP: exports of --batch spans (each a GenAI chat span with cache and reasoning counts,
   the resource naming a service, one in eight spans a plain HTTP span that is ignored), as
   the OTLP exporter sends them (binary protobuf, optionally gzipped), from --clients
   keep-alive urllib3 connections for --seconds. Every answer is checked: a 200 whose
   partial_success rejects nothing.

Afterwards it checks that exactly the GenAI spans answered were stored, each once.
Target: ≥ 5,000 spans/s in batches of 512 over HTTP.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import threading
import time
from pathlib import Path

from bench_ingest import seed, settle, start_server
from benchlib import bench_database, django_migrated, free_port, percentile

ROOT = Path(__file__).resolve().parent.parent
BENCH_DB = "ct_otlp_bench"
PYTHON = sys.executable
END_NS = 1_794_736_800_000_000_000  # 2026-11-15T10:00:00Z
PLAIN_EVERY = 8  # one span in eight is not GenAI


def export_bytes(prefix: str, batch: int, start: int) -> tuple[bytes, int]:
    """One ExportTraceServiceRequest of `batch` spans, serialised; and its GenAI span count."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    def kv(key, value) -> KeyValue:
        if isinstance(value, int):
            return KeyValue(key=key, value=AnyValue(int_value=value))
        return KeyValue(key=key, value=AnyValue(string_value=value))

    export = ExportTraceServiceRequest()
    resource_spans = export.resource_spans.add()
    resource_spans.resource.attributes.extend([kv("service.name", "bench-app")])
    scope = resource_spans.scope_spans.add()
    scope.scope.name = "opentelemetry.instrumentation.openai_v2"
    genai = 0
    trace_id = (start + 1).to_bytes(16, "big")
    for n in range(start, start + batch):
        span = scope.spans.add()
        span.trace_id = trace_id
        span.span_id = (n + 1).to_bytes(8, "big")
        span.kind = 3
        span.start_time_unix_nano = END_NS - 900_000_000
        span.end_time_unix_nano = END_NS
        if n % PLAIN_EVERY == 0:
            span.name = "POST /api/answer"
            span.attributes.extend([kv("http.request.method", "POST")])
            continue
        genai += 1
        model = "gpt-4o-mini" if n % 3 else "gpt-4o"
        span.name = f"chat {model}"
        span.attributes.extend(
            [
                kv("gen_ai.operation.name", "chat"),
                kv("gen_ai.provider.name", "openai"),
                kv("gen_ai.request.model", model),
                kv("gen_ai.response.model", model),
                kv("gen_ai.response.id", f"{prefix}-{n}"),
                kv("gen_ai.usage.input_tokens", 1200 + n % 500),
                kv("gen_ai.usage.cache_read.input_tokens", 512 if n % 2 else 0),
                kv("gen_ai.usage.output_tokens", 300 + n % 200),
                kv("gen_ai.usage.reasoning.output_tokens", 64 if n % 5 == 0 else 0),
                kv("enduser.id", f"user-{n % 20}"),
                kv("server.address", "api.openai.com"),
            ]
        )
    return export.SerializeToString(), genai


def bench_service(key_raw: str, batch: int, batches: int) -> float:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    from providers.selectors import ingest_key_lookup
    from usage.otlp.ingest import otlp_export_record

    key = ingest_key_lookup(raw=key_raw)
    bodies = [export_bytes("svc", batch, b * batch)[0] for b in range(batches)]
    started = time.perf_counter()
    for body in bodies:
        outcome = otlp_export_record(key=key, export=ExportTraceServiceRequest.FromString(body))
        assert not outcome.rejected, outcome.message()
    return batches * batch / (time.perf_counter() - started)


def drive(url: str, key: str, bodies: list[bytes], clients: int, seconds: float, gzipped: bool):
    """POST the bodies (each once) from `clients` keep-alive connections until time is up.
    Returns (bodies posted, wall seconds, latencies ms)."""
    import urllib3
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    lock = threading.Lock()
    queue = list(reversed(range(len(bodies))))
    done: list[int] = []
    latencies: list[float] = []
    failures: list[str] = []
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-protobuf"}
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    deadline = time.perf_counter() + seconds

    def client() -> None:
        pool = urllib3.PoolManager(maxsize=1, retries=False)
        while True:
            with lock:
                if not queue or time.perf_counter() > deadline:
                    return
                index = queue.pop()
            started = time.perf_counter()
            response = pool.request("POST", url, body=bodies[index], headers=headers, timeout=60)
            elapsed = (time.perf_counter() - started) * 1000
            ok = response.status == 200
            if ok:
                answer = ExportTraceServiceResponse.FromString(response.data)
                ok = answer.partial_success.rejected_spans == 0
            if not ok:
                failures.append(f"{response.status} {response.data[:200]!r}")
            with lock:
                latencies.append(elapsed)
                done.append(index)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 600)
    wall = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{len(failures)} export(s) failed, e.g. {failures[0]}")
    return done, wall, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10, help="length of the HTTP run")
    parser.add_argument("--batch", type=int, default=512, help="spans per export")
    parser.add_argument("--service-batches", type=int, default=20)
    parser.add_argument("--clients", type=int, default=4, help="concurrent keep-alive clients")
    parser.add_argument("--gzip", action="store_true", help="gzip the exports")
    parser.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    args = parser.parse_args()

    database_url, backend, cleanup = bench_database(BENCH_DB)
    server = None
    try:
        django_migrated(database_url)
        from django.db import connection

        key, account_id = seed()
        service_rate = bench_service(key, args.batch, args.service_batches)
        service_genai = sum(
            export_bytes("svc", args.batch, b * args.batch)[1] for b in range(args.service_batches)
        )
        settle(connection)
        connection.close()

        # Enough exports for the time at a generous rate; the clients stop when time is up.
        count = int(args.seconds * 20_000 / args.batch) + args.clients
        exports = [export_bytes("http", args.batch, b * args.batch) for b in range(count)]
        bodies = [gzip.compress(b) if args.gzip else b for b, _ in exports]
        port = args.port or free_port()
        server = start_server(database_url, port)
        url = f"http://127.0.0.1:{port}/v1/traces"
        done, wall, latencies = drive(url, key, bodies, args.clients, args.seconds, args.gzip)

        from usage.models import UsageRecord

        stored = UsageRecord.objects.filter(account_id=account_id).count()
        expected = service_genai + sum(exports[i][1] for i in done)
        assert stored == expected, (stored, expected)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: S110 - Django may not be set up yet
            pass
        cleanup()

    spans = len(done) * args.batch
    workers = os.environ.get("WEB_WORKERS", "2")
    threads = os.environ.get("WEB_THREADS", "32")
    print(
        f"\nOTLP ingestion benchmark on {backend} ({os.cpu_count()} CPUs shared by server, "
        f"database and load generator; {args.clients} connections; gunicorn gthread "
        f"{workers}×{threads}; protobuf{', gzip' if args.gzip else ''})"
    )
    print(f"  service, exports of {args.batch}:  {service_rate:>9,.0f} spans/s")
    print(
        f"  HTTP, exports of {args.batch}:     {spans / wall:>9,.0f} spans/s "
        f"(p50 {percentile(latencies, 50):.0f} ms, p99 {percentile(latencies, 99):.0f} ms "
        "per export)   target ≥ 5,000"
    )
    print(f"  stored {stored:,} records (the GenAI spans, 7 in 8), each once")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"  load average during the run: {load} (figures are only comparable on a quiet host)")


if __name__ == "__main__":
    main()
