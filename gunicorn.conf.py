"""gunicorn settings, one copy for every way the tracker is served: `make run` (manage.py
serve), the Dockerfile and docker-compose.yml. Command-line options override them.

WEB_WORKERS and WEB_THREADS size the server (default 2 × 32).

Metrics (costtracker/metrics.py) are counted per worker in PROMETHEUS_MULTIPROC_DIR and added
up by whichever worker answers /metrics: a directory of this server's own, emptied when it
starts (on_starting); without the variable, a temporary one made here and removed on exit.
"""

import os
import shutil
import tempfile
from pathlib import Path

# gthread workers: a streamed proxy response holds a thread, not a process, and the worker
# keeps its heartbeat while it streams, so calls longer than `timeout` survive.
worker_class = "gthread"
workers = int(os.environ.get("WEB_WORKERS", "2"))
threads = int(os.environ.get("WEB_THREADS", "32"))
timeout = 120
graceful_timeout = 15
keepalive = 5
# Each worker listens on its own SO_REUSEPORT socket and the kernel spreads new connections
# over them. On one shared socket whichever worker wakes first takes the connection, so a few
# keep-alive clients (an SDK, a proxy in front) could all land on one worker and leave the
# others idle. The price: connections still queued on a worker that exits are reset (clients
# retry), and a second server on the same port would share it silently, which is why
# `manage.py serve` checks that the port is free first.
reuse_port = True
# The longest request line gunicorn accepts (its default, 4094, answered a long History filter
# with a bare "414 Request-URI Too Long" page before Django could say what was wrong). Filter
# inputs are bounded (max_length) so the UI never builds a longer address; one typed by hand
# up to this length gets the page's own form error instead.
limit_request_line = 8190  # gunicorn's maximum
accesslog = "-"
logger_class = "costtracker.gunicorn_logging.AccessLogger"


def post_worker_init(worker):
    # The app's modules, settings and caches live until the worker exits: load them all (the
    # URLconf would otherwise be imported by the first request) and move them out of the
    # cyclic collector's sight, so its passes, and the pauses they put into requests, only
    # cover what requests allocate.
    import gc

    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - imports every view module
    gc.freeze()

    # Ctrl-C reaches a worker twice: the terminal's SIGINT to the whole process group, and the
    # arbiter's SIGQUIT relaying it. gunicorn 27's gthread quit handler, run a second time
    # while the first is inside ThreadPoolExecutor.shutdown, deadlocks on that executor's lock
    # until the arbiter SIGKILLs the worker graceful_timeout (15 s) later. The arbiter always
    # relays the quit, so a worker need not act on SIGINT itself.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


_made_here: list[str] = []  # the temporary metrics directory, removed by on_exit


def on_starting(server):
    # Before any worker exists, and before anything in the arbiter imports prometheus_client
    # (it reads the variable when imported): the workers inherit the environment.
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        # A previous run's files would be added in (and, pids being reused, written over).
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
    else:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="costtracker-metrics-")
        _made_here.append(os.environ["PROMETHEUS_MULTIPROC_DIR"])


def child_exit(server, worker):
    # A worker's counters stay (they are totals); its live gauges, if any, go.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    for directory in _made_here:
        shutil.rmtree(directory, ignore_errors=True)
