"""gunicorn settings, one copy for every way the tracker is served: `make run` (manage.py
serve), the Dockerfile and docker-compose.yml. Command-line options override them.

WEB_WORKERS and WEB_THREADS size the server (default 2 × 32).
"""

import os

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
