"""Provider settings are typed (declared by each adapter) and survive every round trip; an
account's provider is fixed once it has usage, in the API, the app's form and the admin."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from accounts.tests.factories import UserFactory
from providers.account_settings import settings_clean, settings_values
from providers.adapters.copilot import CopilotAdapter
from providers.models import Invoice, ProviderAccount
from providers.registry import ADAPTERS
from providers.services import account_create, account_update
from providers.tests.factories import provider
from usage.services.records import manual_entry_create

pytestmark = pytest.mark.django_db

# Non-default settings for some providers; the others are created with their defaults.
SETTINGS = {
    "copilot": {
        "organization": "acme",
        "include_billing_usage": False,
        "seat_price_business": "21.50",
    },
    "ollama": {"compute_rate_per_hour": "0.40"},
}
# What GET shows for them: every declared key, decimals in one plain spelling.
SHOWN = {
    "copilot": {
        "organization": "acme",
        "include_billing_usage": False,
        "seat_price_business": "21.5",
        "seat_price_enterprise": None,
    },
    "ollama": {"compute_rate_per_hour": "0.4"},
}
WRITABLE = ("provider", "name", "config", "monthly_budget", "is_active")


@pytest.fixture
def user(api_client):
    user = UserFactory()
    api_client.force_authenticate(user)
    return user


def _create(api_client, kind: str, name: str = "Acct", **extra) -> dict:
    body = {"provider": kind, "name": name, "config": SETTINGS.get(kind, {}), **extra}
    response = api_client.post("/api/accounts", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def _spend(account: ProviderAccount) -> None:
    manual_entry_create(account=account, day=date(2026, 11, 5), description="x", cost=Decimal("5"))


@pytest.mark.parametrize("kind", list(ADAPTERS))
def test_it_round_trips_an_account_through_get_and_put_losslessly(api_client, user, kind):
    pk = _create(api_client, kind, monthly_budget="25.00")["id"]
    account = ProviderAccount.objects.get(pk=pk)
    # An invoice total is not a setting; it must survive the round trip untouched.
    Invoice.objects.create(account=account, month=date(2026, 11, 1), amount=Decimal("123.45"))
    before = api_client.get(f"/api/accounts/{pk}").json()
    assert before["config"] == SHOWN.get(kind, settings_values(kind=kind, stored=None))
    stored = ProviderAccount.objects.get(pk=pk).config

    response = api_client.put(
        f"/api/accounts/{pk}", {k: before[k] for k in WRITABLE}, format="json"
    )
    assert response.status_code == 200, response.content
    after = api_client.get(f"/api/accounts/{pk}").json()
    assert {**after, "updated_at": None} == {**before, "updated_at": None}
    assert ProviderAccount.objects.get(pk=pk).config == stored
    assert Invoice.objects.get(account_id=pk).amount == Decimal("123.45")


@pytest.mark.parametrize("kind", list(ADAPTERS))
def test_it_refuses_an_unknown_setting_naming_it(api_client, user, kind):
    pk = _create(api_client, kind)["id"]
    stored = ProviderAccount.objects.get(pk=pk).config
    for method in (api_client.patch, api_client.put):
        response = method(
            f"/api/accounts/{pk}",
            {"provider": kind, "name": "Acct", "config": {"invoices": {"2026-11": "1"}}},
            format="json",
        )
        assert response.status_code == 400
        assert "invoices" in response.json()["config"]
    assert ProviderAccount.objects.get(pk=pk).config == stored
    response = api_client.post(
        "/api/accounts",
        {"provider": kind, "name": "Other", "config": {**SETTINGS.get(kind, {}), "bogus": 1}},
        format="json",
    )
    assert response.status_code == 400 and list(response.json()["config"]) == ["bogus"]


def test_it_keeps_the_other_settings_when_one_is_patched(api_client, user):
    pk = _create(api_client, "copilot")["id"]
    Invoice.objects.create(account_id=pk, month=date(2026, 11, 1), amount=Decimal("190"))
    response = api_client.patch(
        f"/api/accounts/{pk}", {"config": {"organization": "acme-2"}}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["config"] == {**SHOWN["copilot"], "organization": "acme-2"}
    assert Invoice.objects.filter(account_id=pk).count() == 1
    # null resets one setting to its default and leaves the rest alone
    response = api_client.patch(
        f"/api/accounts/{pk}", {"config": {"include_billing_usage": None}}, format="json"
    )
    assert response.json()["config"] == {
        **SHOWN["copilot"],
        "organization": "acme-2",
        "include_billing_usage": True,
    }


@pytest.mark.parametrize(
    ("kind", "config", "field"),
    [
        ("copilot", {"organization": ""}, "organization"),
        ("copilot", {"organization": "a", "seat_price_business": "abc"}, "seat_price_business"),
        ("copilot", {"organization": "a", "seat_price_enterprise": "-1"}, "seat_price_enterprise"),
        ("copilot", {"organization": "a", "include_billing_usage": "yes"}, "include_billing_usage"),
        ("copilot", {"organization": ["a"]}, "organization"),
        ("copilot", {"organization": "a" * 101}, "organization"),
        ("ollama", {"compute_rate_per_hour": "1e400"}, "compute_rate_per_hour"),
        ("ollama", {"compute_rate_per_hour": True}, "compute_rate_per_hour"),
        ("ollama", {"compute_rate_per_hour": {"a": 1}}, "compute_rate_per_hour"),
    ],
)
def test_it_refuses_a_bad_setting_value_naming_it(api_client, user, kind, config, field):
    response = api_client.post(
        "/api/accounts", {"provider": kind, "name": "Bad", "config": config}, format="json"
    )
    assert response.status_code == 400, response.content
    assert list(response.json()["config"]) == [field]
    assert not ProviderAccount.objects.exists()


def test_it_requires_the_copilot_organization_when_config_is_left_out(api_client, user):
    response = api_client.post(
        "/api/accounts", {"provider": "copilot", "name": "GH"}, format="json"
    )
    assert response.status_code == 400 and "organization" in response.json()["config"]


def test_it_refuses_config_that_is_not_an_object(api_client, user):
    for bad in (["a"], "x", 3):
        response = api_client.post(
            "/api/accounts", {"provider": "openai", "name": "X", "config": bad}, format="json"
        )
        assert response.status_code == 400 and "config" in response.json()


def test_it_stores_what_the_adapter_reads():
    stored = settings_clean(kind="copilot", values={"organization": " acme "})
    adapter = CopilotAdapter(base_url="", secret="t", config=stored)
    assert adapter.organization == "acme"
    # Left out: the declared default, which the adapter honours (billing usage on).
    assert adapter.config["include_billing_usage"] is True
    assert adapter._seat_price("business") == Decimal(19)
    stored = settings_clean(kind="copilot", values={"organization": "a", "seat_price_business": 7})
    assert CopilotAdapter(base_url="", secret="t", config=stored)._seat_price("business") == 7


def test_it_shows_every_declared_setting_and_nothing_else():
    shown = settings_values(kind="ollama", stored={"compute_rate_per_hour": "0.36", "junk": 1})
    assert shown == {"compute_rate_per_hour": "0.36"}
    assert settings_values(kind="openai", stored={"organization": "x"}) == {}


# --- the provider is fixed once there is usage -------------------------------------------


def test_it_refuses_a_provider_change_in_the_api_once_there_is_usage(api_client, user):
    pk = _create(api_client, "perplexity")["id"]
    _spend(ProviderAccount.objects.get(pk=pk))
    for method in (api_client.patch, api_client.put):
        response = method(
            f"/api/accounts/{pk}", {"provider": "openai", "name": "Acct"}, format="json"
        )
        assert response.status_code == 400 and list(response.json()) == ["provider"]
    assert ProviderAccount.objects.get(pk=pk).provider.slug == "perplexity"
    # Sending the same provider back is not a change.
    response = api_client.patch(
        f"/api/accounts/{pk}", {"provider": "perplexity", "name": "Renamed"}, format="json"
    )
    assert response.status_code == 200


def test_it_allows_a_provider_change_without_usage_starting_from_its_defaults(api_client, user):
    pk = _create(api_client, "ollama")["id"]
    response = api_client.patch(
        f"/api/accounts/{pk}",
        {"provider": "copilot", "config": {"organization": "o"}},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["config"] == {
        "organization": "o",
        "include_billing_usage": True,
        "seat_price_business": None,
        "seat_price_enterprise": None,
    }
    # To a provider without settings: the old ones are dropped, not carried over.
    response = api_client.patch(f"/api/accounts/{pk}", {"provider": "groq"}, format="json")
    assert response.status_code == 200 and response.json()["config"] == {}
    assert ProviderAccount.objects.get(pk=pk).config == {}


def test_it_refuses_a_provider_change_in_the_service_once_there_is_usage():
    account = account_create(
        workspace=UserFactory().personal_workspace, provider=provider("perplexity"), name="P"
    )
    _spend(account)
    with pytest.raises(ValidationError) as info:
        account_update(
            account=ProviderAccount.objects.get(pk=account.pk), provider=provider("openai")
        )
    assert list(info.value.message_dict) == ["provider"]
    assert ProviderAccount.objects.get(pk=account.pk).provider.slug == "perplexity"


def _form_data(account: ProviderAccount, **changes) -> dict:
    data = {
        "provider": account.provider_id,
        "name": account.name,
        "monthly_budget": "",
        "is_active": "on",
    }
    return {**data, **changes}


def test_it_shows_a_provider_change_as_a_form_error_once_there_is_usage(client):
    user = UserFactory()
    account = account_create(
        workspace=user.personal_workspace, provider=provider("perplexity"), name="P"
    )
    _spend(account)
    client.force_login(user)
    response = client.post(
        f"/accounts/{account.pk}/", _form_data(account, provider=provider("openai").pk)
    )
    assert response.status_code == 200
    assert "cannot change" in " ".join(response.context["form"].errors["provider"])
    assert ProviderAccount.objects.get(pk=account.pk).provider.slug == "perplexity"
    # Without usage the same change is allowed.
    other = account_create(
        workspace=user.personal_workspace, provider=provider("perplexity"), name="Q"
    )
    response = client.post(
        f"/accounts/{other.pk}/", _form_data(other, provider=provider("groq").pk)
    )
    assert response.status_code == 302
    assert ProviderAccount.objects.get(pk=other.pk).provider.slug == "groq"


def test_it_edits_settings_in_the_form_generated_from_the_adapter(client):
    user = UserFactory()
    client.force_login(user)
    page = client.get("/accounts/add/").content.decode()
    assert 'name="copilot_organization"' in page and 'name="ollama_compute_rate_per_hour"' in page
    data = {"provider": provider("copilot").pk, "name": "GH", "is_active": "on"}
    missing = client.post("/accounts/add/", data)
    assert missing.status_code == 200 and "copilot_organization" in missing.context["form"].errors
    # Another provider's box is not used, so a bad value there is no error.
    response = client.post(
        "/accounts/add/",
        {
            **data,
            "copilot_organization": "acme",
            "copilot_include_billing_usage": "on",
            "copilot_seat_price_business": "20",
            "ollama_compute_rate_per_hour": "abc",
        },
    )
    assert response.status_code == 302, response.context and response.context["form"].errors
    account = ProviderAccount.objects.get(name="GH")
    assert account.config == {
        "organization": "acme",
        "include_billing_usage": True,
        "seat_price_business": "20",
        "seat_price_enterprise": None,
    }
    page = client.get(f"/accounts/{account.pk}/").content.decode()
    assert 'value="acme"' in page


def _admin_data(account: ProviderAccount, **changes) -> dict:
    return {
        "workspace": account.workspace_id,
        "provider": account.provider_id,
        "name": account.name,
        "monthly_budget": "",
        "is_active": "on",
        "new_api_key": "",
        "new_admin_key": "",
        **changes,
    }


def test_it_refuses_a_provider_change_in_the_admin_once_there_is_usage(client):
    admin = UserFactory(is_staff=True, is_superuser=True)
    account = account_create(
        workspace=admin.personal_workspace, provider=provider("perplexity"), name="P"
    )
    _spend(account)
    client.force_login(admin)
    url = f"/admin/providers/provideraccount/{account.pk}/change/"
    assert client.get(url).status_code == 200
    response = client.post(url, _admin_data(account, provider=provider("openai").pk))
    assert response.status_code == 200
    assert "cannot change" in " ".join(response.context["adminform"].form.errors["provider"])
    assert ProviderAccount.objects.get(pk=account.pk).provider.slug == "perplexity"
    # Settings are typed there too, and a change without usage goes through.
    other = account_create(workspace=admin.personal_workspace, provider=provider("groq"), name="Q")
    url = f"/admin/providers/provideraccount/{other.pk}/change/"
    response = client.post(
        url,
        _admin_data(other, provider=provider("ollama").pk, ollama_compute_rate_per_hour="0.25"),
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    other.refresh_from_db()
    assert (other.provider.slug, other.config) == ("ollama", {"compute_rate_per_hour": "0.25"})


def test_it_declares_every_config_key_the_code_reads():
    # A key read somewhere but declared nowhere could never be set through the form or API.
    import re
    from pathlib import Path

    from django.conf import settings as django_settings

    from providers.account_settings import settings_of

    declared = {s.name for kind in ADAPTERS for s in settings_of(kind)}
    pattern = re.compile(r"config(?:\)|\s*or\s*\{\}\))?(?:\.get\(|\[)\s*(f?)\"([^\"]+)\"")
    read = set()
    root = Path(django_settings.BASE_DIR)
    for path in root.glob("*/**/*.py"):
        parts = path.relative_to(root).parts
        if parts[0] in {".venv", "bench"} or "tests" in parts or "migrations" in parts:
            continue
        for is_f, key in pattern.findall(path.read_text(encoding="utf-8")):
            read.add((key.split("{")[0] if is_f else key, bool(is_f)))
    assert read, "the pattern found nothing: it no longer matches how config is read"
    missing = [
        key
        for key, prefix in read
        if not (any(d.startswith(key) for d in declared) if prefix else key in declared)
    ]
    assert missing == []


def test_it_checks_invoices_edited_in_the_admin(client):
    admin = UserFactory(is_staff=True, is_superuser=True)
    account = account_create(
        workspace=admin.personal_workspace, provider=provider("openai"), name="A"
    )
    client.force_login(admin)
    data = {"account": account.pk, "month": "2026-11-02", "amount": "5", "currency": "USD"}
    response = client.post("/admin/providers/invoice/add/", data)
    assert response.status_code == 200 and "month" in response.context["adminform"].form.errors
    response = client.post("/admin/providers/invoice/add/", {**data, "month": "2026-11-01"})
    assert response.status_code == 302
    assert Invoice.objects.get().amount == Decimal("5")
