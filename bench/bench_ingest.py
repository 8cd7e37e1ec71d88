"""Ingestion benchmark: POST /api/usage/events through a real HTTP server, plus the service.

    .venv/bin/python bench/bench_ingest.py                 # SQLite (a temporary file)
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/x .venv/bin/python bench/bench_ingest.py

With a PostgreSQL DATABASE_URL it creates (and afterwards drops) its own database
`ct_ingest_bench` on that server; with none (or SQLite) it uses a temporary SQLite file. It runs
`manage.py migrate` there, seeds one user, account, price and ingest key, then measures:

1. service: usage.ingest_apis.ingest_items (validation + request_events_record), batches of 100;
2. HTTP, batches of 100 events per POST, through gunicorn (gthread, 2 workers × 8 threads) on
   127.0.0.1, driven by keep-alive urllib3 clients;
3. HTTP, one event per POST, the same way: throughput and latency percentiles.

Targets: ≥ 10,000 events/s in batches of 100; single-event POSTs ≥ 500/s with p99 ≤ 30 ms on
PostgreSQL. Every loop is bounded; everything stays on loopback.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchlib import bench_database, free_port, percentile

ROOT = Path(__file__).resolve().parent.parent
BENCH_DB = "ct_ingest_bench"
PYTHON = sys.executable


def items(prefix: str, start: int, count: int) -> list[dict]:
    """OpenAI-shaped events, a realistic mix of cached/uncached input and tags."""
    return [
        {
            "request_id": f"{prefix}-{n}",
            "occurred_at": "2026-11-15T10:00:00Z",
            "model": "gpt-4o-mini" if n % 3 else "gpt-4o-2024-08-06",
            "usage": {
                "prompt_tokens": 1200 + n % 500,
                "completion_tokens": 300 + n % 200,
                "total_tokens": 1500 + n % 700,
                "prompt_tokens_details": {"cached_tokens": 512 if n % 2 else 0},
                "completion_tokens_details": {"reasoning_tokens": 0},
            },
            "tags": {"project": "bench", "feature": f"f{n % 5}"},
        }
        for n in range(start, start + count)
    ]


def seed() -> tuple[str, int]:
    from decimal import Decimal

    from accounts.models import User
    from providers.models import Provider
    from providers.services import account_create, ingest_key_create
    from usage.models import Price
    from usage.services.prices import EPOCH

    user = User.objects.create_user(username="bench", password="bench-password-123")
    openai = Provider.objects.get(slug="openai")
    account = account_create(owner=user, provider=openai, name="bench")
    per_m = Decimal("0.000001")
    for model, inp, cached, out in [
        ("gpt-4o-mini", "0.15", "0.075", "0.60"),
        ("gpt-4o", "2.50", "1.25", "10"),
    ]:
        Price.objects.create(
            provider=openai,
            model=model,
            valid_from=EPOCH,
            input_per_token=Decimal(inp) * per_m,
            cache_read_per_token=Decimal(cached) * per_m,
            output_per_token=Decimal(out) * per_m,
        )
    raw, _ = ingest_key_create(account=account, name="bench")
    return raw, account.pk


def bench_service(key_raw: str, batches: int) -> float:
    from providers.selectors import ingest_key_lookup
    from usage.ingest_apis import ingest_items

    key = ingest_key_lookup(raw=key_raw)
    payloads = [json.dumps(items("svc", b * 100, 100)).encode() for b in range(batches)]
    from usage.ingest_apis import parse_body

    started = time.perf_counter()
    for payload in payloads:
        results = ingest_items(key=key, items=parse_body(payload))
        assert all(r.status == "created" for r in results), results[0]
    elapsed = time.perf_counter() - started
    return batches * 100 / elapsed


def start_server(database_url: str, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "LOG_LEVEL": "WARNING",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DEBUG": "false",
    }
    cmd = [
        PYTHON,
        "-m",
        "gunicorn",
        "costtracker.wsgi:application",
        "--worker-class",
        "gthread",
        "--workers",
        "2",
        "--threads",
        "8",
        "--bind",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
    ]
    server = subprocess.Popen(cmd, cwd=ROOT, env=env)
    import requests

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.post(f"http://127.0.0.1:{port}/api/usage/events", timeout=2).status_code:
                return server
        except requests.RequestException:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("gunicorn did not start within 60 s")


def drive(url: str, key: str, bodies: list[bytes], clients: int) -> tuple[float, list[float]]:
    """POST every body once from `clients` keep-alive connections. (wall seconds, latencies ms).

    The client shares the machine with the server, so it is kept light: urllib3 costs a
    fraction of requests' CPU per call, which the server then has for itself.
    """
    import urllib3

    lock = threading.Lock()
    queue = list(reversed(bodies))
    latencies: list[float] = []
    failures: list[str] = []
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def client() -> None:
        pool = urllib3.PoolManager(maxsize=1, retries=False)
        while True:
            with lock:
                if not queue:
                    return
                body = queue.pop()
            started = time.perf_counter()
            response = pool.request("POST", url, body=body, headers=headers, timeout=30)
            elapsed = (time.perf_counter() - started) * 1000
            if response.status != 200 or json.loads(response.data)["rejected"]:
                failures.append(f"{response.status} {response.data[:200]!r}")
            with lock:
                latencies.append(elapsed)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    wall = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{len(failures)} request(s) failed, e.g. {failures[0]}")
    return wall, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=300, help="HTTP batches of 100 events")
    parser.add_argument("--singles", type=int, default=5000, help="single-event POSTs")
    parser.add_argument("--service-batches", type=int, default=100)
    parser.add_argument("--clients", type=int, default=8, help="concurrent keep-alive clients")
    args = parser.parse_args()

    database_url, backend, cleanup = bench_database(BENCH_DB)
    server = None
    try:
        os.environ["DATABASE_URL"] = database_url
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "costtracker.settings")
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "-v", "0"], cwd=ROOT, check=True, env=os.environ
        )
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.db import connection

        key, account_id = seed()
        service_rate = bench_service(key, args.service_batches)
        connection.close()

        port = free_port()
        server = start_server(database_url, port)
        url = f"http://127.0.0.1:{port}/api/usage/events"
        warm = [json.dumps(items("warm", n * 10, 10)).encode() for n in range(50)]
        drive(url, key, warm, args.clients)

        batch_bodies = [
            json.dumps(items("batch", b * 100, 100)).encode() for b in range(args.batches)
        ]
        batch_wall, batch_lat = drive(url, key, batch_bodies, args.clients)
        single_bodies = [json.dumps(items("one", n, 1)).encode() for n in range(args.singles)]
        single_wall, single_lat = drive(url, key, single_bodies, args.clients)

        from usage.models import UsageRecord

        stored = UsageRecord.objects.filter(account_id=account_id).count()
        expected = args.service_batches * 100 + 500 + args.batches * 100 + args.singles
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

    batch_rate = args.batches * 100 / batch_wall
    single_rate = args.singles / single_wall
    p50, p95, p99 = (percentile(single_lat, p) for p in (50, 95, 99))
    print(
        f"\nIngestion benchmark on {backend} ({os.cpu_count()} CPUs, "
        f"{args.clients} clients, gunicorn gthread 2×8)"
    )
    print(f"  service, batches of 100:     {service_rate:>9,.0f} events/s")
    print(
        f"  HTTP, batches of 100:        {batch_rate:>9,.0f} events/s "
        f"(p50 {percentile(batch_lat, 50):.1f} ms, p99 {percentile(batch_lat, 99):.1f} ms "
        f"per batch)   target ≥ 10,000"
    )
    print(f"  HTTP, one event per POST:    {single_rate:>9,.0f} requests/s   target ≥ 500")
    print(
        f"    latency p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms   "
        f"target p99 ≤ 30 ms (PostgreSQL)   mean {statistics.fmean(single_lat):.1f} ms"
    )
    print(f"  stored {stored:,} records, each request id once")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"  load average during the run: {load} (figures are only comparable on a quiet host)")


if __name__ == "__main__":
    main()
