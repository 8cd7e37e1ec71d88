"""gunicorn's logger: no access-log lines for accepted ingestion (and OTLP) POSTs, and the
default line written without gunicorn's general machinery.

Ingestion clients post hundreds of batches a second; a line each buried everything else in
the log and cost the workers ~6 % of their CPU (bench/bench_ingest.py). What they send is
recorded in the data itself. The same for answered probes and scrapes (/healthz, /readyz,
/metrics), every few seconds each. Refused or failed ones (4xx, 5xx: a 503 from /readyz) and
every other request are logged as usual.

For every other request gunicorn builds a dict of ~100 atoms (each request and response
header, each environ variable), escapes them all and formats the line from it: ~0.2 ms of a
proxied call's 3 ms budget (bench/bench_proxy.py). The default format uses nine of them, so
that line is built from those nine directly; it is the same line, character for character
(costtracker/tests/test_gunicorn_logging.py), handed to the access logger as a finished
message. A custom `access_log_format` takes gunicorn's own path (and its handlers get the
format and its fields, as before).

Either way a query string is logged with every token-shaped string in it redacted: some
clients send their ingest key as a query parameter (Google's `?key=`), and a key must never
reach a log.
"""

from __future__ import annotations

from gunicorn.config import AccessLogFormat
from gunicorn.glogging import Logger

from providers.redaction import redact

INGEST_PATH = "/api/usage/events"
OTLP_PATH = "/v1/traces"  # OpenTelemetry exporters post a batch every few seconds each
QUIET_PATHS = frozenset({INGEST_PATH, OTLP_PATH, "/healthz", "/readyz", "/metrics"})
DEFAULT_FORMAT = AccessLogFormat.default


def _escaped(value: str) -> str:
    return value.replace('"', '\\"')  # as gunicorn's SafeAtoms


def _without_secrets(environ: dict) -> dict:
    """A copy of ``environ`` whose query string (also inside RAW_URI) has its keys redacted."""
    path, sep, query = environ.get("RAW_URI", "").partition("?")
    return {
        **environ,
        "QUERY_STRING": redact(environ["QUERY_STRING"]),
        "RAW_URI": path + sep + redact(query),
    }


class AccessLogger(Logger):
    def access(self, resp, req, environ, request_time):
        status = getattr(resp, "status_code", None)
        if environ.get("PATH_INFO") in QUIET_PATHS and isinstance(status, int) and status < 400:
            return
        if not self.access_log_enabled:
            return
        if environ.get("QUERY_STRING"):
            environ = _without_secrets(environ)
        if self.cfg.access_log_format != DEFAULT_FORMAT:
            super().access(resp, req, environ, request_time)
            return
        try:
            self.access_log.info(self._default_line(resp, environ))
        except Exception:
            super().access(resp, req, environ, request_time)

    def _default_line(self, resp, environ) -> str:
        """'%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"', as atoms() fills it."""
        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
        sent = getattr(resp, "sent", None)
        request_line = (
            f"{environ['REQUEST_METHOD']} {environ['RAW_URI']} {environ['SERVER_PROTOCOL']}"
        )
        parts = (
            _escaped(environ.get("REMOTE_ADDR", "-")),
            "-",
            _escaped(self._get_user(environ) or "-"),
            self.now(),
            f'"{_escaped(request_line)}"',
            _escaped(status) if isinstance(status, str) else str(status),
            sent is not None and str(sent) or "-",
            f'"{_escaped(environ.get("HTTP_REFERER", "-"))}"',
            f'"{_escaped(environ.get("HTTP_USER_AGENT", "-"))}"',
        )
        return " ".join(parts)
