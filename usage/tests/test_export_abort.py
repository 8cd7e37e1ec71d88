"""An export that fails part-way never looks complete: over real HTTP, the download fails.

Two servers: pytest-django's live server (Django's development server, which ends a response of
unknown length by closing the connection, so only the content can tell), and the same server
speaking chunked transfer encoding as gunicorn does in production, where an aborted stream
lacks its terminating chunk and the client's read fails.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import requests
from django.core.servers import basehttp
from django.test.testcases import (
    LiveServerThread,
    QuietWSGIRequestHandler,
    _StaticFilesHandler,
)

from accounts.tests.factories import UserFactory
from providers.tests.factories import AccountFactory
from usage import insight_apis
from usage.services.records import manual_entry_create

ROWS = 40
FAIL_AT = 29  # the export stopped after 28 rows


class _ChunkedHandler(basehttp.ServerHandler):
    """Django's development server handler, framing a body of unknown length in chunks."""

    chunked = False

    def cleanup_headers(self):
        super().cleanup_headers()
        if "Content-Length" not in self.headers and self.environ["REQUEST_METHOD"] != "HEAD":
            self.headers["Transfer-Encoding"] = "chunked"
            self.chunked = True

    def write(self, data):
        if not self.headers_sent:
            self.bytes_sent = len(data)
            self.send_headers()
        else:
            self.bytes_sent += len(data)
        if self.chunked:
            if data:
                self._write(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self._write(data)
        self._flush()

    def finish_content(self):
        if not self.headers_sent:
            super().finish_content()
        elif self.chunked:
            self._write(b"0\r\n\r\n")  # only reached when the body ended normally
            self._flush()


class _ChunkedRequestHandler(QuietWSGIRequestHandler):
    def handle_one_request(self):
        self.raw_requestline = self.rfile.readline(65537)
        if not self.raw_requestline or not self.parse_request():
            return
        handler = _ChunkedHandler(self.rfile, self.wfile, self.get_stderr(), self.get_environ())
        handler.request_handler = self
        handler.run(self.server.get_app())
        self.close_connection = True


class _ChunkedServerThread(LiveServerThread):
    def _create_server(self, connections_override=None):
        return self.server_class(
            (self.host, self.port),
            _ChunkedRequestHandler,
            allow_reuse_address=False,
            connections_override=connections_override,
        )


@pytest.fixture
def chunked_live_server(transactional_db):
    from django.db import connections

    # As LiveServerTestCase: an in-memory SQLite database is shared with the server thread.
    overrides = {
        conn.alias: conn
        for conn in connections.all()
        if conn.vendor == "sqlite" and conn.is_in_memory_db()
    }
    for conn in overrides.values():
        conn.inc_thread_sharing()
    thread = _ChunkedServerThread("localhost", _StaticFilesHandler, connections_override=overrides)
    thread.daemon = True
    thread.start()
    thread.is_ready.wait()
    if thread.error:
        raise thread.error
    yield f"http://localhost:{thread.port}"
    thread.terminate()
    for conn in overrides.values():
        conn.dec_thread_sharing()


@pytest.fixture
def user_with_rows(transactional_db):
    from providers.catalogue import catalogue_sync

    catalogue_sync()
    user = UserFactory()
    account = AccountFactory(workspace=user.personal_workspace)
    for i in range(ROWS):
        manual_entry_create(
            account=account, day=date(2026, 11, 2), description=f"row {i}", cost=Decimal(i)
        )
    return user


@pytest.fixture
def broken_at_row(monkeypatch):
    """Row FAIL_AT cannot be written out (as a value no reader could handle once did)."""
    real = insight_apis._export_dict

    def failing(row):
        if f"row {FAIL_AT - 1}" in row:  # rows are exported oldest first: the FAIL_AT-th
            raise ArithmeticError("a value that cannot be read")
        return real(row)

    monkeypatch.setattr(insight_apis, "_export_dict", failing)


def _session(base: str, user) -> requests.Session:
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.save()
    session = requests.Session()
    session.cookies.set(settings.SESSION_COOKIE_NAME, store.session_key)
    return session


EXPORTS = ["/api/export?format=csv", "/api/export?format=json", "/export/?download=1&format=json"]
WINDOW = "&start=2026-11-01&end=2026-11-30"


def _now():
    import time_machine

    return time_machine.travel(datetime(2026, 11, 20, 12, tzinfo=UTC), tick=True)


@pytest.mark.parametrize("path", EXPORTS)
def test_a_failed_export_breaks_the_chunked_download(
    chunked_live_server, user_with_rows, broken_at_row, path
):
    with _now():
        session = _session(chunked_live_server, user_with_rows)
        response = session.get(f"{chunked_live_server}{path}{WINDOW}", stream=True, timeout=10)
        assert response.status_code == 200  # the headers went out before the failure
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            b"".join(response.iter_content(chunk_size=None))


@pytest.mark.parametrize("path", EXPORTS)
def test_a_whole_export_ends_cleanly_on_the_chunked_server(
    chunked_live_server, user_with_rows, path
):
    with _now():
        session = _session(chunked_live_server, user_with_rows)
        response = session.get(f"{chunked_live_server}{path}{WINDOW}", timeout=10)
        assert response.status_code == 200
        assert response.headers["Transfer-Encoding"] == "chunked"
        assert f"row {ROWS - 1}".encode() in response.content and b"ERROR" not in response.content


def test_a_failed_export_says_so_where_the_server_cannot(
    live_server, user_with_rows, broken_at_row
):
    # The development server ends the body by closing the connection: the file itself says
    # it is incomplete, and the JSON array is left open so no parser takes it for whole.
    with _now():
        session = _session(live_server.url, user_with_rows)
        csv_text = session.get(f"{live_server.url}/api/export?format=csv{WINDOW}", timeout=10).text
        lines = csv_text.strip().splitlines()
        assert len(lines) == 1 + (FAIL_AT - 1) + 1  # header, the rows before, the error
        assert lines[-1] == (
            f"ERROR: the export failed after {FAIL_AT - 1} rows; this file is incomplete."
        )
        json_text = session.get(f"{live_server.url}/api/export?format=json{WINDOW}", timeout=10)
        with pytest.raises(ValueError):
            json_text.json()
        assert json_text.text.rstrip().endswith('this file is incomplete."')
