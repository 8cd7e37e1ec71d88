"""A provider that echoes the account's keys back must never get them into a log, a row, a
response or a page: sync (task and page), test connection (API and page) and the proxy.

The keys are deliberately shaped like no known token, so only the exact-secret redaction can
catch them; the token-shape fallback is tested on its own at the end.
"""

from __future__ import annotations

import json
import logging
import re

import pytest
import time_machine
from django.urls import reverse
from django_q.models import Schedule, Task
from werkzeug import Request, Response

from accounts.models import ApiToken
from providers.http import ProviderError
from providers.models import IngestKey, ProviderAccount
from providers.redaction import REDACTED, redact, secrets_redacted
from providers.services import ingest_key_create
from providers.tests.factories import AccountFactory, provider
from usage.models import SyncRun, UsageRecord

NOW = "2026-08-03 12:00:00+00:00"
ADMIN_KEY = "zz-admin-secret-Q7x9-0001"
API_KEY = "plain/api+secret=0002"
SECRETS = (ADMIN_KEY, API_KEY)
EVERYWHERE = re.compile(".*")

# Every way a provider can answer badly: (status, body). The body echoes both keys, plainly
# and JSON-escaped; the 200s are a non-JSON body and a JSON body of the wrong shape.
ECHO = f"echo {ADMIN_KEY} and {API_KEY}"
CASES = [
    *((status, json.dumps({"error": {"message": ECHO}})) for status in (400, 401, 403, 404)),
    (429, json.dumps({"error": {"message": ECHO}})),
    (500, json.dumps({"error": {"message": ECHO}})),
    (503, f"<html>upstream down: {ECHO}</html>"),
    (200, f"not json at all: {ECHO}"),
    (200, json.dumps({"data": {"not": "a list", "echo": ECHO}})),
]
CASE_IDS = ["400", "401", "403", "404", "429", "500", "503", "200-not-json", "200-bad-shape"]


def serve_echo(httpserver, status: int, body: str) -> None:
    def handler(request: Request) -> Response:
        return Response(body, status=status, content_type="application/json")

    httpserver.expect_request(EVERYWHERE).respond_with_handler(handler)


@pytest.fixture
def fake(settings, httpserver):
    url = httpserver.url_for("/")
    for name in ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "GITHUB_API_URL", "GROQ_BASE_URL"):
        setattr(settings, name, url)
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": True}  # tasks run here, results saved
    settings.PROXY_DURABLE_COMMIT = False
    return httpserver


@pytest.fixture
def account():
    return AccountFactory(
        provider=provider("openai"), keys={"admin_key": ADMIN_KEY, "api_key": API_KEY}
    )


def everything_stored(account: ProviderAccount) -> str:
    """Every row a failure can be written to, as text."""
    rows = [
        *SyncRun.objects.filter(account=account).values(),
        *ProviderAccount.objects.filter(pk=account.pk).values(),
        *UsageRecord.objects.filter(account=account).values(),
        *Schedule.objects.values(),
    ]
    texts = [json.dumps(rows, default=str)]
    for task in Task.objects.all():
        texts.append(repr((task.name, task.func, task.args, task.kwargs, task.result)))
    return "\n".join(texts)


def logged(caplog) -> str:
    parts = [caplog.text]
    for record in caplog.records:
        parts.append(record.getMessage())
        parts.append(record.exc_text or "")
    return "\n".join(parts)


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text
            assert json.dumps(secret)[1:-1] not in text  # API_KEY's "/" JSON-escaped


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize(("status", "body"), CASES, ids=CASE_IDS)
def test_it_keeps_echoed_keys_out_of_sync_runs_logs_pages_and_task_results(
    fake, account, client, caplog, status, body
):
    caplog.set_level(logging.DEBUG)
    serve_echo(fake, status, body)
    client.force_login(account.workspace.personal_for)

    status_cell = client.post(
        reverse("account-sync", args=[account.pk]), HTTP_HX_REQUEST="true"
    ).content.decode()
    history = client.get(reverse("account-sync-history", args=[account.pk])).content.decode()
    api = client.get(reverse("api-sync-runs", args=[account.pk])).content.decode()
    accounts_page = client.get(reverse("account-list")).content.decode()
    account_api = client.get(reverse("api-account", args=[account.pk])).content.decode()

    run = SyncRun.objects.get(account=account)
    assert run.status == SyncRun.Status.FAILED
    assert len(fake.log) >= 1
    assert Task.objects.filter(func="usage.tasks.sync_account").exists()
    assert_no_secret(status_cell, history, api, accounts_page, account_api, logged(caplog))
    assert_no_secret(everything_stored(account))
    # Whatever the provider said is still there, minus the keys.
    if "echo" in run.error_message:
        assert REDACTED in run.error_message


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize(("status", "body"), CASES, ids=CASE_IDS)
def test_it_keeps_echoed_keys_out_of_test_connection_answers_and_logs(
    fake, account, client, caplog, status, body
):
    caplog.set_level(logging.DEBUG)
    serve_echo(fake, status, body)
    client.force_login(account.workspace.personal_for)

    api = client.post(reverse("api-account-test", args=[account.pk]))
    page = client.post(reverse("account-test", args=[account.pk]), HTTP_HX_REQUEST="true")

    assert api.status_code == 502
    assert api.json()["ok"] is False
    assert api.json()["error_class"] in {
        "auth",
        "config",
        "rate_limited",
        "server_error",
        "malformed",
    }
    assert page.status_code == 200
    assert_no_secret(api.content.decode(), page.content.decode(), logged(caplog))
    assert_no_secret(everything_stored(account))


@pytest.mark.django_db
@time_machine.travel(NOW, tick=True)
@pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 500, 503])
def test_it_keeps_the_swapped_in_key_out_of_proxied_error_answers(fake, client, caplog, status):
    account = AccountFactory(
        provider=provider("openai"), keys={"admin_key": ADMIN_KEY, "api_key": API_KEY}
    )
    raw, _ = ingest_key_create(account=account)
    caplog.set_level(logging.DEBUG)  # after the factory, which logs its own arguments
    serve_echo(fake, status, json.dumps({"error": {"message": ECHO}}))

    response = client.post(
        "/proxy/openai/v1/chat/completions",
        data=json.dumps({"model": "gpt-4o-mini", "messages": []}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    content = b"".join(response.streaming_content) if response.streaming else response.content

    assert response.status_code == status  # passed through, minus the key
    assert f"echo {REDACTED} and {REDACTED}".encode() in content
    # The fake did receive the real key: the swap happened, only the echo was taken out.
    (request, _), *_ = fake.log
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert_no_secret(content.decode(), logged(caplog))
    assert_no_secret(everything_stored(account))
    assert UsageRecord.objects.filter(account=account).count() == 1


# --- the redaction rule itself ---


def test_it_redacts_every_secret_in_its_plain_json_and_url_forms():
    text = f"a {ADMIN_KEY} b {json.dumps(API_KEY)} c plain%2Fapi%2Bsecret%3D0002"

    assert redact(text, SECRETS) == f'a {REDACTED} b "{REDACTED}" c {REDACTED}'


def test_it_redacts_token_shapes_it_was_never_told_about():
    text = (
        "sk-proj-abcdefghijklmnop1234 sk-ant-admin01-ABCDEFGHIJKLMNOP ghp_abcdefghijklmnopqrstuv "
        "github_pat_11ABCDEFGHIJKLMNOPQR gsk_abcdefghijklmnop1234 pplx-abcdefghijklmnop1234 "
        "Authorization: Bearer abc.def-ghi_jkl~mno"
    )

    assert redact(text) == " ".join([REDACTED] * 6) + f" Authorization: Bearer {REDACTED}"


def test_it_redacts_our_own_tokens_and_the_newer_providers_key_shapes():
    # Our ingest keys and API tokens as they are minted (the shape once named ct_ingest_ /
    # ct_api_, which no token has), and each registered provider's declared key shape.
    ingest = IngestKey.new_raw_key()
    api = ApiToken.new_raw_token()
    text = (
        f"{ingest} {api} AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW "
        "xai-abcdefghijklmnop1234 sk-or-v1-0123456789abcdef0123"
    )

    assert redact(text) == " ".join([REDACTED] * 5)


def test_it_leaves_short_strings_and_ordinary_text_alone():
    assert redact("model gpt-4o-mini cost 1.5 task-1234", ("1234",)) == (
        "model gpt-4o-mini cost 1.5 task-1234"
    )


def test_a_provider_error_is_redacted_before_it_is_cut_to_an_excerpt():
    # The key straddles the 500-character excerpt boundary: no prefix of it may survive.
    body = "x" * 490 + ADMIN_KEY + "y" * 100
    with secrets_redacted([ADMIN_KEY]):
        error = ProviderError(f"provider error (500): {ADMIN_KEY}", body_excerpt=body)

    assert ADMIN_KEY[:10] not in error.body_excerpt
    assert error.body_excerpt.startswith("x" * 490 + REDACTED)
    assert str(error) == f"provider error (500): {REDACTED}"
    assert error.args == (f"provider error (500): {REDACTED}",)
