"""`manage.py qcluster`: django-q2's cluster, stopped within a few seconds by SIGTERM or SIGINT
sent to its main process or to its whole process group (systemd's default stop, Ctrl-C).

Why django-q2's own command could not: its sentinel (the process that supervises the workers)
resets SIGTERM to the default action, so a SIGTERM to the group killed it while it waited on
the cluster's stop event. The main process, handling its own SIGTERM, then set that event —
and `multiprocessing.Event.set()` waits for every waiter to acknowledge the wake-up, so it
waited for the dead sentinel for ever (until systemd's SIGKILL, 90 s later).

Here the sentinel ignores SIGTERM as it already ignores SIGINT (its children inherit that), so
whichever process gets the signal, the main process alone stops the cluster, in django-q2's
order: stop fetching, let idle workers take their poison pill, stop the monitor. A task still
running `STOP_GRACE` seconds later is killed with its worker and left to the broker, which
hands it out again after `Q_CLUSTER["retry"]` seconds — the tasks are written to be re-run.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand
from django_q.cluster import Cluster, Sentinel, get_mp_context
from django_q.conf import Conf, logger
from django_q.scheduler import scheduler

# Seconds the sentinel gets to stop the cluster in order before what is left is killed; with
# the kill and the reaping this keeps a stop under 5 s.
STOP_GRACE = 2.0


class QuietSentinel(Sentinel):
    """django-q2's sentinel, except that only its parent stops it (through the stop event).

    With `Q_SCHEDULER_SECONDS` set it also runs django-q2's scheduler that often, from a thread
    of its own, besides django-q2's every 30 s. Running it more often, or on several clusters at
    once, never starts a schedule twice: the scheduler takes the due schedules under a row lock
    (`select_for_update`) and moves each one's next run on in the same transaction.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, start=False, **kwargs)
        # Inherited by the workers, pusher and monitor it forks next: a signal to the
        # group reaches only the main process's handler.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self.start()

    def spawn_cluster(self):
        super().spawn_cluster()
        every = float(getattr(settings, "Q_SCHEDULER_SECONDS", 0) or 0)
        if every > 0 and Conf.SCHEDULER:
            threading.Thread(
                target=self._schedule_often, args=(every,), name="scheduler", daemon=True
            ).start()

    def _schedule_often(self, every: float) -> None:
        # Polls rather than waits on the stop event: its set() waits for every waiter.
        while True:
            time.sleep(every)
            if self.stop_event.is_set():
                return
            try:
                scheduler(broker=self.broker)
            except Exception:
                logger.exception("the scheduler failed; trying again in %s s", every)


class StoppableCluster(Cluster):
    """A cluster whose signal handler only records the request; `run` does the stopping."""

    def __init__(self, broker=None):
        self.stop_requested = False
        super().__init__(broker)  # installs sig_handler for SIGTERM and SIGINT

    def sig_handler(self, signum, frame):
        # Stopping inside the handler would re-enter whatever wait it interrupted. A plain
        # flag, not a threading.Event: a second signal (the group's, then `serve`'s) can land
        # inside the first handler, and Event.set() would wait on the lock it already holds.
        self.stop_requested = True

    def start(self) -> int:
        self.stop_event = get_mp_context().Event()
        self.start_event = get_mp_context().Event()
        self.sentinel = get_mp_context().Process(
            target=QuietSentinel,
            name=f"Process-{uuid.uuid4().hex}",
            args=(self.stop_event, self.start_event, self.cluster_id, self.broker, self.timeout),
        )
        self.sentinel.start()
        logger.info("Q Cluster %s starting.", self.name)
        return self.pid

    def run(self, *, once: bool = False) -> None:
        """Until a signal (or, with `once`, until the cluster has started); then stop."""
        while self.sentinel.is_alive() and not self.stop_requested:
            if once and self.start_event.is_set():
                break
            self.sentinel.join(0.2)
        self.stop()

    def stop(self) -> bool:
        if not self.sentinel.is_alive():
            return False
        logger.info("Q Cluster %s stopping.", self.name)
        # Event.set() waits for each waiter to acknowledge; never let a dead one hold us.
        setter = threading.Thread(target=self.stop_event.set, daemon=True)
        setter.start()
        setter.join(1)
        self.sentinel.join(STOP_GRACE)
        if self.sentinel.is_alive():
            logger.warning(
                "Q Cluster %s: stopping took too long, killing its processes.", self.name
            )
            _kill_tree(self.sentinel.pid)
            self.sentinel.join(1)
        logger.info("Q Cluster %s has stopped.", self.name)
        return True


def _kill_tree(pid: int) -> None:
    """SIGKILL pid's descendants, then pid (Linux /proc; elsewhere pid alone)."""
    for child in _children(pid):
        _kill_tree(child)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(p) for p in path.read_text().split()]
    except OSError:
        return []


class Command(BaseCommand):
    help = "Start the django-q2 cluster; SIGTERM or SIGINT stops it within 5 s."

    def add_arguments(self, parser):
        parser.add_argument(
            "--run-once", action="store_true", help="Start, then stop at once (a smoke test)."
        )
        parser.add_argument(
            "-n", "--name", dest="cluster_name", help="Queue name (django-q2's multi-queue)."
        )

    def handle(self, *args, **options):
        if options["cluster_name"]:  # as django-q2's own command does
            os.environ["Q_CLUSTER_NAME"] = options["cluster_name"]
        cluster = StoppableCluster()
        cluster.start()
        cluster.run(once=options["run_once"])
        if not cluster.stop_requested and cluster.sentinel.exitcode not in (0, None):
            # The sentinel died on its own: fail, so a supervisor restarts the cluster.
            raise SystemExit(1)
