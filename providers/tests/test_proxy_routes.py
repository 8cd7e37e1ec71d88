"""Route keys with a `{model}` segment: APIs that name the model in the URL path.

Exercised on a registered provider whose table is swapped for the test's, so the generic
matching is tested apart from any provider that uses it.
"""

from __future__ import annotations

import pytest
import requests

from providers.proxy import routes as routes_module
from providers.proxy.routes import Route, RouteMatch, route_for
from providers.registry import get_adapter_class
from providers.tests.test_proxy import (  # noqa: F401 - fixtures are used by name
    _fresh_price_cache,
    _now,
    connect,
    finished_fixture,
    records_after,
    upstream_fixture,
)
from usage.models import RecordStatus

KIND = "openai"
TABLE = {
    "v1/models": Route("GET", "v1/models", records=False),
    "v9/models/{model}": Route("GET", "v9/models/{model}", records=False),
    "v9/models/{model}:generate": Route("POST", "up/models/{model}:generate"),
    "v9/models/{model}:stream": Route("POST", "up/models/{model}:stream"),
}


@pytest.fixture
def patterned(monkeypatch):
    monkeypatch.setattr(get_adapter_class(KIND), "proxy_routes", TABLE)
    routes_module._model_patterns.cache_clear()
    yield
    routes_module._model_patterns.cache_clear()


def test_it_finds_an_exact_path_first(patterned):
    assert route_for(KIND, "v1/models") == RouteMatch(TABLE["v1/models"], "v1/models")


def test_it_fills_the_model_into_the_upstream_path(patterned):
    match = route_for(KIND, "v9/models/gemma-3.1_b@2:generate")

    assert match == RouteMatch(
        TABLE["v9/models/{model}:generate"],
        "up/models/gemma-3.1_b@2:generate",
        "gemma-3.1_b@2",
    )


def test_it_prefers_the_pattern_with_a_suffix_over_one_that_would_swallow_it(patterned):
    assert route_for(KIND, "v9/models/m1:stream").route is TABLE["v9/models/{model}:stream"]
    assert route_for(KIND, "v9/models/m1").route is TABLE["v9/models/{model}"]


@pytest.mark.parametrize(
    "path",
    [
        "v9/models/:generate",  # no model
        "v9/models/../secrets:generate",  # a second segment
        "v9/models/..:generate",
        "v9/models/a/b:generate",
        "v9/models/m1:other",  # an unlisted method (":" never belongs to a model name)
        "v9/models/m1:generate/x",
        "v9/models/-m:generate",
        "v9/models/" + "m" * 201 + ":generate",
        "v1/models/extra",
    ],
)
def test_it_refuses_what_the_patterns_do_not_name(patterned, path):
    assert route_for(KIND, path) is None


def test_it_has_no_route_for_an_unknown_provider():
    assert route_for("no-such-provider", "v1/models") is None


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_it_forwards_to_the_filled_in_upstream_path(patterned, live_server, upstream):
    account, raw = connect(KIND)
    upstream.expect_request("/up/models/m1:generate", method="POST").respond_with_json(
        {"usage": {"prompt_tokens": 3, "completion_tokens": 2}}
    )

    reply = requests.post(
        f"{live_server.url}/proxy/{KIND}/v9/models/m1:generate",
        json={"contents": []},
        headers={"Authorization": f"Bearer {raw}"},
        timeout=30,
    )

    assert reply.status_code == 200, reply.text
    assert [request.path for request, _ in upstream.log] == ["/up/models/m1:generate"]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_failed_call_is_recorded_under_the_model_its_path_named(
    patterned, live_server, upstream, finished
):
    # The body names no model, and a refusal carries none: the path is all there is.
    account, raw = connect(KIND)
    upstream.expect_request("/up/models/m1:generate").respond_with_json(
        {"error": {"code": 400, "message": "bad request"}}, status=400
    )

    reply = requests.post(
        f"{live_server.url}/proxy/{KIND}/v9/models/m1:generate",
        json={"contents": []},
        headers={"Authorization": f"Bearer {raw}"},
        timeout=30,
    )

    assert reply.status_code == 400
    (record,) = records_after(finished, account)
    assert (record.model, record.status) == ("m1", RecordStatus.FAILED)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_it_answers_404_for_a_path_no_pattern_names(patterned, live_server, upstream):
    account, raw = connect(KIND)

    reply = requests.post(
        f"{live_server.url}/proxy/{KIND}/v9/models/a/b:generate",
        json={},
        headers={"Authorization": f"Bearer {raw}"},
        timeout=30,
    )

    assert reply.status_code == 404
    assert upstream.log == []
