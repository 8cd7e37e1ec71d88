"""/healthz and /readyz (costtracker/health.py, costtracker/ops_views.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone
from django_q.models import Schedule

from costtracker import tasks
from costtracker.health import HEARTBEAT, heartbeat_stamp
from costtracker.management.commands.serve import gunicorn_command
from costtracker.models import Heartbeat
from costtracker.tests.servers import free_port, needs_posix, server_env

pytestmark = pytest.mark.django_db


def ready(client):
    response = client.get("/readyz")
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"]
    return response.status_code, response.json()


def test_it_answers_healthz_without_the_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.content == b"ok\n"


def test_it_is_ready_with_the_database_migrations_and_a_fresh_heartbeat(client):
    heartbeat_stamp()
    status, body = ready(client)
    assert status == 200
    assert body == {
        "status": "ready",
        "checks": {"database": "ok", "migrations": "ok", "cluster_heartbeat": "ok"},
    }


def test_it_is_not_ready_before_any_cluster_heartbeat(client):
    status, body = ready(client)
    assert status == 503
    assert body["failed"] == ["cluster_heartbeat"]
    assert body["checks"]["cluster_heartbeat"] == "no django-q2 cluster heartbeat seen yet"


def test_it_is_not_ready_once_the_heartbeat_is_two_sync_intervals_old(client, settings):
    settings.SYNC_INTERVAL_MINUTES = 5  # a heartbeat may be 10 minutes old
    now = timezone.now()
    heartbeat_stamp(now=now - timedelta(minutes=9, seconds=50))
    assert ready(client)[0] == 200
    heartbeat_stamp(now=now - timedelta(minutes=10, seconds=30))
    status, body = ready(client)
    assert status == 503
    assert body["failed"] == ["cluster_heartbeat"]
    # 10 min 30 s = 630 s (give or take the time the request took)
    assert body["checks"]["cluster_heartbeat"].startswith("last django-q2 cluster heartbeat 63")


def test_it_is_not_ready_with_a_migration_not_applied(client):
    heartbeat_stamp()
    # The database's own record of applied migrations says one is missing.
    MigrationRecorder(connection).record_unapplied("costtracker", "0001_heartbeat")
    status, body = ready(client)
    assert status == 503
    assert body["failed"] == ["migrations"]
    assert body["checks"]["migrations"] == "1 migration(s) not applied"


def test_the_scheduled_heartbeat_stamps_one_row_whichever_cluster_runs_it():
    call_command("setup_schedules", stdout=open("/dev/null", "w"))  # noqa: SIM115
    schedule = Schedule.objects.get(name="cluster-heartbeat")
    assert (schedule.func, schedule.minutes) == ("costtracker.tasks.cluster_heartbeat", 1)
    tasks.cluster_heartbeat()  # one cluster's worker
    first = Heartbeat.objects.get(name=HEARTBEAT).seen_at
    tasks.cluster_heartbeat()  # another's, a moment later
    assert Heartbeat.objects.count() == 1
    assert Heartbeat.objects.get(name=HEARTBEAT).seen_at >= first


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait_for(port: int, server: subprocess.Popen) -> None:
    import time

    deadline = time.monotonic() + 30
    while True:
        assert server.poll() is None, server.stderr.read().decode()
        try:
            _get(f"http://127.0.0.1:{port}/healthz")
            return
        except OSError:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)


@needs_posix
@pytest.mark.parametrize(
    "database",
    [
        # PostgreSQL on a port nothing listens on (connection refused)
        "postgres://tracker:hunter2-db-secret@127.0.0.1:{closed}/tracker",
        # SQLite in a directory that does not exist (cannot be opened)
        "sqlite:////nonexistent-{closed}/hunter2-db-secret/db.sqlite3",
    ],
    ids=["postgresql", "sqlite"],
)
def test_a_real_server_without_its_database_is_alive_but_not_ready(tmp_path, database):
    closed, port = free_port(), free_port()
    env = server_env(tmp_path / "unused.sqlite3", WEB_WORKERS="1", WEB_THREADS="2")
    env["DATABASE_URL"] = database.format(closed=closed)
    server = subprocess.Popen(
        gunicorn_command(host="127.0.0.1", port=str(port)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for(port, server)
        assert _get(f"http://127.0.0.1:{port}/healthz") == (200, b"ok\n")
        status, raw = _get(f"http://127.0.0.1:{port}/readyz")
        assert status == 503
        body = json.loads(raw)
        assert body["failed"] == ["database", "migrations", "cluster_heartbeat"]
        assert body["checks"] == {
            "database": "unreachable",
            "migrations": "not checked",
            "cluster_heartbeat": "not checked",
        }
        for secret in ("hunter2", str(closed), "tracker", "nonexistent"):
            assert secret not in raw.decode()
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert b"hunter2" not in server.stderr.read()  # nor in the log


@needs_posix
@pytest.mark.slow
def test_a_real_cluster_makes_a_real_server_ready(tmp_path):
    # A migrated database with the schedules, as `make run` leaves it; then the web server
    # (not ready: no heartbeat), then a cluster, whose scheduler's first pass (about 30 s after
    # it starts, django-q2's guard cycle) queues the heartbeat a worker stamps.
    import sys
    import time

    from django.conf import settings

    port = free_port()
    env = server_env(tmp_path / "db.sqlite3", WEB_WORKERS="1", WEB_THREADS="2", Q_WORKERS="1")
    manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
    for command in (["migrate", "-v0"], ["setup_schedules"]):
        subprocess.run([*manage, *command], env=env, check=True, capture_output=True, timeout=120)
    started = []
    try:
        for command in (gunicorn_command(host="127.0.0.1", port=str(port)), [*manage, "qcluster"]):
            if started:
                status, raw = _get(f"http://127.0.0.1:{port}/readyz")
                assert status == 503
                assert json.loads(raw)["failed"] == ["cluster_heartbeat"]
            started.append(
                subprocess.Popen(
                    command,
                    env=env,
                    cwd=settings.BASE_DIR,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                )
            )
            if len(started) == 1:
                _wait_for(port, started[0])
        deadline = time.monotonic() + 90
        while (status := _get(f"http://127.0.0.1:{port}/readyz"))[0] != 200:
            assert started[1].poll() is None, started[1].stderr.read().decode()
            assert time.monotonic() < deadline, status
            time.sleep(1)
        assert json.loads(status[1])["status"] == "ready"
    finally:
        for process in reversed(started):
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
