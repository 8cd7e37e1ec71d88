"""The production server as `make run` starts it: Ctrl-C stops it at once."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from costtracker.management.commands.serve import gunicorn_command
from costtracker.tests.servers import (
    children,
    free_port,
    needs_posix,
    server_env,
    wait_until_answering,
)


@needs_posix
def test_ctrl_c_to_the_process_group_stops_every_worker_at_once(tmp_path):
    # A terminal's Ctrl-C signals the whole group: each worker gets SIGINT, then SIGQUIT from
    # the arbiter. gunicorn's gthread worker handling both could deadlock until it was
    # SIGKILLed 15 s later (gunicorn.conf.py).
    port = free_port()
    env = server_env(tmp_path / "db.sqlite3", WEB_WORKERS="1", WEB_THREADS="4")
    server = subprocess.Popen(
        gunicorn_command(host="127.0.0.1", port=str(port)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_until_answering(port)
        (worker,) = children(server.pid)

        os.kill(worker, signal.SIGINT)  # a worker leaves SIGINT to the arbiter...
        time.sleep(0.5)
        assert children(server.pid) == [worker]

        started = time.monotonic()
        os.killpg(server.pid, signal.SIGINT)  # ...which stops everything on Ctrl-C
        server.wait(timeout=10)
        assert time.monotonic() - started < 5
        assert b"SIGKILL" not in server.stderr.read()
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
