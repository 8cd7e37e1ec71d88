"""Run the web server (gunicorn) and the django-q2 cluster together; Ctrl-C stops both."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


def gunicorn_command(*, host: str, port: str) -> list[str]:
    """gunicorn with the project's gunicorn.conf.py, bound to host:port."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        str(settings.BASE_DIR / "gunicorn.conf.py"),
        "--bind",
        f"{host}:{port}",
        "costtracker.wsgi:application",
    ]


def _port_free(host: str, port: int) -> bool:
    """Whether host:port can be bound. gunicorn's workers bind with SO_REUSEPORT
    (gunicorn.conf.py), so a second server on the same port would silently share its traffic
    instead of failing; a plain bind here fails while any server holds the port."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


class Command(BaseCommand):
    help = "Start gunicorn on HOST:PORT (127.0.0.1:8000) and the django-q2 cluster."

    def handle(self, *args, **options):
        host = os.environ.get("HOST", "127.0.0.1")
        port = os.environ.get("PORT", "8000")
        if not _port_free(host, int(port)):
            raise CommandError(f"{host}:{port} is in use (another `make run`?). Set PORT=…")
        self.stdout.write(
            f"Web server on http://{host}:{port}/ and the django-q2 cluster. Ctrl-C stops both."
        )
        procs = [
            subprocess.Popen(gunicorn_command(host=host, port=port)),  # noqa: S603
            subprocess.Popen([sys.executable, "manage.py", "qcluster"]),  # noqa: S603
        ]

        stopping = []

        def stop(signum, _frame):
            # Ctrl-C in a terminal reaches the whole process group, so the children got their
            # SIGINT already; signalling them again makes django-q2 shut down twice.
            if signum != signal.SIGINT:
                _terminate(procs)
            stopping.append(signum)

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        while not stopping and all(p.poll() is None for p in procs):
            time.sleep(0.5)
        if not stopping:
            _terminate(procs)  # one of the two died: take the other down with it
        deadline = time.monotonic() + 20
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        codes = [p.returncode for p in procs]
        if any(c not in (0, -signal.SIGTERM, -signal.SIGINT) for c in codes):
            raise SystemExit(1)


def _terminate(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
