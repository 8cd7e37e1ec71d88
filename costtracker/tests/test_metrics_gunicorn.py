"""/metrics under real gunicorn with two workers: one scrape counts what every worker served,
including a worker that has since exited (gunicorn.conf.py: the multi-process directory)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from costtracker.management.commands.serve import gunicorn_command
from costtracker.tests.servers import (
    children,
    free_port,
    needs_posix,
    server_env,
    wait_until_answering,
)

TOKEN = "gunicorn-metrics-token-0042"


def get(url: str, **headers: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def healthz_count(port: int) -> float:
    status, body = get(f"http://127.0.0.1:{port}/metrics", Authorization=f"Bearer {TOKEN}")
    assert status == 200, body
    text = body.decode()
    assert TOKEN not in text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "costtracker_http_requests_total" and sample.labels == {
                "route": "healthz",
                "method": "GET",
                "status": "200",
            }:
                return sample.value
    return 0.0


@needs_posix
def test_one_scrape_counts_the_requests_of_every_worker(tmp_path):
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"a previous run's file")  # emptied at start
    env = server_env(
        tmp_path / "db.sqlite3",
        WEB_WORKERS="2",
        WEB_THREADS="4",
        METRICS_ENABLED="true",
        METRICS_TOKEN=TOKEN,
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    server = subprocess.Popen(
        gunicorn_command(host="127.0.0.1", port=str(port)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until_answering(port)  # one request to /static/none: not counted (WhiteNoise)
        deadline = time.monotonic() + 20
        while len(children(server.pid)) < 2:
            assert time.monotonic() < deadline, "two workers never started"
            time.sleep(0.1)
        workers = children(server.pid)

        # Each request on a new connection: SO_REUSEPORT spreads connections over the
        # workers' sockets (gunicorn.conf.py).
        sent = 0
        while not all((metrics_dir / f"counter_{pid}.db").exists() for pid in workers):
            assert get(f"http://127.0.0.1:{port}/healthz") == (200, b"ok\n")
            sent += 1
            assert sent < 400, "the requests never reached both workers"
        for _ in range(20):
            assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200
        sent += 20

        assert healthz_count(port) == sent  # every worker's requests, in one scrape

        # A worker that exits (gunicorn starts another) keeps its requests in the totals.
        os.kill(workers[0], signal.SIGTERM)
        deadline = time.monotonic() + 20
        while workers[0] in children(server.pid) or len(children(server.pid)) < 2:
            assert time.monotonic() < deadline, "the worker was not replaced"
            time.sleep(0.1)
        assert healthz_count(port) == sent
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)
