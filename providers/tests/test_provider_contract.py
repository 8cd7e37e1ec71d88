"""Every registered provider passes the same checks, from its adapter and its contract file
(providers/tests/fixtures/<kind>/contract.json): catalogue row and base URL setting, proxy
routes that resolve (and a call through the proxy recording the fixture's usage), usage
extraction of its fixture bodies, a priced example (worked by hand in the file's "working"),
and its settings surviving the account form and the API shape unchanged.

An example may name the account settings it is priced with ("account_config") and its compute
rate ("compute_rate_per_hour"); "unpriced_cost" states what a request with no price costs when
that is not None (unknown): "0" for a provider that is free by default.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from django.conf import settings as django_settings
from django.urls import resolve, reverse

from accounts.tests.factories import UserFactory
from providers.account_settings import settings_clean, settings_values
from providers.forms import AccountForm
from providers.models import Provider
from providers.proxy.routes import MODEL, Route, route_for, routes_for
from providers.proxy.views import proxy
from providers.registry import ADAPTERS, get_adapter_class
from providers.services import account_create, ingest_key_create
from providers.tests.factories import AccountFactory, provider
from usage.extraction import extract_usage
from usage.models import Price as PriceRow
from usage.models import UsageRecord
from usage.pricing import Price, cost_for
from usage.services.prices import price_cache_clear

FIXTURES = Path(__file__).resolve().parent / "fixtures"
KINDS = list(ADAPTERS)
DECIMAL_FIELDS = ("provider_cost", "audio_seconds")
EXAMPLE_MODEL = "example-model-1"  # stands in for a route key's {model} segment


def contract(kind: str) -> dict:
    return json.loads((FIXTURES / kind / "contract.json").read_text())


def examples(kind: str) -> list[dict]:
    return contract(kind)["examples"]


def price_of(example: dict) -> Price | None:
    rates = example["price"]
    return None if rates is None else Price(**{k: Decimal(v) for k, v in rates.items()})


@pytest.mark.parametrize("kind", KINDS)
def test_it_has_a_contract_file_with_at_least_one_priced_example(kind):
    data = contract(kind)
    assert data["examples"], f"{kind}: no usage example"
    assert all(example["working"] for example in data["examples"])


@pytest.mark.django_db
@pytest.mark.parametrize("kind", KINDS)
def test_it_has_a_catalogue_row_from_its_adapter(kind):
    adapter = get_adapter_class(kind)
    row = Provider.objects.get(slug=kind)

    assert row.name == (adapter.catalogue_name or adapter.label)
    assert row.description == adapter.description != ""
    assert row.has_official_api is adapter.supports_sync
    assert row.base_url_setting == adapter.base_url_setting
    assert hasattr(django_settings, adapter.base_url_setting)  # settings.py reads it from env
    assert row.base_url == getattr(django_settings, adapter.base_url_setting)


@pytest.mark.parametrize("kind", KINDS)
def test_its_proxy_routes_resolve_to_the_proxy(kind):
    declared = contract(kind)["proxy"]
    routes = routes_for(kind)
    if declared is None:
        assert routes is None  # no proxy: the view answers 404 for this provider
        return
    assert routes, f"{kind}: the contract names a proxy path but the adapter has no routes"
    for key, route in routes.items():
        assert isinstance(route, Route)
        assert route.method in ("GET", "POST")
        path = key.replace(MODEL, EXAMPLE_MODEL)
        match = resolve(f"/proxy/{kind}/{path}")
        assert match.func is proxy
        assert match.kwargs == {"provider": kind, "path": path}
        assert route_for(kind, path).route is route
    route = routes[declared["path"]]
    assert (route.method, route.upstream_path) == (declared["method"], declared["upstream_path"])


@pytest.mark.parametrize("kind", KINDS)
def test_it_extracts_the_usage_of_its_fixture_bodies(kind):
    for example in examples(kind):
        usage = extract_usage(kind, example["body"])

        for field, expected in example["usage"].items():
            if field in DECIMAL_FIELDS:
                expected = Decimal(expected)
            assert getattr(usage, field) == expected, f"{kind}: {field}"


@pytest.mark.parametrize("kind", KINDS)
def test_it_prices_its_examples_as_worked_by_hand(kind):
    for example in examples(kind):
        usage = extract_usage(kind, example["body"])
        rate = example.get("compute_rate_per_hour")

        cost = cost_for(
            kind,
            usage,
            price_of(example),
            compute_rate_per_hour=None if rate is None else Decimal(rate),
            account_config=example.get("account_config"),
        )

        assert cost == Decimal(example["cost"]), example["working"]


@pytest.mark.parametrize("kind", KINDS)
def test_an_unpriced_token_example_stays_unpriced_unless_the_provider_says_otherwise(kind):
    # No price: None (unknown), never a made-up 0 - except a provider's own cost figure or a
    # free default its contract declares ("unpriced_cost"). Whether the upstream needs a key
    # says nothing about this: a self-hosted server may take calls without one and still be
    # priced from the price book.
    example = examples(kind)[0]
    usage = extract_usage(kind, example["body"])
    declared = contract(kind).get("unpriced_cost")

    cost = cost_for(kind, usage, None)

    if usage.provider_cost is not None:
        assert cost == usage.provider_cost
    else:
        assert cost == (None if declared is None else Decimal(declared))


@pytest.mark.django_db
@pytest.mark.parametrize("kind", KINDS)
def test_its_settings_survive_the_account_form_and_the_api_shape(kind):
    values = contract(kind)["settings"]
    assert set(values) == {s.name for s in get_adapter_class(kind).settings}
    owner = UserFactory()
    row = provider(kind)
    data = {"provider": row.pk, "name": f"{kind} main", "is_active": "on"}
    data.update({f"{kind}_{name}": value for name, value in values.items()})
    form = AccountForm(data=data, workspace=owner.personal_workspace)
    assert form.is_valid(), form.errors

    account = account_create(workspace=owner.personal_workspace, **form.service_kwargs())

    expected = settings_clean(kind=kind, values=values)
    assert account.config == expected
    shown = settings_values(kind=kind, stored=account.config)
    edit = AccountForm(instance=account, workspace=owner.personal_workspace)
    initial = {name: edit.fields[f"{kind}_{name}"].initial for name in values}
    assert initial == {name: shown[name] for name in values}
    assert settings_clean(kind=kind, values=shown) == expected  # the API's GET, sent back


# --- through the proxy: the fixture body comes back from a loopback upstream ----------------


@pytest.fixture
def _fresh_prices():
    price_cache_clear()
    yield
    price_cache_clear()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("kind", [kind for kind in KINDS if contract(kind)["proxy"]])
def test_a_call_through_the_proxy_records_its_fixture_usage_and_cost(
    kind, live_server, httpserver, settings, _fresh_prices
):
    adapter = get_adapter_class(kind)
    setattr(settings, adapter.base_url_setting, httpserver.url_for("/").rstrip("/"))
    declared = contract(kind)["proxy"]
    example = examples(kind)[0]
    if example["price"] is not None:
        PriceRow.objects.create(
            provider=provider(kind),
            model=example["usage"]["model"],
            valid_from=datetime(2020, 1, 1, tzinfo=UTC),
            **{k: Decimal(v) for k, v in example["price"].items()},
        )
    account = AccountFactory(provider=provider(kind), keys={"api_key": "sk-contract-0001"})
    raw, _ = ingest_key_create(account=account)
    model = example["usage"]["model"]
    upstream_path = declared["upstream_path"].replace(MODEL, model)
    httpserver.expect_request(f"/{upstream_path}").respond_with_json(example["body"])

    reply = requests.post(
        f"{live_server.url}/proxy/{kind}/{declared['path'].replace(MODEL, model)}",
        json={"model": example["usage"]["model"], "messages": []},
        headers={"Authorization": f"Bearer {raw}"},
        timeout=30,
    )

    assert reply.status_code == 200, reply.text
    assert reply.json() == example["body"]
    (record,) = UsageRecord.objects.filter(account=account)
    for field in ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens"):
        assert getattr(record, field) == example["usage"].get(field, 0), field
    assert record.cost == Decimal(example["cost"]), example["working"]


@pytest.mark.django_db
@pytest.mark.parametrize("url_name", ["account-list", "dashboard"])
def test_the_empty_pages_name_every_catalogue_provider(client, url_name):
    client.force_login(UserFactory())

    page = client.get(reverse(url_name))

    text = page.content.decode()
    assert page.status_code == 200
    for kind in KINDS:
        assert provider(kind).name in text, kind
