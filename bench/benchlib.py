"""What the benchmark scripts share: settings, a throwaway database, a port, percentiles."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

# Benchmarks run on a database of their own, so they need no .env: these keys only ever
# protect that throwaway database. A real SECRET_KEY/ENCRYPTION_KEYS in the environment wins.
BENCH_SETTINGS = {
    "DJANGO_SETTINGS_MODULE": "costtracker.settings",
    "SECRET_KEY": "bench-only-secret-key-not-for-production",
    "ENCRYPTION_KEYS": "YmVuY2gtb25seS1lbmNyeXB0aW9uLWtleS0zMmJ5dGU=",  # 32 bytes: a Fernet key
}


def django_environment() -> None:
    """Make the environment Django needs for a benchmark, or say what is missing."""
    for name, value in BENCH_SETTINGS.items():
        os.environ.setdefault(name, value)
    try:
        import django  # noqa: F401
    except ImportError:
        raise SystemExit(
            "Django is not installed for this Python. Run `make .venv/.installed` (or "
            "`make test`) once, then run the benchmark with .venv/bin/python."
        ) from None


def django_migrated(database_url: str) -> None:
    """Point Django at `database_url`, migrate it (as `manage.py migrate` would, in a process
    of its own) and set Django up in this one."""
    os.environ["DATABASE_URL"] = database_url
    django_environment()
    root = Path(__file__).resolve().parent.parent
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"], cwd=root, check=True, env=os.environ
    )
    sys.path.insert(0, str(root))
    import django

    django.setup()


def bench_database(name: str, *, sqlite_query: str = "") -> tuple[str, str, Callable[[], None]]:
    """(DATABASE_URL for the run, backend label, cleanup).

    With a PostgreSQL DATABASE_URL: a fresh database `name` on that server, dropped by cleanup.
    Otherwise a temporary SQLite file.
    """
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://", "pgsql://")):
        import psycopg

        parts = urlsplit(url)
        admin = urlunsplit(parts._replace(path="/postgres", scheme="postgresql"))
        bench = urlunsplit(parts._replace(path=f"/{name}"))

        def run(sql: str) -> None:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(sql)

        run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        run(f"CREATE DATABASE {name}")
        return bench, "PostgreSQL", lambda: run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    folder = tempfile.mkdtemp(prefix=f"{name}_")
    return (
        f"sqlite:///{folder}/bench.sqlite3{sqlite_query}",
        "SQLite",
        lambda: shutil.rmtree(folder, ignore_errors=True),
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]
