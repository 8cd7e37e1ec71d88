"""Proxy benchmark: latency a call gains by going through /proxy/, under the production server.

    .venv/bin/python bench/bench_proxy.py                 # SQLite (a temporary file)
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/x .venv/bin/python bench/bench_proxy.py

With a PostgreSQL DATABASE_URL it creates (and afterwards drops) its own database
`ct_proxy_bench` on that server; with none (or SQLite) it uses a temporary SQLite file. It runs
`manage.py migrate` there, seeds a user, an OpenAI account with a key, a price and an ingest key,
starts a fake OpenAI (ThreadingHTTPServer in a thread, fixed chat completion) and the tracker
under gunicorn exactly as `manage.py serve` starts it (gthread, WEB_WORKERS × WEB_THREADS; only
the worker timeout is lowered, see 3), all on 127.0.0.1, then:

1. latency: N sequential requests straight to the fake provider and N through the proxy,
   alternating, each over its own keep-alive requests.Session; p50/p95/p99 of each and the
   overhead (proxy − direct). Targets: overhead p50 ≤ 3 ms (aim 2 ms), p99 ≤ 15 ms.
2. committed rows: every proxied call left exactly one usage record (count == calls).
3. a stream longer than the worker timeout (lowered to 5 s here; 120 s in production) survives.
4. --streams concurrent streams while the web UI answers: UI latency must stay under 1 s.

--enforced-budget: an enforced budget (never reached) covers every call, so each pays the
budget check before it goes and the spend update after (target: ≤ 0.3 ms more at p50 than
without; run both, alternating, on a quiet host).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from benchlib import bench_database, django_migrated, free_port, percentile

ROOT = Path(__file__).resolve().parent.parent
BENCH_DB = "ct_proxy_bench"
PYTHON = sys.executable
MODEL = "gpt-4o-mini"
WORKER_TIMEOUT = 5

sys.path.insert(0, str(ROOT))


# --- the fake provider --------------------------------------------------------------------------

_ids = itertools.count()


def completion_body() -> bytes:
    # A fresh id each time: the proxy records the response id, and a repeat would be a duplicate.
    return json.dumps(
        {
            "id": f"chatcmpl-bench-{next(_ids)}",
            "object": "chat.completion",
            "created": 1785600000,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello there!"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 1200,
                "completion_tokens": 300,
                "total_tokens": 1500,
                "prompt_tokens_details": {"cached_tokens": 1000},
            },
        }
    ).encode()


class FakeOpenAI(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real thing
    disable_nagle_algorithm = True

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        if request.get("stream"):
            self._stream(float(request.get("bench_seconds", 1)))
            return
        body = completion_body()
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nx-request-id: req_bench\r\n\r\n"
        ).encode()
        self.wfile.write(head + body)  # one write: no Nagle/delayed-ACK stall

    def _stream(self, seconds: float) -> None:
        self.wfile.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        stream_id = f"chatcmpl-bench-stream-{next(_ids)}"

        def send(event: dict | str) -> None:
            data = event if isinstance(event, str) else json.dumps(event)
            payload = f"data: {data}\n\n".encode()
            self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")

        base = {"id": stream_id, "object": "chat.completion.chunk", "model": MODEL}
        ticks = max(1, int(seconds / 0.25))
        for _ in range(ticks):
            send({**base, "choices": [{"index": 0, "delta": {"content": "tok "}}]})
            time.sleep(0.25)
        usage = {"prompt_tokens": 100, "completion_tokens": ticks, "total_tokens": 100 + ticks}
        send({**base, "choices": [], "usage": usage})
        send("[DONE]")
        self.wfile.write(b"0\r\n\r\n")


def start_fake_provider() -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


# --- database and server --------------------------------------------------------------------


def seed(*, enforced_budget: bool = False) -> tuple[str, int]:
    from decimal import Decimal

    from accounts.models import User
    from providers.models import Provider
    from providers.services import account_create, ingest_key_create
    from usage.models import Price
    from usage.services.prices import EPOCH

    user = User.objects.create_user(username="bench", password="bench-password-123")
    openai = Provider.objects.get(slug="openai")
    account = account_create(
        workspace=user.personal_workspace,
        provider=openai,
        name="bench",
        api_key="sk-bench-provider-key-0001",
    )
    Price.objects.create(
        provider=openai,
        model=MODEL,
        valid_from=EPOCH,
        input_per_token=Decimal("0.00000015"),
        cache_read_per_token=Decimal("0.000000075"),
        output_per_token=Decimal("0.0000006"),
    )
    raw, _ = ingest_key_create(account=account, name="bench")
    if enforced_budget:
        from alerts.services import budget_create

        # Never reached ($0.000285 a call): every call pays the check and the spend update.
        budget_create(
            workspace=user.personal_workspace,
            scope="overall",
            amount=Decimal("1000000"),
            enforced=True,
            forecast_alert=False,
        )
    return raw, account.pk


def start_tracker(database_url: str, upstream: str, port: int) -> subprocess.Popen:
    from costtracker.management.commands.serve import gunicorn_command

    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "OPENAI_BASE_URL": upstream,
        "LOG_LEVEL": "WARNING",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DEBUG": "false",
    }
    # The production command line; a later --timeout wins, so section 3 can outlast it quickly.
    cmd = [*gunicorn_command(host="127.0.0.1", port=str(port)), "--timeout", str(WORKER_TIMEOUT)]
    server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)  # access log
    import requests

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/", timeout=2, allow_redirects=False)
            return server
        except requests.RequestException:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("gunicorn did not start within 60 s")


# --- measurements ---------------------------------------------------------------------------


def latency(direct_url: str, proxy_url: str, key: str, count: int) -> tuple[list, list]:
    import requests

    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]})
    direct, proxied = requests.Session(), requests.Session()
    direct_headers = {"Authorization": "Bearer sk-bench", "Content-Type": "application/json"}
    proxy_headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    direct_ms, proxy_ms = [], []
    for _ in range(count):
        for session, url, headers, out in (
            (direct, direct_url, direct_headers, direct_ms),
            (proxied, proxy_url, proxy_headers, proxy_ms),
        ):
            started = time.perf_counter()
            response = session.post(url, data=body, headers=headers, timeout=30)
            out.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200 or b"chatcmpl-bench" not in response.content:
                raise SystemExit(f"bad answer from {url}: {response.status_code}")
    return direct_ms, proxy_ms


def stream_once(proxy_url: str, key: str, seconds: float) -> tuple[bool, float]:
    import requests

    started = time.monotonic()
    with requests.post(
        proxy_url,
        headers={"Authorization": f"Bearer {key}"},
        json={"model": MODEL, "messages": [], "stream": True, "bench_seconds": seconds},
        stream=True,
        timeout=(5, 30),
    ) as response:
        body = b"".join(response.iter_content(chunk_size=None))
    return response.status_code == 200 and body.endswith(b"data: [DONE]\n\n"), (
        time.monotonic() - started
    )


def concurrent_streams(base: str, proxy_url: str, key: str, streams: int, seconds: float):
    import requests

    results: list[bool] = []
    errors: list[str] = []

    def one() -> None:
        try:
            results.append(stream_once(proxy_url, key, seconds)[0])
        except Exception as exc:  # reported below, not lost in a thread
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=one) for _ in range(streams)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # let every stream get going
    ui = requests.Session()
    ui_ms = []
    while any(t.is_alive() for t in threads) and len(ui_ms) < 200:
        started = time.perf_counter()
        status = ui.get(f"{base}/", timeout=10, allow_redirects=False).status_code
        ui_ms.append((time.perf_counter() - started) * 1000)
        if status != 302:  # the dashboard sends anonymous visitors to the login page
            raise SystemExit(f"web UI answered {status}")
        time.sleep(0.1)
    for thread in threads:
        thread.join(timeout=seconds + 30)
    if errors:
        print(f"  {len(errors)} stream(s) failed on the client side, e.g. {errors[0]}")
    return sum(results), ui_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="sequential calls per side")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--streams", type=int, default=40, help="concurrent streams in 4")
    parser.add_argument("--stream-seconds", type=float, default=4.0)
    parser.add_argument(
        "--enforced-budget",
        action="store_true",
        help="an enforced budget covers every call (checked before, counted after each)",
    )
    args = parser.parse_args()

    # CONN_MAX_AGE comes from settings (default 60: connections are reused across requests);
    # CONN_MAX_AGE=0 in the environment measures a new connection per request instead.
    age = os.environ.get("CONN_MAX_AGE")
    database_url, backend, cleanup = bench_database(
        BENCH_DB, sqlite_query=f"?CONN_MAX_AGE={int(age)}" if age else ""
    )
    fake, upstream = start_fake_provider()
    server = None
    try:
        django_migrated(database_url)
        from django.db import connection

        key, account_id = seed(enforced_budget=args.enforced_budget)
        connection.close()

        port = free_port()
        server = start_tracker(database_url, upstream, port)
        base = f"http://127.0.0.1:{port}"
        proxy_url = f"{base}/proxy/openai/v1/chat/completions"
        direct_url = f"{upstream}/v1/chat/completions"

        latency(direct_url, proxy_url, key, args.warmup)
        direct_ms, proxy_ms = latency(direct_url, proxy_url, key, args.requests)

        from usage.models import RecordStatus, UsageRecord

        calls = args.warmup + args.requests
        stored = UsageRecord.objects.filter(account_id=account_id, status=RecordStatus.OK)
        stored_count = stored.count()
        priced = stored.filter(cost__isnull=False).count()

        long_ok, long_seconds = stream_once(proxy_url, key, WORKER_TIMEOUT * 2.4)
        streams_ok, ui_ms = concurrent_streams(
            base, proxy_url, key, args.streams, args.stream_seconds
        )
        stream_records = UsageRecord.objects.filter(
            account_id=account_id, request_id__startswith="chatcmpl-bench-stream-"
        )
        stream_records_ok = stream_records.filter(status=RecordStatus.OK).count()
        stream_records_all = stream_records.count()
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        fake.shutdown()
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: S110 - Django may not be set up yet
            pass
        cleanup()

    stats = {
        name: [percentile(values, p) for p in (50, 95, 99)]
        for name, values in (("direct", direct_ms), ("proxy", proxy_ms))
    }
    pairs = [p - d for p, d in zip(proxy_ms, direct_ms, strict=True)]
    over_p50 = stats["proxy"][0] - stats["direct"][0]
    over_p99 = stats["proxy"][2] - stats["direct"][2]
    workers = os.environ.get("WEB_WORKERS", "2")
    threads = os.environ.get("WEB_THREADS", "32")
    print(
        f"\nProxy benchmark on {backend} ({os.cpu_count()} CPUs, gunicorn gthread "
        f"{workers}×{threads}, {args.requests:,} sequential keep-alive calls per side"
        f"{', an enforced budget' if args.enforced_budget else ''})"
    )
    for name, (p50, p95, p99) in stats.items():
        print(f"  {name:<7} p50 {p50:6.2f} ms   p95 {p95:6.2f} ms   p99 {p99:6.2f} ms")
    verdict = "OK" if over_p50 <= 3 and over_p99 <= 15 else "MISSED"
    print(
        f"  overhead (proxy − direct): p50 {over_p50:.2f} ms (target ≤ 3, aim 2)   "
        f"p99 {over_p99:.2f} ms (target ≤ 15)   {verdict}"
    )
    print(
        f"    per-call difference: p50 {percentile(pairs, 50):.2f} ms, p99 "
        f"{percentile(pairs, 99):.2f} ms, mean {statistics.fmean(pairs):.2f} ms"
    )
    print(
        f"  usage rows committed: {stored_count:,} of {calls:,} proxied calls "
        f"({priced:,} priced)   {'OK' if stored_count == calls == priced else 'MISSED'}"
    )
    print(
        f"  stream of {long_seconds:.1f} s past a {WORKER_TIMEOUT} s worker timeout: "
        f"{'completed' if long_ok else 'KILLED'}"
    )
    print(
        f"  {args.streams} concurrent {args.stream_seconds:.0f}-s streams: {streams_ok} completed, "
        f"{stream_records_ok} of {stream_records_all} stream records ok "
        f"(incl. the long one); web UI meanwhile p50 {percentile(ui_ms, 50):.1f} ms, "
        f"max {max(ui_ms):.1f} ms over {len(ui_ms)} requests   "
        f"{'OK' if streams_ok == args.streams and max(ui_ms) < 1000 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
