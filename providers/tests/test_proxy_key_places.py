"""Where else a client may present its ingest key: the provider's own header and a query
parameter (ProviderAdapter.proxy_key_headers / proxy_key_query_param). The query parameter
never goes upstream; every other parameter does, verbatim.

Exercised on a registered provider given the attributes for the test, so the generic hook is
tested apart from any provider that uses it.
"""

from __future__ import annotations

import pytest
import requests

from providers.proxy import upstream as upstream_module
from providers.proxy.upstream import forwarded_query
from providers.registry import get_adapter_class
from providers.tests.test_proxy import (  # noqa: F401 - fixtures are used by name
    OPENAI_CHAT,
    PROVIDER_KEY,
    _fresh_price_cache,
    _now,
    assert_no_ingest_key_forwarded,
    connect,
    finished_fixture,
    records_after,
    upstream_fixture,
)

KIND = "openai"
PATH = "/v1/chat/completions"


@pytest.fixture
def key_places(monkeypatch):
    adapter = get_adapter_class(KIND)
    monkeypatch.setattr(adapter, "proxy_key_headers", ("x-vendor-key",))
    monkeypatch.setattr(adapter, "proxy_key_query_param", "key")
    # Even a header some provider passes on is never forwarded once it may carry a key.
    monkeypatch.setattr(adapter, "proxy_forwarded_headers", ("x-vendor-key", "x-vendor-beta"))
    upstream_module.forwarded_headers.cache_clear()
    yield
    upstream_module.forwarded_headers.cache_clear()


def call(live_server, query: str = "", **headers: str) -> requests.Response:
    return requests.post(
        f"{live_server.url}/proxy/{KIND}{PATH}{query}",
        json={"model": "gpt-4o-mini", "messages": []},
        headers=headers,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("query", "forwarded"),
    [
        ("", ""),
        ("alt=sse", "alt=sse"),
        ("key=cti_x", ""),
        ("alt=sse&key=cti_x&b=%20c", "alt=sse&b=%20c"),
        ("key=cti_x&key=cti_y&alt=sse", "alt=sse"),
        ("%6Bey=cti_x&alt=sse", "alt=sse"),  # the name percent-encoded
        ("alt=sse;key=cti_x&b=1", "b=1"),  # a provider splitting on ";" would see it
        ("keys=1&monkey=2&key", "keys=1&monkey=2"),
    ],
)
def test_it_takes_the_key_parameter_out_of_the_query(query, forwarded):
    assert forwarded_query(query, without="key") == forwarded


def test_it_forwards_the_query_verbatim_when_the_provider_names_no_parameter():
    assert forwarded_query("key=abc&alt=sse", without="") == "key=abc&alt=sse"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_it_accepts_the_key_in_the_providers_own_header(key_places, live_server, upstream):
    account, raw = connect(KIND)
    upstream.expect_request(PATH).respond_with_json(OPENAI_CHAT)

    reply = call(live_server, **{"x-vendor-key": raw, "x-vendor-beta": "on"})

    assert reply.status_code == 200, reply.text
    (request, _) = upstream.log[0]
    assert request.headers["Authorization"] == f"Bearer {PROVIDER_KEY}"
    assert request.headers["x-vendor-beta"] == "on"  # the other one is still passed on
    assert "x-vendor-key" not in request.headers
    assert_no_ingest_key_forwarded(request, raw)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_it_accepts_the_key_in_the_query_and_never_forwards_it(
    key_places, live_server, upstream, finished
):
    account, raw = connect(KIND)
    upstream.expect_request(PATH).respond_with_json(OPENAI_CHAT)

    reply = call(live_server, f"?alt=sse&key={raw}")

    assert reply.status_code == 200, reply.text
    (request, _) = upstream.log[0]
    assert request.query_string == b"alt=sse"
    assert_no_ingest_key_forwarded(request, raw)
    assert len(records_after(finished, account)) == 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_it_drops_the_query_key_even_when_a_header_authenticated(key_places, live_server, upstream):
    account, raw = connect(KIND)
    upstream.expect_request(PATH).respond_with_json(OPENAI_CHAT)

    reply = call(live_server, "?key=something-else&alt=sse", Authorization=f"Bearer {raw}")

    assert reply.status_code == 200, reply.text
    assert upstream.log[0][0].query_string == b"alt=sse"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_it_refuses_a_wrong_key_in_the_query(key_places, live_server, upstream):
    connect(KIND)

    reply = call(live_server, "?key=cti_not-a-key")

    assert reply.status_code == 401
    assert upstream.log == []


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_provider_naming_no_other_places_takes_neither(live_server, upstream):
    account, raw = connect(KIND)

    by_query = call(live_server, f"?key={raw}")
    by_header = call(live_server, **{"x-vendor-key": raw})

    assert (by_query.status_code, by_header.status_code) == (401, 401)
    assert upstream.log == []
