"""The proxy, whatever the bodies: every forwarded call answers as the provider did and leaves
exactly one record, for any client body (nested without end, not JSON, huge, odd types) and
any provider answer (absurd counts, odd ids)."""

from __future__ import annotations

import json

import pytest
import requests

from providers.tests.test_proxy import (  # noqa: F401 - fixtures
    _fresh_price_cache,
    _now,
    connect,
    finished_fixture,
    gpt_4o_mini_price,
    received,
    records_after,
    upstream_fixture,
)
from providers.tests.test_proxy_streaming import read_to_end, sse, streamed
from usage.models import RecordStatus

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

DEPTH = 100_000
# The provider's answer names no model, so the record takes it from the client's body: the
# lookup that used to raise RecursionError on a deeply nested body.
NO_MODEL_ANSWER = {"id": "chatcmpl-odd", "usage": {"prompt_tokens": 3, "completion_tokens": 2}}

CLIENT_BODIES = {
    "nested lists": b"[" * DEPTH + b"]" * DEPTH,
    "nested objects": b'{"a":' * DEPTH + b"1" + b"}" * DEPTH,
    "nested, asking to stream": b'{"stream": true, "messages": '
    + b"[" * DEPTH
    + b"]" * DEPTH
    + b"}",
    "nested, unterminated": b'{"model": "gpt-4o-mini", "x": ' + b"[" * DEPTH,
    "not JSON": b"model=gpt-4o-mini&stream=true",
    "not UTF-8": b'{"model": "\xff\xfe", "stream": true}',
    "model and stream of the wrong type": json.dumps(
        {"model": {"name": "gpt-4o-mini"}, "stream": "yes", "messages": "hi"}
    ).encode(),
    "stream options of the wrong type": json.dumps(
        {"model": 42, "stream": True, "messages": [], "stream_options": [1, 2]}
    ).encode(),
    "a JSON string": b'"gpt-4o-mini"',
    "huge": json.dumps({"model": "gpt-4o-mini", "pad": "x" * 3_000_000}).encode(),
    "empty": b"",
}


def post(live_server, raw: str, body: bytes, path: str = "openai/v1/chat/completions"):
    return requests.post(
        f"{live_server.url}/proxy/{path}",
        headers={"Authorization": f"Bearer {raw}", "Content-Type": "application/json"},
        data=body,
        timeout=30,
    )


@pytest.mark.parametrize("body", CLIENT_BODIES.values(), ids=CLIENT_BODIES.keys())
def test_it_forwards_any_client_body_and_records_the_call_once(
    live_server, upstream, finished, body
):
    account, raw = connect("openai")
    upstream.expect_request("/v1/chat/completions").respond_with_json(NO_MODEL_ANSWER)

    response = post(live_server, raw, body)

    assert response.status_code == 200, response.content[:300]
    assert response.json() == NO_MODEL_ANSWER  # the provider's answer, unchanged
    (forwarded,) = received(upstream, "/v1/chat/completions")
    if b"stream_options" in body:  # a streamed chat call: usage asked for, options replaced
        assert json.loads(forwarded.get_data())["stream_options"] == {"include_usage": True}
    else:
        assert forwarded.get_data() == body  # a body we cannot read goes on as it came
    (record,) = records_after(finished, account)
    assert (record.input_tokens, record.output_tokens) == (3, 2)
    assert record.status == RecordStatus.OK


def test_it_records_a_refused_call_with_a_nested_body_once(live_server, upstream, finished):
    # The provider refuses the body (400): recorded as failed; the model lookup in the client's
    # body (the answer names none) must not lose the record.
    account, raw = connect("openai")
    error = {"error": {"message": "bad body", "type": "invalid_request_error"}}
    upstream.expect_request("/v1/chat/completions").respond_with_json(error, status=400)

    response = post(live_server, raw, CLIENT_BODIES["nested objects"])

    assert response.status_code == 400
    assert response.json() == error
    (record,) = records_after(finished, account)
    assert (record.status, record.cost) == (RecordStatus.FAILED, 0)


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": 10**30, "completion_tokens": 2},
        {"prompt_tokens": 3, "completion_tokens": 99999999999999999999999},
        {"prompt_tokens": 3, "completion_tokens": 2, "num_search_queries": 10**12},
    ],
)
def test_it_records_an_absurd_provider_count_once_as_unpriced(
    live_server, upstream, finished, usage
):
    # Chosen behaviour (README "Input bounds"): a count outside the bounds is not stored; the
    # call is recorded incomplete and unpriced, the reason kept in raw.
    account, raw = connect("openai")
    gpt_4o_mini_price()
    answer = {"id": "chatcmpl-absurd", "model": "gpt-4o-mini", "usage": usage}
    upstream.expect_request("/v1/chat/completions").respond_with_json(answer)

    response = post(live_server, raw, json.dumps({"model": "gpt-4o-mini"}).encode())

    assert response.status_code == 200
    assert response.json() == answer
    (record,) = records_after(finished, account)
    assert record.status == RecordStatus.INCOMPLETE
    assert record.cost is None  # unknown, never $0 and never the absurd figure
    assert (record.input_tokens, record.output_tokens, record.search_queries) == (0, 0, 0)
    assert record.model == "gpt-4o-mini"
    assert "must be from 0 to" in record.raw["usage"]["out_of_bounds"]


def test_it_records_a_call_whose_answer_has_an_unstorable_id_and_model(
    live_server, upstream, finished
):
    account, raw = connect("openai")
    answer = {
        "id": "x" * 5000,  # longer than the column
        "model": "gpt\u0000-4o\ud800-mini",  # NUL and a lone surrogate: PostgreSQL refuses both
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    }
    upstream.expect_request("/v1/chat/completions").respond_with_data(
        json.dumps(answer), content_type="application/json"
    )

    response = post(live_server, raw, b"{}")

    assert response.status_code == 200
    (record,) = records_after(finished, account)
    assert record.model == "gpt-4o-mini"
    assert len(record.request_id) <= 200
    assert (record.input_tokens, record.output_tokens) == (3, 2)


def test_it_streams_past_a_nested_event_and_records_the_call_once(live_server, upstream, finished):
    account, raw = connect("openai")
    nested = b"data: " + b"[" * DEPTH + b"]" * DEPTH + b"\n\n"
    final = {
        "id": "chatcmpl-stream",
        "object": "chat.completion.chunk",
        "model": "gpt-4o-mini",
        "choices": [],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    }
    chunks = [nested, *sse(final), b"data: [DONE]\n\n"]
    upstream.expect_request("/v1/chat/completions").respond_with_handler(streamed(chunks))

    response = requests.post(
        f"{live_server.url}/proxy/openai/v1/chat/completions",
        headers={"Authorization": f"Bearer {raw}"},
        json={"model": "gpt-4o-mini", "messages": [], "stream": True},
        stream=True,
        timeout=30,
    )
    assert response.status_code == 200
    assert read_to_end(response) == b"".join(chunks)  # passed on whole

    (record,) = records_after(finished, account)
    assert record.status == RecordStatus.OK
    assert (record.input_tokens, record.output_tokens) == (3, 2)
