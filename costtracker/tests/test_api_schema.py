"""The JSON API answers as its OpenAPI schema (/api/schema/) says, whatever it is sent.

schemathesis generates requests from the schema itself (valid ones and invalid ones) for every
operation and fails on a 5xx, an undocumented status code, a wrong content type, or a body
that does not match the documented response schema. Seeded and derandomized: the same
requests on every run. Authenticated as a real user (a ctk_ token from POST /api/auth/login)
and, for the ingestion endpoint, with the account's ingest key.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from rest_framework.test import APIClient
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi import checks as openapi_checks

from accounts.services import api_token_create
from accounts.tests.factories import PASSWORD, UserFactory
from alerts import services as alert_services
from providers.models import IngestKey, Provider
from providers.services import ingest_key_create
from providers.tests.factories import AccountFactory
from usage.models import RawHistoryPrune
from usage.services.records import manual_entry_create

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

SEED = 20261206
MAX_EXAMPLES = 12
CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
]
CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": SEED,
        "generation": {
            "mode": "all",  # valid and invalid requests
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "database": "none",
        },
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": False},
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": False},
        },
    }
)


@pytest.fixture
def world(db, httpserver, settings):
    """A user with one of everything, so object routes meet real objects too. Every provider
    points at a loopback server (Test connection calls it): no request leaves the machine."""
    httpserver.expect_request(re.compile(".*")).respond_with_json(
        {"object": "list", "data": [], "models": []}
    )
    for provider in Provider.objects.exclude(base_url_setting=""):
        setattr(settings, provider.base_url_setting, httpserver.url_for("/").rstrip("/"))
    user = UserFactory(username="schema-user")
    token = APIClient().post(
        "/api/auth/login", {"username": user.username, "password": PASSWORD}, format="json"
    )
    assert token.status_code == 200, token.content
    account = AccountFactory(
        workspace=user.personal_workspace, provider=_provider("openai"), name="Main"
    )
    raw_key, _ = ingest_key_create(account=account, name="schema")
    budget = alert_services.budget_create(
        workspace=user.personal_workspace, scope="overall", amount=Decimal("100")
    )
    alert = alert_services.alert_manual_create(workspace=user.personal_workspace, message="note")
    channel = alert_services.channel_create(
        workspace=user.personal_workspace, kind="email", target="a@example.com"
    )
    # A zero and a priced entry: "0.000000000000" must be as well-formed as "1.250000000000".
    manual_entry_create(account=account, day=date.today(), description="free", cost=Decimal(0))
    seat = manual_entry_create(
        account=account, day=date.today(), description="seat", cost=Decimal("1.25")
    )
    # Raw history cut (RAW_RETENTION_DAYS): ranges reaching before it carry raw_history_start.
    RawHistoryPrune.objects.create(before=datetime(2020, 1, 1, tzinfo=UTC))
    return {
        "objects": {
            "accounts": account.pk,
            "budgets": budget.pk,
            "alerts": alert.pk,
            "notification-channels": channel.pk,
            "services": account.provider_id,
            "ingest-keys": IngestKey.objects.get(account=account).pk,
            "usage": seat.pk,  # /api/usage/records/{id}/explanation
        },
        "user": user,
        "token": token.json()["token"],
        "account": account,
        "ingest_key": raw_key,
    }


def _provider(slug):
    from providers.tests.factories import provider

    return provider(slug)


@pytest.fixture
def wsgi_world(world):
    """`world`, for calls straight into the WSGI app. Django would close the database
    connection at the end of each request (close_old_connections), ending the test's
    transaction on PostgreSQL; Django's own test client disconnects it the same way (and
    reconnects it after each of its requests, hence after `world` is built)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield world
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def _path_parameters(path: str, objects: dict) -> dict:
    """Real ids for valid requests, so object routes answer 200 and not only 404."""
    params = {}
    if "{id}" in path:
        kind = path.split("/")[2]  # /api/<kind>/{id}...
        params["id"] = objects[kind]
    if "{key_id}" in path:
        params["key_id"] = objects["ingest-keys"]
    return params


# Requests a few random examples may miss: every documented variant of an answer (CSV and
# JSON export, each source), and the bodies the README shows. Checked with the same checks.
EXPLICIT_CASES = [
    ("GET", "/api/export", {"query": {"format": "json"}}),
    ("GET", "/api/export", {"query": {"format": "csv"}}),
    ("GET", "/api/usage/daily", {"query": {"days": 7}}),
    ("GET", "/api/usage/by-service", {"query": {"days": 30}}),
    ("GET", "/api/usage/breakdown", {"query": {"group_by": "model"}}),
    ("GET", "/api/usage/breakdown", {"query": {"group_by": "member", "start": "2026-01-01"}}),
    ("GET", "/api/usage/history", {"query": {"source": "manual"}}),
    ("GET", "/api/usage/history", {"query": {"start": "2019-12-01"}}),  # before the cut
    (
        "GET",
        "/api/usage/breakdown",
        {"query": {"group_by": "model", "start": "2019-12-01", "end": "2020-01-31"}},
    ),
    ("GET", "/api/reconciliation", {"query": {"month": "2019-12"}}),
    ("GET", "/api/reconciliation", {"query": {"month": "2026-11"}}),
    ("GET", "/api/usage/forecast", {}),
    ("GET", "/api/usage", {}),
    ("GET", "/api/alerts", {}),
    ("POST", "/api/budgets", {"body": {"amount": "50"}}),  # scope omitted: overall
    ("POST", "/api/budgets", {"body": {"scope": "account", "amount": "5"}}),  # no account: 400
    (
        "POST",
        "/api/usage/events",
        {
            "body": [
                {
                    "request_id": "req-1",
                    "model": "gpt-4o-mini",
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5},
                },
                {"request_id": "req-2"},  # rejected: no usage
            ]
        },
    ),
]


def _headers(world, path: str) -> dict:
    if path == "/api/usage/events":
        return {"Authorization": f"Bearer {world['ingest_key']}"}
    # A token of its own: POST /api/auth/logout revokes the one it is sent with.
    raw, _ = api_token_create(user=world["user"])
    return {"Authorization": f"Bearer {raw}"}


def test_it_answers_the_explicit_cases_as_documented(wsgi_world):
    world = wsgi_world
    api_schema = schemathesis.openapi.from_wsgi(
        "/api/schema/", get_wsgi_application(), config=CONFIG
    )
    failures = []
    for method, path, data in EXPLICIT_CASES:
        operation = api_schema[path][method]
        if "body" in data:
            data = {**data, "media_type": "application/json"}
        case = operation.Case(**data)
        try:
            case.call_and_validate(headers=_headers(world, path), checks=CHECKS)
        except (Exception, BaseExceptionGroup) as exc:
            failures.append(f"--- {method} {path} {data}:\n{exc}")
    assert not failures, f"{len(failures)} failing:\n" + "\n".join(failures)


def test_it_answers_every_operation_as_documented(wsgi_world):
    world = wsgi_world
    api_schema = schemathesis.openapi.from_wsgi(
        "/api/schema/", get_wsgi_application(), config=CONFIG
    )
    objects = world["objects"]
    operations = sorted(
        (result.ok() for result in api_schema.get_all_operations()),
        key=lambda op: (op.method.lower() == "delete", op.path, op.method),
    )
    failures = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            path_parameters = (
                _path_parameters(operation.path, objects)
                if mode is GenerationMode.POSITIVE
                else None
            )
            strategy = operation.as_strategy(mode, path_parameters=path_parameters or None)

            @given(case=strategy)
            @settings(
                max_examples=MAX_EXAMPLES,
                derandomize=True,
                deadline=None,
                database=None,
                # No shrinking: a failure is reported as found, and the run stays bounded.
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def run(case):
                case.call_and_validate(headers=_headers(world, case.operation.path), checks=CHECKS)

            try:
                run()
            except (Exception, BaseExceptionGroup) as exc:  # FailureGroup: a BaseExceptionGroup
                failures.append(f"--- {mode.value} {operation.label}:\n{exc}")
    assert not failures, f"{len(failures)} failing:\n" + "\n".join(failures)


def test_the_schema_generates_without_a_warning():
    # The deploy check (.ci/run) fails on any drf-spectacular warning, e.g. two choice sets
    # both named after a field ("role"): catch it with the suite, not only at the end of CI.
    import io

    from django.core.management import call_command

    call_command("spectacular", "--fail-on-warn", "--validate", stdout=io.StringIO())
