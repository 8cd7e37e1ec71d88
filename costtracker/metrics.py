"""Prometheus metrics: what /metrics serves (costtracker/ops_views.py) and the hooks that
count. README "Health and metrics" says what each metric means.

Two kinds of figures:

- Counted in the web processes as things happen: HTTP requests, proxy overhead, ingested
  events. Under gunicorn each worker writes its own files in PROMETHEUS_MULTIPROC_DIR
  (gunicorn.conf.py makes one when none is given) and a scrape, answered by any worker, adds
  them all up (prometheus_client's multi-process mode).
- Read from the database at scrape time: sync runs by outcome, the task queue's depth, this
  month's spend. They come from the cluster's work, and the cluster is another process, often
  on another machine or container: the database is the one place every node's work meets.
  Every web node reports the same figures for them (aggregate with max, not sum).

Labels hold only bounded, non-personal values: a URL pattern (never a path), an HTTP method
and status, a provider slug, a usage source, an outcome, an error class. Never a key, a token,
a tag value, a user, a workspace, a project or a model name.

Counting is off (no middleware, hooks return at once) unless METRICS_ENABLED is set.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime

from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed
from django.db import DatabaseError
from django.db.models import Count, Sum
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

# The text format every Prometheus (2.x and 3.x) reads; generate_latest writes it.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

UNMATCHED = "<unmatched>"  # a request no URL pattern matched (a 404 before any view)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Up to gunicorn's timeout (120 s): a proxied call waits on the provider.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
OVERHEAD_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)

HTTP_REQUESTS = Counter(
    "costtracker_http_requests",
    "HTTP requests answered, by URL pattern, method and status.",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "costtracker_http_request_duration_seconds",
    "Time from a request's arrival to its response's headers (a stream's body not included).",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
PROXY_OVERHEAD = Histogram(
    "costtracker_proxy_overhead_seconds",
    "Time a proxied call spends in the tracker, not waiting on the provider: phase=forward is "
    "from arrival to sending it on, phase=record is writing its usage record.",
    ["provider", "phase"],
    buckets=OVERHEAD_BUCKETS,
)
INGEST_EVENTS = Counter(
    "costtracker_ingest_events",
    "Events posted to the ingestion API, by outcome (accepted, duplicate, rejected).",
    ["provider", "outcome"],
)
INGEST_OUTCOMES = {"created": "accepted", "duplicate": "duplicate", "rejected": "rejected"}


def enabled() -> bool:
    return bool(settings.METRICS_ENABLED)


class MetricsMiddleware:
    """Counts every request by its URL pattern (request.resolver_match.route: ids in the path
    never become labels). After WhiteNoise: static files are not counted."""

    def __init__(self, get_response):
        if not enabled():
            raise MiddlewareNotUsed
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - started
        match = getattr(request, "resolver_match", None)
        route = match.route if match is not None else UNMATCHED
        method = request.method if request.method in METHODS else "other"
        HTTP_REQUESTS.labels(route, method, str(response.status_code)).inc()
        HTTP_DURATION.labels(route, method).observe(elapsed)
        return response


def proxy_forward_overhead(*, provider: str, started: datetime) -> None:
    """A proxied call is about to be sent on; it arrived at `started` (aware datetime)."""
    if enabled():
        seconds = max(0.0, (datetime.now(UTC) - started).total_seconds())
        PROXY_OVERHEAD.labels(provider, "forward").observe(seconds)


def timed_proxy_record(func):
    """Decorates the proxy's record writer: its time is phase=record of the overhead."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        if not enabled():
            return func(*args, **kwargs)
        started = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            provider = kwargs["account"].provider.slug
            PROXY_OVERHEAD.labels(provider, "record").observe(time.perf_counter() - started)

    return wrapper


def ingest_events_counted(*, provider: str, counts: dict[str, int]) -> None:
    """One ingestion POST's results: counts by the API's item status."""
    if enabled():
        for status, outcome in INGEST_OUTCOMES.items():
            if counts.get(status):
                INGEST_EVENTS.labels(provider, outcome).inc(counts[status])


# --- read from the database at scrape time ---------------------------------------------------

FINISHED_SYNC = ("succeeded", "failed", "partial", "skipped")


def _database_families() -> Iterator:
    from django_q.models import OrmQ

    from usage.models import DailyUsage, SyncRun

    runs = CounterMetricFamily(
        "costtracker_sync_runs",
        "Finished sync runs kept in the database (all nodes), by outcome and error class.",
        labels=["outcome", "error_class"],
    )
    rows = (
        SyncRun.objects.filter(status__in=FINISHED_SYNC)
        .values_list("status", "error_class")
        .annotate(n=Count("id"))
        .order_by()
    )
    for status, error_class, n in rows:
        runs.add_metric([status, error_class or "none"], n)
    yield runs

    queue = GaugeMetricFamily(
        "costtracker_task_queue_depth",
        "django-q2 tasks in the ORM broker's queue, waiting or being run, by queue name.",
        labels=["queue"],
    )
    for name, n in OrmQ.objects.values_list("key").annotate(n=Count("id")).order_by():
        queue.add_metric([name], n)
    yield queue

    today = datetime.now(UTC).date()
    spend = GaugeMetricFamily(
        "costtracker_spend_month_to_date_usd",
        "Priced spend of every workspace this UTC month (daily roll-up, superseded estimates "
        "left out), by provider and source.",
        labels=["provider", "source"],
    )
    unpriced = GaugeMetricFamily(
        "costtracker_unpriced_records_month_to_date",
        "Usage records without a price this UTC month (their cost is unknown, not 0).",
        labels=["provider", "source"],
    )
    # superseded=False: official figures supersede estimates (usage.selectors.effective_rollup
    # applies the same rule per workspace).
    totals = (
        DailyUsage.objects.filter(superseded=False, day__gte=today.replace(day=1))
        .values_list("provider__slug", "source")
        .annotate(cost=Sum("cost"), unpriced=Sum("unpriced_count"))
        .order_by()
    )
    for slug, source, cost, unpriced_count in totals:
        spend.add_metric([slug, source], float(cost or 0))
        unpriced.add_metric([slug, source], unpriced_count or 0)
    yield spend
    yield unpriced


class DatabaseCollector(Collector):
    def collect(self):
        try:
            families = list(_database_families())
        except DatabaseError:
            families = []
        yield from families
        yield GaugeMetricFamily(
            "costtracker_metrics_database_up",
            "1 if this scrape could read the database-backed metrics, else 0.",
            value=1 if families else 0,
        )


def exposition() -> bytes:
    """The whole scrape in Prometheus text format."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        counted = CollectorRegistry()
        multiprocess.MultiProcessCollector(counted)
    else:  # one process (runserver, tests): its own registry holds everything
        counted = REGISTRY
    from_database = CollectorRegistry(auto_describe=False)
    from_database.register(DatabaseCollector())
    return generate_latest(counted) + generate_latest(from_database)
