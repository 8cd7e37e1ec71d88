"""A long address reaches the app (which answers with its own form error), not gunicorn's bare
"414 Request-URI Too Long" page (gunicorn.conf.py, limit_request_line)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

from costtracker.management.commands.serve import gunicorn_command
from costtracker.tests.servers import free_port, needs_posix, server_env


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@needs_posix
def test_it_lets_a_5000_character_filter_reach_the_app(tmp_path):
    port = free_port()
    env = server_env(tmp_path / "db.sqlite3", WEB_WORKERS="1", WEB_THREADS="2")
    server = subprocess.Popen(
        gunicorn_command(host="127.0.0.1", port=str(port)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    opener = urllib.request.build_opener(_NoRedirect)
    url = f"http://127.0.0.1:{port}/usage/history/?model=" + "x" * 5000
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                opener.open(url, timeout=5)
                status = 200
                break
            except urllib.error.HTTPError as exc:
                status = exc.code
                break
            except OSError:
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)
        # Signed out, the app sends the visitor to log in: Django answered, gunicorn let it by.
        assert status == 302
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
