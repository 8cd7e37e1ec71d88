"""What the tests that start real server processes share: a free port, a settings
environment for a throwaway SQLite file, and waiting until the server answers."""

from __future__ import annotations

import os
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

needs_posix = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def server_env(database: Path, **extra: str) -> dict[str, str]:
    """The environment of a server process on its own SQLite file, with test-only keys."""
    return {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{database}",
        "SECRET_KEY": "test-secret-key",
        "ENCRYPTION_KEYS": "dGVzdC1vbmx5LWVuY3J5cHRpb24ta2V5LTMyYnl0ZSE=",
        "DEBUG": "false",
        **extra,
    }


def wait_until_answering(port: int, *, timeout: float = 30) -> None:
    """Until the server on `port` answers HTTP at all (a 404 for a missing file will do)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/static/none", timeout=2)
            return
        except urllib.error.HTTPError:
            return  # answered
        except OSError:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
