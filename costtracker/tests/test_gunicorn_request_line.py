"""A long address reaches the app (which answers with its own form error), not gunicorn's bare
"414 Request-URI Too Long" page (gunicorn.conf.py, limit_request_line)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from costtracker.management.commands.serve import gunicorn_command
from costtracker.tests.test_gunicorn_server import _free_port


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")
def test_it_lets_a_5000_character_filter_reach_the_app(tmp_path):
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
        "SECRET_KEY": "test-secret-key",
        "ENCRYPTION_KEYS": "dGVzdC1vbmx5LWVuY3J5cHRpb24ta2V5LTMyYnl0ZSE=",
        "DEBUG": "false",
        "WEB_WORKERS": "1",
        "WEB_THREADS": "2",
    }
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
