"""Two nodes on one PostgreSQL database and one Redis (README "Scaling out").

Two web servers (gunicorn, as `manage.py serve` starts it) and two django-q2 clusters
(`manage.py qcluster`, Redis as the broker) share this test's PostgreSQL database and a Redis
database of its own (TEST_REDIS_URL). While the schedules fire every few seconds
(SCHEDULE_SECONDS, Q_SCHEDULER_SECONDS), ingestion batches and proxied calls go to both web
nodes, each batch to both (a client retrying on another node). Then:

- every event is stored once, and the totals are the sum of what was sent (worked by hand);
- a price changed on one node prices the next call on the other (the shared price book version);
- a key revoked is refused by both nodes at once (PostgreSQL NOTIFY, providers/key_memory.py);
- each schedule ran at most once per interval, and no account was synced twice at once;
- each alert reached the webhook exactly once.

PostgreSQL only (SQLite is one machine's database); with CI=true a Redis that cannot be reached
fails the test rather than skipping it.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import openai
import pytest
import requests
from django.core.management import call_command
from django.db import connection
from django_q.models import Schedule, Task
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from alerts.models import Alert, Budget, NotificationDelivery
from alerts.services import budget_create, channel_create
from costtracker.management.commands.serve import gunicorn_command
from costtracker.tests.servers import free_port, needs_posix
from providers.models import IngestKey
from providers.services import ingest_key_create, ingest_key_revoke
from providers.tests.factories import AccountFactory, provider
from usage.models import DailyUsage, Price, SyncRun, UsageRecord
from usage.services.prices import EPOCH

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "providers" / "tests" / "fixtures"
D = Decimal
SCHEDULE_SECONDS = 3  # every periodic task, for this test (setup_schedules)
ROUNDS = 6  # of traffic, per web node
EVENTS_PER_BATCH = 3
PROVIDER_KEY = "sk-two-nodes-provider-key-0001"
ADMIN_KEY = "sk-admin-two-nodes-0000000000001"

pytestmark = [
    needs_posix,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="several nodes share PostgreSQL; SQLite is one machine's database",
    ),
]


def redis_url() -> str:
    """TEST_REDIS_URL, answering; without it, a skip (a failure under CI=true)."""
    url = os.environ.get("TEST_REDIS_URL", "")
    problem = "TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:6379/5)"
    if url:
        import redis

        try:
            redis.Redis.from_url(url, socket_connect_timeout=2).ping()
            return url
        except redis.RedisError as exc:
            problem = f"Redis at TEST_REDIS_URL does not answer ({type(exc).__name__})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{problem}: CI runs the two-node test on PostgreSQL with Redis")
    pytest.skip(problem)


# --- the fakes ----------------------------------------------------------------------------


class FakeProvider:
    """OpenAI on loopback: chat completions with a fresh id each, and empty usage pages."""

    def __init__(self) -> None:
        self.server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
        self.lock = threading.Lock()
        self.calls = 0
        self.server.expect_request("/v1/chat/completions", method="POST").respond_with_handler(
            self.chat
        )
        self.server.expect_request(re.compile(r"^/v1/organization/")).respond_with_handler(
            self.usage
        )

    def chat(self, request: Request) -> Response:
        with self.lock:
            self.calls += 1
            n = self.calls
        body = {
            "id": f"chatcmpl-two-nodes-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hi"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500},
        }
        return Response(json.dumps(body), content_type="application/json")

    def usage(self, request: Request) -> Response:
        time.sleep(0.5)  # a sync takes a while, so a second one at once would overlap it
        return Response((FIXTURES / "openai" / "empty.json").read_bytes(), mimetype="text/json")


class Receiver:
    """The webhook: every notification it is sent, in order."""

    def __init__(self) -> None:
        self.server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
        self.lock = threading.Lock()
        self.bodies: list[dict] = []
        self.server.expect_request("/hook", method="POST").respond_with_handler(self.hook)

    def hook(self, request: Request) -> Response:
        with self.lock:
            self.bodies.append(json.loads(request.get_data()))
        return Response("ok")


# --- the nodes ----------------------------------------------------------------------------


def database_url() -> str:
    s = connection.settings_dict
    password = f":{s['PASSWORD']}" if s["PASSWORD"] else ""
    host = f"{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}"
    return f"postgres://{s['USER']}{password}@{host}/{s['NAME']}"


def node_env(*, redis: str, fake: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(
        DATABASE_URL=database_url(),
        REDIS_URL=redis,
        DEBUG="false",
        OPENAI_BASE_URL=fake,
        WEBHOOK_ALLOW_PRIVATE="true",
        SCHEDULE_SECONDS=str(SCHEDULE_SECONDS),
        Q_SCHEDULER_SECONDS="1",
        Q_WORKERS="2",
        WEB_WORKERS="1",
        WEB_THREADS="8",
        SYNC_BACKFILL_DAYS="1",
    )
    return env


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:  # a file, not a pipe: a pipe nobody reads fills and blocks
        return subprocess.Popen(  # noqa: S603 - our own commands
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
            start_new_session=True,  # its own process group: we stop exactly what we started
        )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def answers(url: str) -> bool:
    try:
        requests.post(url, json=[], timeout=2)
    except (requests.ConnectionError, requests.Timeout):
        return False  # not listening yet, or a worker still importing on a busy host
    return True


def wait_for(condition, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


# --- the test -----------------------------------------------------------------------------


def test_two_web_nodes_and_two_clusters_share_one_database_and_redis(settings, tmp_path):
    url = redis_url()
    import redis

    redis.Redis.from_url(url).flushdb()  # this test's own Redis database
    # This process is a node too: its price change is published through the same Redis.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": "ct",
        }
    }
    settings.CACHE_SHARED = True
    settings.WEBHOOK_ALLOW_PRIVATE = True
    settings.SCHEDULE_SECONDS = SCHEDULE_SECONDS

    fake, receiver = FakeProvider(), Receiver()
    fake.server.start()
    receiver.server.start()
    procs: list[subprocess.Popen] = []
    try:
        Price.objects.create(
            provider=provider("openai"),
            model="gpt-4o",
            valid_from=EPOCH,
            input_per_token=D("0.0000025"),
            output_per_token=D("0.00001"),
        )
        mini = Price.objects.create(
            provider=provider("openai"),
            model="gpt-4o-mini",
            valid_from=EPOCH,
            input_per_token=D("0.00000015"),
            output_per_token=D("0.0000006"),
        )
        account = AccountFactory(
            provider=provider("openai"), keys={"api_key": PROVIDER_KEY, "admin_key": ADMIN_KEY}
        )
        raw, _ = ingest_key_create(account=account)
        budget_create(
            workspace=account.workspace,
            scope=Budget.Scope.OVERALL,
            amount=D("1.00"),
            thresholds=[50, 80, 100],
            forecast_alert=False,
        )
        channel_create(
            workspace=account.workspace,
            kind="webhook",
            target=receiver.server.url_for("/hook"),
        )
        call_command("setup_schedules", stdout=open(os.devnull, "w"))  # noqa: SIM115
        began = time.time()

        env = node_env(redis=url, fake=fake.server.url_for("/").rstrip("/"))
        ports = [free_port(), free_port()]
        web = gunicorn_command
        procs += [
            start(web(host="127.0.0.1", port=str(p)), env, tmp_path / f"web{i}.log")
            for i, p in enumerate(ports)
        ]
        procs += [
            start([sys.executable, "manage.py", "qcluster"], env, tmp_path / f"cluster{i}.log")
            for i in range(2)
        ]
        nodes = [f"http://127.0.0.1:{p}" for p in ports]
        for node in nodes:
            # The ingestion API answers (401) without rendering a page: pages need the
            # static files manifest, which only collectstatic writes.
            wait_for(lambda n=node: answers(f"{n}/api/usage/events"), timeout=60, what=node)
        clusters = redis.Redis.from_url(url)
        wait_for(
            lambda: len(clusters.keys("django_q:costtracker:cluster:*")) >= 2,
            timeout=60,
            what="both django-q2 clusters",
        )

        def ingest(node: str, batch: list[dict]) -> dict:
            response = requests.post(
                f"{node}/api/usage/events",
                json=batch,
                headers={"Authorization": f"Bearer {raw}"},
                timeout=30,
            )
            assert response.status_code == 200, response.text
            return response.json()

        def proxy(node: str) -> None:
            client = openai.OpenAI(
                base_url=f"{node}/proxy/openai/v1", api_key=raw, max_retries=0, timeout=30
            )
            reply = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
            )
            assert reply.usage.prompt_tokens == 1200

        def round_of_traffic(r: int, n: int) -> tuple[int, int]:
            node, other = nodes[n], nodes[1 - n]
            batch = [
                {
                    "request_id": f"r{r}-n{n}-e{i}",
                    "model": "gpt-4o",
                    "usage": {"prompt_tokens": 10_000, "completion_tokens": 1_000},
                }
                for i in range(EVENTS_PER_BATCH)
            ]
            first = ingest(node, batch)
            again = ingest(other, batch)  # the same batch retried at the other node
            proxy(node)
            return first["created"], again["duplicate"]

        with ThreadPoolExecutor(max_workers=4) as pool:
            results = []
            for r in range(ROUNDS):
                results += pool.map(round_of_traffic, [r, r], [0, 1])
                time.sleep(1.5)  # traffic spread over several schedule intervals
        assert results == [(EVENTS_PER_BATCH, EVENTS_PER_BATCH)] * (2 * ROUNDS)

        # A price changed here (the admin's save, on "another node") prices the next call at
        # both web nodes within a version check (PRICE_VERSION_CHECK_SECONDS, 1 s).
        mini.output_per_token = D("0.0000012")
        mini.save()
        time.sleep(1.5)
        proxy(nodes[0])
        proxy(nodes[1])

        # A key revoked here is refused by both nodes at once.
        ingest_key_revoke(key=IngestKey.objects.get(account=account))
        time.sleep(1.0)  # PostgreSQL's NOTIFY reaches each node's listener in milliseconds
        for node in nodes:
            refused = requests.post(
                f"{node}/api/usage/events",
                json=[{"request_id": "late", "model": "gpt-4o", "usage": {"prompt_tokens": 1}}],
                headers={"Authorization": f"Bearer {raw}"},
                timeout=30,
            )
            assert refused.status_code == 401, refused.text

        # Each alert delivered (within the evaluation bound), then a few seconds more in case
        # one would arrive twice.
        def delivered() -> bool:
            alerts = Alert.objects.filter(workspace=account.workspace)
            return (
                alerts.filter(threshold=100).exists()
                and not NotificationDelivery.objects.exclude(status="sent").exists()
                and len(receiver.bodies) >= alerts.count()
            )

        wait_for(delivered, timeout=60, what="the budget alerts' notifications")
        time.sleep(2 * SCHEDULE_SECONDS)

        # The schedules end here; then the queue drains and every sync finishes before the
        # clusters stop, so no run is cut short by the test.
        Schedule.objects.update(repeats=0)
        stopped = time.time()

        def idle() -> bool:
            return not clusters.llen("django_q:costtracker:q") and not (
                SyncRun.objects.filter(status__in=["queued", "running"]).exists()
            )

        def idle_for_a_second() -> bool:  # a task just taken is not in the queue any more
            if not idle():
                return False
            time.sleep(1)
            return idle()

        wait_for(idle_for_a_second, timeout=30, what="idle clusters")
    finally:
        for proc in procs:
            stop(proc)
        fake.server.stop()
        receiver.server.stop()

    for log in tmp_path.glob("*.log"):
        text = log.read_text(errors="replace")
        assert "Traceback" not in text, (log.name, text[-3000:])

    # Every event stored once: 2 nodes × ROUNDS × 3 events, each also sent to the other node.
    records = UsageRecord.objects.filter(account=account)
    ingested = records.filter(model="gpt-4o")
    assert ingested.count() == 2 * ROUNDS * EVENTS_PER_BATCH == 36
    assert Counter(records.values_list("request_id", flat=True)).most_common(1)[0][1] == 1
    proxied = records.filter(model="gpt-4o-mini-2024-07-18")
    assert proxied.count() == 2 * ROUNDS + 2 == 14

    # An ingested event: 10,000 × 0.0000025 = 0.025; 1,000 × 0.00001 = 0.01; 0.035 each.
    assert set(ingested.values_list("cost", flat=True)) == {D("0.035")}
    # A proxied call before the price change: 1,200 × 0.00000015 = 0.00018;
    # 300 × 0.0000006 = 0.00018; 0.00036. After it: 300 × 0.0000012 = 0.00036; 0.00054.
    costs = Counter(proxied.values_list("cost", flat=True))
    assert costs == {D("0.00036"): 12, D("0.00054"): 2}
    # 36 × 0.035 = 1.26; 12 × 0.00036 = 0.00432; 2 × 0.00054 = 0.00108;
    # 1.26 + 0.00432 + 0.00108 = 1.2654
    total = sum((day.cost for day in DailyUsage.objects.filter(account=account)), D(0))
    assert total == D("1.2654")

    # No account synced twice at once: each sync started after the one before it finished. A
    # sync asked for while another runs is recorded as skipped ("already running"), and there
    # was one running then.
    runs = list(SyncRun.objects.filter(account=account).order_by("started_at"))
    synced = [r for r in runs if r.status != SyncRun.Status.SKIPPED]
    assert len(synced) >= 2, [(r.status, r.started_at) for r in runs]
    assert all(r.status == SyncRun.Status.SUCCEEDED for r in synced), [r.error_class for r in runs]
    for before, after in zip(synced, synced[1:], strict=False):
        assert after.started_at >= before.finished_at, (before.pk, after.pk)
    for skipped in set(runs) - set(synced):
        assert any(r.started_at <= skipped.started_at <= r.finished_at for r in synced)

    # Each schedule at most once per interval: never more runs than the interval's ticks since
    # the schedules were set up (+1: a new schedule is due at once), and it kept running.
    ticks = math.floor(stopped / SCHEDULE_SECONDS) - math.floor(began / SCHEDULE_SECONDS)
    for name in ("usage-sync-all", "alerts-evaluate-all", "alerts-evaluate-due"):
        starts = sorted(Task.objects.filter(group=name).values_list("started", flat=True))
        assert len(starts) <= ticks + 1, (name, len(starts), ticks)
        assert len(starts) >= ticks // 2, (name, len(starts), ticks)

    # Each alert reached the webhook exactly once.
    alerts = Alert.objects.filter(workspace=account.workspace)
    sent = Counter(body["alert"]["id"] for body in receiver.bodies)
    assert sent == {alert.pk: 1 for alert in alerts}, (sent, list(alerts.values("pk", "kind")))
    assert {50, 80, 100} >= set(alerts.values_list("threshold", flat=True)) >= {100}
