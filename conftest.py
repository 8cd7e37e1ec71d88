"""Project-wide fixtures."""

from __future__ import annotations

import os
import threading

import pytest
from rest_framework.test import APIClient

# The browser tests drive Debian's chromium; Playwright's own browser download is never used.
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
BROWSER_MISSING = (
    f"BROWSER TESTS SKIPPED: {CHROMIUM} is missing. Install it with "
    "`sudo apt-get install chromium` (or run `make test` as root, which installs it)."
)


def browser_available() -> bool:
    return os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_report_header(config) -> str | None:
    if browser_available():
        return None
    if _in_ci():
        return f"CI=true and {CHROMIUM} is missing: every browser test will FAIL."
    return BROWSER_MISSING


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        _serialized_rollback_for_transactional(item)
    # Without chromium, skip only the browser tests, loudly. Not under CI=true: there the
    # launch fixture below fails them, so a green CI run has always exercised the UI.
    if browser_available() or _in_ci():
        return
    for item in items:
        if item.get_closest_marker("browser") is not None:
            item.add_marker(pytest.mark.skip(reason=BROWSER_MISSING))


def _serialized_rollback_for_transactional(item) -> None:
    """Every transactional test restores the serialized database when it ends.

    A transactional test without it ends with a flush that re-creates content types (Django's
    post_migrate), and the next one with it then fails to load its snapshot over them
    ("UNIQUE constraint failed: django_content_type"): the suite passed or failed by test
    order (seen when skipped browser tests changed the order). One rule for all of them.
    """
    marker = item.get_closest_marker("django_db")
    transactional = bool(marker and marker.kwargs.get("transaction")) or bool(
        set(getattr(item, "fixturenames", ())) & {"transactional_db", "live_server"}
    )
    if transactional and not (marker and marker.kwargs.get("serialized_rollback")):
        kwargs = {**(marker.kwargs if marker else {}), "transaction": True}
        kwargs["serialized_rollback"] = True
        item.add_marker(pytest.mark.django_db(**kwargs), append=False)


def pytest_terminal_summary(terminalreporter) -> None:
    if not browser_available() and not _in_ci():
        terminalreporter.write_line(BROWSER_MISSING, yellow=True, bold=True)


class _LiveRequests:
    """Requests the live server is still handling. A test that stops reading a response
    early (an SDK after [DONE], an assertion failing) can end while the server thread is
    still closing it; its request_finished then runs Django's connection cleanup after the
    test's database is gone, and the thread dies with a traceback."""

    def __init__(self) -> None:
        self.count = 0
        self.idle = threading.Condition()

    def started(self, **kwargs) -> None:
        with self.idle:
            self.count += 1

    def finished(self, **kwargs) -> None:
        with self.idle:
            self.count -= 1
            self.idle.notify_all()

    def wait(self, timeout: float) -> None:
        with self.idle:
            self.idle.wait_for(lambda: self.count <= 0, timeout=timeout)
            self.count = 0  # one never finished must not hold up the next test


_live_requests = _LiveRequests()


def pytest_configure(config) -> None:
    from django.core.signals import request_finished, request_started

    request_started.connect(_live_requests.started, weak=False)
    request_finished.connect(_live_requests.finished, weak=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    # Before any fixture is finalised (the database among them): let the live server finish
    # the requests it is still closing, for at most a few seconds.
    if "live_server" in getattr(item, "fixturenames", ()):
        _live_requests.wait(timeout=5)
    yield


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict:
    """pytest-playwright's launch arguments: Debian's chromium, headless, no sandbox (root)."""
    if not browser_available():
        pytest.fail(f"CI=true but {CHROMIUM} is missing: install Debian's chromium.")
    return {
        "executable_path": CHROMIUM,
        "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    }


@pytest.fixture(autouse=True)
def _fast_and_static(settings):
    # Hashing at full strength costs ~0.3 s a user; tests only need it to work.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # The manifest exists only after collectstatic; tests render templates without it.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


_DB_FIXTURES = {"db", "transactional_db", "live_server", "django_db_reset_sequences"}


@pytest.fixture(autouse=True)
def _provider_catalogue(request):
    """The six providers, as the data migration seeds them.

    A transactional test (live_server, threads) flushes every table when it ends, data
    migrations included; re-seeding here keeps the tests after it independent of order.
    """
    marker = request.node.get_closest_marker("django_db")
    names = set(request.fixturenames)
    if marker is None and not names & _DB_FIXTURES:
        return
    transactional = bool(
        (marker and marker.kwargs.get("transaction")) or names & {"transactional_db", "live_server"}
    )
    request.getfixturevalue("transactional_db" if transactional else "db")
    from providers.catalogue import catalogue_sync

    catalogue_sync()


@pytest.fixture(autouse=True)
def _fresh_price_cache():
    # The process-wide price book outlives a test; each test sees the prices it created.
    from usage.services.prices import price_cache_clear

    price_cache_clear()
    yield
    price_cache_clear()


@pytest.fixture(autouse=True)
def _fresh_key_memory():
    # Keys a process remembers (providers/key_memory.py) outlive a test's rolled-back rows.
    from providers import key_memory

    key_memory.forget_all()
    yield
    key_memory.forget_all()


@pytest.fixture(autouse=True)
def _fresh_evaluation_requests():
    # The (account, window) pairs a process has asked to evaluate outlive a test's rolled-back
    # EvaluationDue rows (alerts.services.alerts_evaluation_request).
    from alerts.services import evaluation_requests_forget

    evaluation_requests_forget()
    yield
    evaluation_requests_forget()


@pytest.fixture(autouse=True)
def _fresh_tag_values():
    # Tag values a process has seen (usage.services.tag_values) outlive a test's rolled-back
    # roll-up rows.
    from usage.services.tag_values import tag_values_forget

    tag_values_forget()
    yield
    tag_values_forget()


@pytest.fixture(autouse=True)
def ratelimit_tracker():
    """A fresh rate-limit tracker without its flush thread for each test: a background
    writer would race the test's database, so a test flushes by calling ``flush()``."""
    from providers.ratelimits.tracker import RateLimitTracker, tracker_replace

    fresh = RateLimitTracker(start_thread=False)
    old = tracker_replace(fresh)
    yield fresh
    tracker_replace(old)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's, plus: on PostgreSQL a process listens for key changes on a connection
    of its own, which must be closed before the test database is dropped."""
    yield
    from django.db import connection

    from providers import key_memory

    with django_db_blocker.unblock():
        key_memory.stop_listening()
        if connection.vendor == "postgresql":
            # Live-server threads still serving an SDK client's kept-alive connection hold
            # sessions of their own, which would stop the test database from being dropped.
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()
