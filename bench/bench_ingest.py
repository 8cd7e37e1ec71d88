"""Ingestion benchmark: POST /api/usage/events through the production server, plus the service.

    .venv/bin/python bench/bench_ingest.py                 # SQLite (a temporary file)
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/x .venv/bin/python bench/bench_ingest.py

With a PostgreSQL DATABASE_URL it creates (and afterwards drops) its own database
`ct_ingest_bench` on that server; with none (or SQLite) it uses a temporary SQLite file. It runs
`manage.py migrate` there, seeds one user, account, price and ingest key, then measures:

1. service: usage.ingest_apis.ingest_items (validation + request_events_record), batches of 100;
2. HTTP, batches of 100 events per POST, for --seconds, from --clients keep-alive connections;
3. HTTP, one event per POST, the same way: throughput and latency percentiles.

On PostgreSQL each HTTP run starts after a VACUUM and a CHECKPOINT, so the maintenance the
previous run's inserts call for does not land in it.

The server is gunicorn exactly as `manage.py serve` starts it (gthread, WEB_WORKERS ×
WEB_THREADS), on 127.0.0.1. The load comes from wrk (`apt-get install wrk`; bench/ingest.lua
makes every request id unique and counts any response that is not a 200 with nothing rejected
as an error). Without wrk it falls back to Python urllib3 clients, which spend about a
millisecond of the same two cores per request and so understate the server (--client python
forces them). Every run checks that exactly the accepted events were stored, each once.

Targets: ≥ 10,000 events/s in batches of 100; single-event POSTs ≥ 500/s with p99 ≤ 30 ms on
PostgreSQL. Every loop is bounded; everything stays on loopback.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from benchlib import bench_database, django_migrated, free_port, percentile

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
    account = account_create(workspace=user.personal_workspace, provider=openai, name="bench")
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
    sys.path.insert(0, str(ROOT))
    from costtracker.management.commands.serve import gunicorn_command

    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "LOG_LEVEL": "WARNING",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DEBUG": "false",
    }
    cmd = gunicorn_command(host="127.0.0.1", port=str(port))
    # The access log goes to stdout, as under `make run`; it is written, then discarded.
    server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
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


@dataclass
class Run:
    """One HTTP measurement: POSTs answered, wall seconds, latency percentiles (ms)."""

    posts: int
    seconds: float
    p50: float
    p95: float
    p99: float
    mean: float
    in_flight: int = 0  # POSTs possibly processed after the client stopped counting (wrk)


def drive_wrk(url: str, key: str, per_post: int, seconds: float, clients: int, prefix: str) -> Run:
    """wrk for `seconds` from `clients` connections on two threads; every response checked."""
    cmd = [
        "wrk",
        "-t2",
        f"-c{clients}",
        f"-d{seconds:g}s",
        "--timeout",
        "30s",
        "-s",
        str(ROOT / "bench" / "ingest.lua"),
        url,
        "--",
        key,
        prefix,
        str(per_post),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 60)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["errors"] or result["socket_errors"]:
        raise SystemExit(f"wrk saw failures: {result}")
    return Run(
        posts=result["requests"],
        seconds=result["seconds"],
        p50=result["p50_ms"],
        p95=result["p95_ms"],
        p99=result["p99_ms"],
        mean=result["mean_ms"],
        in_flight=clients,
    )


def drive_python(url: str, key: str, per_post: int, seconds: float, clients: int, prefix: str):
    """The fallback without wrk: the same POSTs from urllib3 keep-alive clients in threads."""
    bodies = []
    counter = itertools.count()

    def body() -> bytes:
        start = next(counter) * per_post
        return json.dumps(items(prefix, start, per_post)).encode()

    # Enough bodies for the time at a generous rate; the clients stop when time is up.
    bodies = [body() for _ in range(int(seconds * 20_000 / per_post) + clients)]
    wall, latencies = drive(url, key, bodies, clients, deadline=time.perf_counter() + seconds)
    return Run(
        posts=len(latencies),
        seconds=wall,
        p50=percentile(latencies, 50),
        p95=percentile(latencies, 95),
        p99=percentile(latencies, 99),
        mean=statistics.fmean(latencies),
    )


def drive(
    url: str, key: str, bodies: list[bytes], clients: int, deadline: float | None = None
) -> tuple[float, list[float]]:
    """POST bodies (each once, until `deadline`) from `clients` keep-alive connections.

    Returns (wall seconds, latencies ms).

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
                if not queue or (deadline is not None and time.perf_counter() > deadline):
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


def settle(connection) -> None:
    """Between runs on PostgreSQL: vacuum and checkpoint now, so the maintenance one run's
    100,000 inserts call for (autovacuum, a checkpoint) does not land in the next run."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE usage_usagerecord, usage_dailyusage, usage_dailyattribution")
        try:
            cursor.execute("CHECKPOINT")  # needs a superuser (or pg_checkpoint on 15+)
        except Exception:  # noqa: BLE001, S110 - then the server checkpoints on its own
            pass
    connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10, help="length of each HTTP run")
    parser.add_argument("--service-batches", type=int, default=100)
    parser.add_argument("--clients", type=int, default=8, help="concurrent keep-alive clients")
    parser.add_argument(
        "--client",
        choices=["wrk", "python"],
        default="wrk" if shutil.which("wrk") else "python",
        help="load generator (default: wrk when installed)",
    )
    args = parser.parse_args()
    drive_http = drive_wrk if args.client == "wrk" else drive_python

    database_url, backend, cleanup = bench_database(BENCH_DB)
    server = None
    try:
        django_migrated(database_url)
        from django.db import connection

        key, account_id = seed()
        service_rate = bench_service(key, args.service_batches)
        connection.close()

        port = free_port()
        server = start_server(database_url, port)
        url = f"http://127.0.0.1:{port}/api/usage/events"
        warm = drive_http(url, key, 10, 3, args.clients, "warm")
        settle(connection)
        batch = drive_http(url, key, 100, args.seconds, args.clients, "batch")
        settle(connection)
        single = drive_http(url, key, 1, args.seconds, args.clients, "one")

        from usage.models import UsageRecord

        stored = UsageRecord.objects.filter(account_id=account_id).count()
        counted = args.service_batches * 100 + (warm.posts * 10 + batch.posts * 100 + single.posts)
        slack = warm.in_flight * 10 + batch.in_flight * 100 + single.in_flight
        # Every answered event is stored once; wrk stops counting with POSTs still in flight.
        assert counted <= stored <= counted + slack, (stored, counted, slack)
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

    batch_rate = batch.posts * 100 / batch.seconds
    single_rate = single.posts / single.seconds
    workers = os.environ.get("WEB_WORKERS", "2")
    threads = os.environ.get("WEB_THREADS", "32")
    print(
        f"\nIngestion benchmark on {backend} ({os.cpu_count()} CPUs shared by server, database "
        f"and load generator; {args.client}, {args.clients} connections; gunicorn gthread "
        f"{workers}×{threads})"
    )
    print(f"  service, batches of 100:     {service_rate:>9,.0f} events/s")
    print(
        f"  HTTP, batches of 100:        {batch_rate:>9,.0f} events/s "
        f"(p50 {batch.p50:.1f} ms, p99 {batch.p99:.1f} ms per batch)   target ≥ 10,000"
    )
    print(f"  HTTP, one event per POST:    {single_rate:>9,.0f} requests/s   target ≥ 500")
    print(
        f"    latency p50 {single.p50:.1f} ms, p95 {single.p95:.1f} ms, p99 {single.p99:.1f} ms"
        f"   target p99 ≤ 30 ms (PostgreSQL)   mean {single.mean:.1f} ms"
    )
    print(f"  stored {stored:,} records, each request id once")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"  load average during the run: {load} (figures are only comparable on a quiet host)")


if __name__ == "__main__":
    main()
