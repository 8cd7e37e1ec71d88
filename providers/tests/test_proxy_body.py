"""A non-streamed answer is sent around its record: all but the last byte, the record, the
last byte. Under gunicorn the first part leaves corked with the headers, as one segment.
And the record's commit waits for the disk only when the operator asks for it."""

from __future__ import annotations

import json
import socket
from types import SimpleNamespace

import pytest
from django.utils import timezone

from providers.proxy import recording
from providers.proxy.recording import proxy_call_record
from providers.proxy.views import _RecordedBody
from providers.tests.factories import AccountFactory, provider
from usage.extraction import RequestUsage
from usage.models import RecordStatus, UsageRecord

BODY = json.dumps(
    {"id": "chatcmpl-1", "model": "gpt-4o-mini", "usage": {"prompt_tokens": 7}}
).encode()

needs_cork = pytest.mark.skipif(not hasattr(socket, "TCP_CORK"), reason="Linux's TCP_CORK")


@pytest.fixture
def tcp():
    """A connected TCP socket on loopback (the server's side of a client connection)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        yield accepted
        accepted.close()
        client.close()


def _call(log: list):
    def record(usage, status, raw=None):
        log.append((status, usage.input_tokens, raw))

    return SimpleNamespace(kind="openai", record=record)


def _corked(sock) -> bool:
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK))


@needs_cork
def test_the_last_byte_follows_the_record_and_the_cork_comes_off_before_it(tcp):
    log = []
    body = _RecordedBody(_call(log), 200, BODY, tcp)
    parts = iter(body)

    assert next(parts) == BODY[:-1]
    assert _corked(tcp) and log == []  # headers and first part held back together

    assert next(parts) == BODY[-1:]
    assert not _corked(tcp)
    assert log == [(RecordStatus.OK, 7, {"prompt_tokens": 7})]
    body.close()
    assert len(log) == 1  # recorded once


@needs_cork
def test_a_client_gone_before_the_end_still_leaves_one_record(tcp):
    log = []
    body = _RecordedBody(_call(log), 200, BODY, tcp)
    parts = iter(body)
    next(parts)
    body.close()  # what the server does when writing to the client failed
    assert not _corked(tcp)
    assert log == [(RecordStatus.OK, 7, {"prompt_tokens": 7})]


def test_without_a_socket_it_sends_the_same_bytes_and_records_a_failure():
    log = []
    body = _RecordedBody(_call(log), 429, b'{"error": "slow down"}', None)
    assert b"".join(body) == b'{"error": "slow down"}'
    assert log == [(RecordStatus.FAILED, 0, {"status": 429})]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("durable", [False, True])
def test_proxy_records_wait_for_the_disk_only_when_the_operator_asks(
    settings, monkeypatch, durable
):
    settings.PROXY_DURABLE_COMMIT = durable
    asked = []
    real = recording.request_events_record

    def spy(**kwargs):
        asked.append(kwargs["durable"])
        return real(**kwargs)

    monkeypatch.setattr(recording, "request_events_record", spy)
    account = AccountFactory(provider=provider("groq"))
    proxy_call_record(
        account=account,
        usage=RequestUsage(model="llama-3.1-8b-instant", input_tokens=5),
        status=RecordStatus.OK,
        occurred_at=timezone.now(),
        tags={},
    )
    assert asked == [durable]  # what that choice does: usage/tests/test_requests.py
    assert UsageRecord.objects.filter(account=account).count() == 1


def test_a_failure_to_keep_the_books_never_cuts_the_answer_short(monkeypatch, caplog):
    from providers.proxy import views

    def broken(**kwargs):
        raise RuntimeError("price book unavailable")

    monkeypatch.setattr(views, "proxy_call_record", broken)
    call = views._Call(
        account=SimpleNamespace(pk=7),
        kind="openai",
        route=SimpleNamespace(records=True),
        body=b'{"model": "gpt-4o-mini"}',
        tags={},
        started=timezone.now(),
        ingest_key_id=3,
    )
    assert b"".join(_RecordedBody(call, 200, BODY, None)) == BODY  # every byte went out
    assert "could not record a call for account 7" in caplog.text


@pytest.mark.parametrize(
    "content",
    [b'{"usage": {"prompt_tokens": Infinity}}', b'{"usage": {"prompt_tokens": [1]}}'],
)
def test_an_odd_answer_is_sent_whole_and_recorded_unpriced(content):
    log = []
    assert b"".join(_RecordedBody(_call(log), 200, content, None)) == content
    assert len(log) == 1 and log[0][0] == RecordStatus.OK


def test_a_stream_sent_as_one_json_array_is_read_by_its_last_usage():
    # Counts in a stream are cumulative: the last event with usage wins, a later one without
    # it does not erase it.
    events = [
        {"id": "c1", "model": "gpt-4o-mini", "usage": {"prompt_tokens": 5}},
        {"id": "c1", "usage": {"prompt_tokens": 7}},
        {"id": "c1", "choices": []},
    ]
    content = json.dumps(events).encode()
    log = []

    assert b"".join(_RecordedBody(_call(log), 200, content, None)) == content

    assert log == [(RecordStatus.OK, 7, {"prompt_tokens": 7})]


@pytest.mark.parametrize("content", [b"[]", b'[1, "x"]', b'[{"id": "c1", "choices": []}]'])
def test_a_json_array_without_usage_is_recorded_incomplete(content):
    # Incomplete with no usage found: unpriced (NULL), never a made-up $0.
    log = []
    assert b"".join(_RecordedBody(_call(log), 200, content, None)) == content
    assert log == [(RecordStatus.INCOMPLETE, 0, None)]
