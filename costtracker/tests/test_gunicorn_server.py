"""The production server as `make run` starts it: Ctrl-C stops it at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from costtracker.management.commands.serve import gunicorn_command

needs_posix = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@needs_posix
def test_ctrl_c_to_the_process_group_stops_every_worker_at_once(tmp_path):
    # A terminal's Ctrl-C signals the whole group: each worker gets SIGINT, then SIGQUIT from
    # the arbiter. gunicorn's gthread worker handling both could deadlock until it was
    # SIGKILLed 15 s later (gunicorn.conf.py).
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
        "SECRET_KEY": "test-secret-key",
        "ENCRYPTION_KEYS": "dGVzdC1vbmx5LWVuY3J5cHRpb24ta2V5LTMyYnl0ZSE=",
        "DEBUG": "false",
        "WEB_WORKERS": "1",
        "WEB_THREADS": "4",
    }
    server = subprocess.Popen(
        gunicorn_command(host="127.0.0.1", port=str(port)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/static/none", timeout=2)
            except urllib.error.HTTPError:
                break  # answered
            except OSError:
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)
        (worker,) = _children(server.pid)

        os.kill(worker, signal.SIGINT)  # a worker leaves SIGINT to the arbiter...
        time.sleep(0.5)
        assert _children(server.pid) == [worker]

        started = time.monotonic()
        os.killpg(server.pid, signal.SIGINT)  # ...which stops everything on Ctrl-C
        server.wait(timeout=10)
        assert time.monotonic() - started < 5
        assert b"SIGKILL" not in server.stderr.read()
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
