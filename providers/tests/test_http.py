from __future__ import annotations

import socket
import time
from decimal import Decimal

import pytest
import requests
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from providers import http
from providers.http import ProviderError, get_json, get_response, paginate_cursor


@pytest.fixture
def session() -> requests.Session:
    with requests.Session() as s:
        yield s


def _get(session: requests.Session, url: str, sleeps: list[float], **kwargs):
    return get_json(session, url, headers={"X-Test": "1"}, sleep=sleeps.append, **kwargs)


def test_it_returns_the_object_with_decimal_numbers(httpserver, session):
    httpserver.expect_request("/ok").respond_with_data(
        '{"value": 0.0196710, "count": 3}', content_type="application/json"
    )
    body = _get(session, httpserver.url_for("/ok"), [])
    assert body == {"value": Decimal("0.0196710"), "count": 3}
    assert isinstance(body["value"], Decimal)  # money is never a float
    assert isinstance(body["count"], int)


def test_it_sends_headers_and_bracket_array_params(httpserver, session):
    httpserver.expect_request("/q").respond_with_json({})
    get_json(
        session,
        httpserver.url_for("/q"),
        headers={"Authorization": "Bearer k"},
        params={"group_by[]": ["model", "project_id"], "limit": 31},
    )
    request, _ = httpserver.log[0]
    assert request.headers["Authorization"] == "Bearer k"
    assert request.args.getlist("group_by[]") == ["model", "project_id"]
    assert request.args["limit"] == "31"


def test_it_always_passes_a_timeout():
    seen = {}

    class Recorder(requests.Session):
        def get(self, url, **kwargs):
            seen.update(kwargs)
            raise requests.ConnectionError("stop here")

    with pytest.raises(ProviderError):
        get_json(Recorder(), "http://example.invalid/", sleep=lambda s: None, max_tries=1)
    assert seen["timeout"] == (5, 30)


def test_it_rejects_401_permanently_without_retrying(httpserver, session):
    httpserver.expect_request("/x").respond_with_json({"error": {"message": "bad"}}, status=401)
    sleeps: list[float] = []
    with pytest.raises(ProviderError) as info:
        _get(session, httpserver.url_for("/x"), sleeps)
    assert info.value.message == "key rejected (401)"
    assert info.value.permanent is True
    assert info.value.status == 401
    assert len(httpserver.log) == 1
    assert sleeps == []


def test_it_reports_403_with_the_provider_message(httpserver, session):
    httpserver.expect_request("/x").respond_with_json(
        {"error": {"message": "Missing scopes: api.usage.read."}}, status=403
    )
    with pytest.raises(ProviderError) as info:
        _get(session, httpserver.url_for("/x"), [])
    assert info.value.message == "key lacks admin permission (403): Missing scopes: api.usage.read."
    assert info.value.permanent is True
    assert len(httpserver.log) == 1


def test_it_reports_404_permanently(httpserver, session):
    httpserver.expect_request("/x").respond_with_json({"message": "Not Found"}, status=404)
    with pytest.raises(ProviderError) as info:
        _get(session, httpserver.url_for("/x"), [])
    assert (info.value.message, info.value.permanent, info.value.status) == (
        "not found (404)",
        True,
        404,
    )


def test_it_treats_other_4xx_as_permanent(httpserver, session):
    httpserver.expect_request("/x").respond_with_json({"message": "payment required"}, status=422)
    with pytest.raises(ProviderError) as info:
        _get(session, httpserver.url_for("/x"), [])
    assert info.value.message == "request rejected (422): payment required"
    assert info.value.permanent is True
    assert len(httpserver.log) == 1


def test_it_honours_retry_after_on_429(httpserver, session):
    httpserver.expect_oneshot_request("/x").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "7"}
    )
    httpserver.expect_request("/x").respond_with_json({"ok": True})
    sleeps: list[float] = []
    assert _get(session, httpserver.url_for("/x"), sleeps) == {"ok": True}
    assert sleeps == [7]
    assert len(httpserver.log) == 2


def test_it_caps_a_long_retry_after_at_60_seconds(httpserver, session):
    httpserver.expect_oneshot_request("/x").respond_with_data(
        "", status=429, headers={"Retry-After": "3600"}
    )
    httpserver.expect_request("/x").respond_with_json({"ok": True})
    sleeps: list[float] = []
    _get(session, httpserver.url_for("/x"), sleeps)
    assert sleeps == [60]


def test_it_backs_off_exponentially_on_429_without_retry_after(httpserver, session):
    httpserver.expect_request("/x").respond_with_data("", status=429)
    sleeps: list[float] = []
    with pytest.raises(ProviderError) as info:
        _get(session, httpserver.url_for("/x"), sleeps)
    assert info.value.message == "rate limited (429)"
    assert info.value.permanent is False
    assert len(httpserver.log) == 4  # max_tries
    # 1, 2, 4 seconds, each plus up to 1 second of jitter; no sleep after the last try.
    assert len(sleeps) == 3
    for wait, base in zip(sleeps, (1, 2, 4), strict=True):
        assert base <= wait <= base + 1


def test_it_treats_github_403_with_exhausted_rate_limit_as_temporary(httpserver, session):
    httpserver.expect_oneshot_request("/x").respond_with_json(
        {"message": "API rate limit exceeded"},
        status=403,
        headers={"x-ratelimit-remaining": "0", "Retry-After": "2"},
    )
    httpserver.expect_request("/x").respond_with_json({"ok": True})
    sleeps: list[float] = []
    assert _get(session, httpserver.url_for("/x"), sleeps) == {"ok": True}
    assert sleeps == [2]


def test_it_retries_a_500_then_succeeds(httpserver, session):
    httpserver.expect_oneshot_request("/x").respond_with_data("boom", status=500)
    httpserver.expect_request("/x").respond_with_json({"ok": True})
    sleeps: list[float] = []
    assert _get(session, httpserver.url_for("/x"), sleeps) == {"ok": True}
    assert len(httpserver.log) == 2
    assert len(sleeps) == 1 and 1 <= sleeps[0] <= 2


def test_it_gives_up_on_500_forever_after_bounded_tries(httpserver, session):
    httpserver.expect_request("/x").respond_with_json({"error": {"message": "overloaded"}}, 503)
    sleeps: list[float] = []
    with pytest.raises(ProviderError) as info:
        _get(session, httpserver.url_for("/x"), sleeps, max_tries=3)
    assert info.value.message == "provider error (503): overloaded"
    assert info.value.permanent is False
    assert info.value.status == 503
    assert len(httpserver.log) == 3
    assert len(sleeps) == 2


def test_it_retries_timeouts_then_fails_temporarily(session, monkeypatch):
    monkeypatch.setattr(http, "READ_TIMEOUT", 0.1)

    def slow(request: Request) -> Response:
        time.sleep(0.3)
        return Response("{}", content_type="application/json")

    # A private threaded server: slow handlers finishing late must not land in the shared
    # server's request log of a later test.
    server = HTTPServer(threaded=True)
    server.expect_request("/slow").respond_with_handler(slow)
    server.start()
    try:
        sleeps: list[float] = []
        with pytest.raises(ProviderError) as info:
            _get(session, server.url_for("/slow"), sleeps, max_tries=2)
        assert info.value.message == "Timed out waiting for localhost to answer"
        assert info.value.error_class == "timeout"
        assert "Read timed out" in info.value.detail
        assert info.value.permanent is False
        assert len(sleeps) == 1  # two tries, one backoff between them
        time.sleep(0.4)  # let both handlers finish so the server can stop cleanly
        assert len(server.log) == 2
    finally:
        server.clear()
        server.stop()


def test_it_reports_connection_refused_as_unreachable(session):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # The socket is closed: nothing listens on the port, so the connection is refused.
    sleeps: list[float] = []
    with pytest.raises(ProviderError) as info:
        _get(session, f"http://127.0.0.1:{port}/x", sleeps)
    # One human line; the raw urllib3 text only in the details.
    assert info.value.message == "Couldn't reach 127.0.0.1: connection refused"
    assert info.value.error_class == "network"
    assert "Max retries exceeded" in info.value.detail
    assert info.value.permanent is False
    assert len(sleeps) == 3  # 4 tries


@pytest.mark.parametrize(
    ("exc", "cause"),
    [
        (
            requests.ConnectionError("NameResolutionError: Failed to resolve 'x'"),
            "DNS lookup failed",
        ),
        (requests.exceptions.SSLError("certificate verify failed"), "TLS/certificate error"),
        (
            requests.ConnectionError("Connection aborted. RemoteDisconnected"),
            "the connection was dropped",
        ),
        (requests.exceptions.ProxyError("Unable to connect to proxy"), "the HTTP proxy failed"),
        (requests.ConnectionError("something new"), ""),
    ],
)
def test_a_sync_error_and_the_page_name_the_same_cause(exc, cause):
    # One wording (http.network_cause) for the sync's message and the pages' error display,
    # which reads the raw text a sync or an older row stored.
    from usage.templatetags.errors import error_summary

    error = http._network_error(exc, "https://api.example.com/v1/x")

    assert error.message == f"Couldn't reach api.example.com: {cause or 'connection failed'}"
    stored = f"{type(exc).__name__}: {exc}"
    assert http.network_cause(stored) == cause
    if cause:
        assert error_summary(stored) == f"Couldn't reach the provider: {cause}"


def test_it_reports_malformed_json_with_an_excerpt(httpserver, session):
    html = "<html>" + "x" * 2000 + "</html>"
    httpserver.expect_request("/x").respond_with_data(html, content_type="text/html")
    sleeps: list[float] = []
    with pytest.raises(ProviderError) as info:
        _get(session, httpserver.url_for("/x"), sleeps)
    assert "malformed response" in info.value.message
    assert info.value.body_excerpt.startswith("<html>xxx")
    assert len(info.value.body_excerpt) == 500
    assert len(httpserver.log) == 1  # garbage is not retried
    assert sleeps == []


def test_it_rejects_a_non_object_body(httpserver, session):
    httpserver.expect_request("/x").respond_with_data("[1, 2, 3]", content_type="application/json")
    with pytest.raises(ProviderError) as info:
        _get(session, httpserver.url_for("/x"), [])
    assert info.value.message == "malformed response: expected a JSON object"
    assert info.value.body_excerpt == "[1, 2, 3]"


def test_it_exposes_response_headers(httpserver, session):
    httpserver.expect_request("/x").respond_with_json({}, headers={"Link": '<u>; rel="next"'})
    response = get_response(session, httpserver.url_for("/x"))
    assert response.headers["Link"] == '<u>; rel="next"'


def test_it_follows_cursor_pages_until_has_more_is_false():
    pages = {
        None: {"data": [1], "has_more": True, "next_page": "a"},
        "a": {"data": [2], "has_more": True, "next_page": "b"},
        "b": {"data": [3], "has_more": False, "next_page": None},
    }
    asked: list[str | None] = []

    def fetch(cursor: str | None) -> dict:
        asked.append(cursor)
        return pages[cursor]

    assert [p["data"] for p in paginate_cursor(fetch)] == [[1], [2], [3]]
    assert asked == [None, "a", "b"]


def test_it_stops_at_the_page_limit():
    counter = iter(range(10_000))

    def endless(cursor: str | None) -> dict:
        return {"has_more": True, "next_page": f"p{next(counter)}"}

    with pytest.raises(ProviderError) as info:
        list(paginate_cursor(endless, max_pages=5))
    assert info.value.message == "pagination stopped after 5 pages (page limit)"


def test_it_detects_a_repeated_cursor():
    def stuck(cursor: str | None) -> dict:
        return {"has_more": True, "next_page": "same"}

    with pytest.raises(ProviderError, match="pagination loop"):
        list(paginate_cursor(stuck))


def test_it_rejects_has_more_without_a_cursor():
    with pytest.raises(ProviderError, match="malformed response"):
        list(paginate_cursor(lambda cursor: {"has_more": True, "next_page": None}))
