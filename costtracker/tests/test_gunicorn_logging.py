"""The access log: the default line, built directly, is gunicorn's own line."""

from __future__ import annotations

import io
import logging
from datetime import timedelta
from types import SimpleNamespace

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger, SafeAtoms

from costtracker.gunicorn_logging import AccessLogger

NOW = "[22/Nov/2026:05:40:00 +0000]"


def _logger(access_log_format: str | None = None) -> tuple[AccessLogger, io.StringIO]:
    cfg = Config()
    cfg.set("accesslog", "-")
    if access_log_format:
        cfg.set("access_log_format", access_log_format)
    logger = AccessLogger(cfg)
    logger.now = lambda: NOW
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.access_log.handlers = [handler]  # only this test's line, however often it runs
    return logger, out


@pytest.fixture(autouse=True)
def _gunicorns_access_logger_restored():
    log = logging.getLogger("gunicorn.access")
    handlers, propagate = list(log.handlers), log.propagate
    yield
    log.handlers, log.propagate = handlers, propagate


def _request(**environ):
    base = {
        "REQUEST_METHOD": "POST",
        "RAW_URI": "/proxy/openai/v1/chat/completions?x=%20y",
        "PATH_INFO": "/proxy/openai/v1/chat/completions",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "10.0.0.7",
        "HTTP_USER_AGENT": 'OpenAI/Python 1.0 "quoted"',
        "HTTP_REFERER": "https://example.test/a%d",
        "HTTP_AUTHORIZATION": "Basic YWxpY2U6c2VjcmV0",  # alice:secret: the user is logged
    }
    base.update(environ)
    resp = SimpleNamespace(
        status="200 OK", status_code=200, sent=1234, headers=[("Content-Type", "text/plain")]
    )
    req = SimpleNamespace(headers=[("HOST", "tracker.test")])
    return resp, req, base


def _gunicorns_line(logger: AccessLogger, resp, req, environ) -> str:
    atoms = SafeAtoms(logger.atoms(resp, req, environ, timedelta(milliseconds=3)))
    return logger.cfg.access_log_format % atoms


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"HTTP_AUTHORIZATION": "Bearer cti_secret"},  # not Basic: no user, and no key shown
        {"HTTP_USER_AGENT": None, "HTTP_REFERER": None, "REMOTE_ADDR": None},
        {"RAW_URI": '/a"b', "REQUEST_METHOD": "GET"},
    ],
)
def test_the_default_line_is_gunicorns_own(changes, monkeypatch):
    logger, out = _logger()
    resp, req, environ = _request(**changes)
    environ = {k: v for k, v in environ.items() if v is not None}

    def not_taken(*args):
        raise AssertionError("the default line fell back to gunicorn's own path")

    monkeypatch.setattr(Logger, "access", not_taken)
    logger.access(resp, req, environ, timedelta(milliseconds=3))
    monkeypatch.undo()
    assert out.getvalue() == _gunicorns_line(logger, resp, req, environ) + "\n"
    assert "cti_secret" not in out.getvalue()


def test_a_response_without_a_body_count_and_an_int_status():
    logger, out = _logger()
    resp, req, environ = _request()
    resp.sent, resp.status = None, 502
    logger.access(resp, req, environ, timedelta(0))
    assert out.getvalue() == _gunicorns_line(logger, resp, req, environ) + "\n"
    assert ' 502 - "' in out.getvalue()


def test_a_custom_format_takes_gunicorns_path():
    logger, out = _logger("%(m)s %(U)s %(s)s %({content-type}o)s")
    resp, req, environ = _request()
    logger.access(resp, req, environ, timedelta(0))
    assert out.getvalue() == "POST /proxy/openai/v1/chat/completions 200 text/plain\n"


@pytest.mark.parametrize("path", ["/api/usage/events", "/v1/traces"])
def test_accepted_ingestion_posts_are_not_logged_but_refused_ones_are(path):
    logger, out = _logger()
    resp, req, environ = _request(PATH_INFO=path, RAW_URI=path)
    logger.access(resp, req, environ, timedelta(0))
    assert out.getvalue() == ""
    resp.status, resp.status_code = "401 Unauthorized", 401
    logger.access(resp, req, environ, timedelta(0))
    assert f'"POST {path} HTTP/1.1" 401 1234' in out.getvalue()


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_answered_probes_and_scrapes_are_not_logged_but_failed_ones_are(path):
    logger, out = _logger()
    resp, req, environ = _request(PATH_INFO=path, RAW_URI=path)
    logger.access(resp, req, environ, timedelta(0))
    assert out.getvalue() == ""
    resp.status, resp.status_code = "503 Service Unavailable", 503
    logger.access(resp, req, environ, timedelta(0))
    assert f'"POST {path} HTTP/1.1" 503 1234' in out.getvalue()


@pytest.mark.parametrize("access_log_format", [None, '"%(r)s" %(q)s %(U)s'])
def test_a_key_in_the_query_string_never_reaches_the_log(access_log_format):
    # Google's SDK users may send the ingest key as ?key=; the default line and a custom
    # format (gunicorn's own path) both log the query with the key redacted.
    logger, out = _logger(access_log_format)
    raw = "cti_" + "A1b2" * 11
    resp, req, environ = _request(
        RAW_URI=f"/proxy/gemini/v1beta/models/m:generateContent?alt=sse&key={raw}",
        PATH_INFO="/proxy/gemini/v1beta/models/m:generateContent",
        QUERY_STRING=f"alt=sse&key={raw}",
    )

    logger.access(resp, req, environ, timedelta(milliseconds=3))

    line = out.getvalue()
    assert "cti_" not in line
    assert "alt=sse&key=[redacted]" in line
