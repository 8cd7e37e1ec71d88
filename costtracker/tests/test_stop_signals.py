"""systemd's stop (SIGTERM to the process group) and `kill <pid>` stop the task cluster and
`make run` within 5 s — real processes on a migrated SQLite database, no mocks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings

from costtracker.tests.servers import (
    children,
    free_port,
    needs_posix,
    server_env,
    wait_until_answering,
)

pytestmark = needs_posix
MANAGE = str(settings.BASE_DIR / "manage.py")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    db = tmp_path_factory.mktemp("stop") / "db.sqlite3"
    env = server_env(db, Q_WORKERS="2", WEB_WORKERS="1", WEB_THREADS="4")
    env.pop("DJANGO_SETTINGS_MODULE", None)
    subprocess.run(  # noqa: S603
        [sys.executable, MANAGE, "migrate", "-v0"], env=env, check=True, cwd=settings.BASE_DIR
    )
    return env


class Proc:
    """A command in its own session (its pid is its group's id), output collected."""

    def __init__(self, args: list[str], env: dict[str, str]):
        self.popen = subprocess.Popen(  # noqa: S603
            [sys.executable, MANAGE, *args],
            env=env,
            cwd=settings.BASE_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.popen.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self.popen.poll() is None, "".join(self.lines)
            assert time.monotonic() < deadline, f"no {text!r} in:\n" + "".join(self.lines)
            time.sleep(0.1)

    def group(self) -> list[int]:
        out = subprocess.run(
            ["ps", "-o", "pid=", "-g", str(self.popen.pid)],  # noqa: S607
            capture_output=True,
            text=True,
        ).stdout
        return [int(p) for p in out.split()]

    def stop(self, *, target: str) -> float:
        """Send SIGTERM to the group or the main pid; seconds until every process is gone."""
        started = time.monotonic()
        if target == "group":
            os.killpg(self.popen.pid, signal.SIGTERM)
        else:
            os.kill(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        while self.group() and time.monotonic() - started < 30:
            time.sleep(0.05)
        return time.monotonic() - started

    def kill(self) -> None:
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait()


@pytest.fixture
def procs():
    started: list[Proc] = []
    yield started
    for proc in started:
        proc.kill()


@pytest.mark.parametrize("target", ["group", "main"])
def test_it_stops_an_idle_cluster_within_5_s(env, procs, target):
    # Before: a SIGTERM to the group killed the sentinel while it waited on the stop event and
    # the main process then waited for its acknowledgement for ever (still running at 45 s).
    cluster = Proc(["qcluster"], env)
    procs.append(cluster)
    cluster.wait_for("running.")
    assert len(cluster.group()) == 6  # main, sentinel, 2 workers, pusher, monitor
    took = cluster.stop(target=target)
    assert took < 5, f"{took:.1f} s\n" + "".join(cluster.lines)
    assert cluster.popen.returncode == 0
    assert cluster.group() == []
    assert any("has stopped." in line for line in cluster.lines)


def test_it_stops_a_cluster_with_a_task_running_within_5_s(env, procs):
    # A worker busy with a long task is given a short grace, then killed with its task
    # (the broker hands the task out again after Q_CLUSTER["retry"]).
    subprocess.run(  # noqa: S603
        [
            sys.executable,
            MANAGE,
            "shell",
            "-c",
            "from django_q.tasks import async_task; async_task('time.sleep', 120)",
        ],
        env=env,
        cwd=settings.BASE_DIR,
        check=True,
    )
    cluster = Proc(["qcluster"], env)
    procs.append(cluster)
    cluster.wait_for("processing")
    took = cluster.stop(target="group")
    assert took < 5, f"{took:.1f} s\n" + "".join(cluster.lines)
    assert cluster.group() == []
    assert any("killing its processes" in line for line in cluster.lines)


def test_it_fails_when_the_sentinel_dies_on_its_own(env, procs):
    # `make run` (serve) and a supervisor restart the cluster only if the command fails.
    cluster = Proc(["qcluster"], env)
    procs.append(cluster)
    cluster.wait_for("running.")
    (sentinel,) = children(cluster.popen.pid)
    os.kill(sentinel, signal.SIGKILL)
    assert cluster.popen.wait(timeout=5) == 1


@pytest.mark.parametrize("target", ["group", "main"])
def test_it_stops_make_run_within_5_s(env, procs, target):
    # `make run` = manage.py serve = gunicorn + qcluster in one group (27 s before).
    port = free_port()
    server = Proc(["serve"], {**env, "PORT": str(port)})
    procs.append(server)
    server.wait_for("running.")
    wait_until_answering(port)
    took = server.stop(target=target)
    assert took < 5, f"{took:.1f} s\n" + "".join(server.lines)
    assert server.popen.returncode == 0
    assert server.group() == []
    assert not any("SIGKILL" in line for line in server.lines)


def test_the_project_qcluster_command_replaces_django_q2s():
    from django.core.management import get_commands

    assert get_commands()["qcluster"] == "costtracker"
    assert Path(MANAGE).exists()
