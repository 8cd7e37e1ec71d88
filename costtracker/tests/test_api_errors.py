"""Errors: pages in the app's layout, JSON under /api/, provider-shaped JSON under /proxy/.

Run with DEBUG=False (pyproject's test default, set again here), as in production, so Django's
handler404/handler500 and DRF's exception handler answer, not the debug pages.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client, RequestFactory
from rest_framework.test import APIClient

from accounts.tests.factories import UserFactory
from costtracker import errors

pytestmark = pytest.mark.django_db

SECRET = "sk-live-should-never-leak-0001"


@pytest.fixture(autouse=True)
def _production(settings):
    settings.DEBUG = False


@pytest.fixture
def api(db):
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(UserFactory())
    return client


def _json(response) -> dict:
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    return json.loads(response.content)


@pytest.mark.parametrize(
    "url", ["/api/nope", "/api/budgets/", "/api/accounts/abc", "/api/", "/api/usage/daily/x"]
)
def test_it_answers_json_404_for_an_unknown_api_url(api, url):
    response = api.get(url)
    assert response.status_code == 404
    assert _json(response) == {"detail": "Not found."}


def test_it_answers_json_404_for_an_object_that_is_not_yours(api):
    response = api.get("/api/budgets/999999")
    assert response.status_code == 404
    assert set(_json(response)) == {"detail"}


@pytest.mark.parametrize("url", ["/proxy/", "/proxy/openai", "/proxy/not a slug/v1/x"])
def test_it_answers_provider_shaped_json_404_under_proxy(url):
    response = Client().post(url, data="{}", content_type="application/json")
    assert response.status_code == 404
    body = _json(response)
    assert body["type"] == "error" and body["error"]["type"] == "not_found_error"
    assert body["error"]["message"]


def test_it_answers_json_500_without_traceback_or_secret_in_an_api_view(api, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError(f"database exploded while holding {SECRET}")

    monkeypatch.setattr("usage.selectors.month_summary", broken)
    response = api.get("/api/usage")
    assert response.status_code == 500
    assert _json(response) == {"detail": "Server error."}
    assert SECRET not in response.content.decode()
    assert "Traceback" not in response.content.decode()


def test_it_answers_json_405_415_and_400_for_malformed_requests(api):
    not_allowed = api.delete("/api/usage")
    assert not_allowed.status_code == 405 and "detail" in _json(not_allowed)

    unsupported = api.generic("POST", "/api/budgets", "amount=5", content_type="text/plain")
    assert unsupported.status_code == 415 and "detail" in _json(unsupported)

    malformed = api.generic("POST", "/api/budgets", '{"amount": ', content_type="application/json")
    assert malformed.status_code == 400 and "detail" in _json(malformed)


def test_it_answers_json_401_without_credentials():
    response = APIClient().get("/api/usage")
    assert response.status_code == 401
    assert set(_json(response)) == {"detail"}


def test_it_renders_a_styled_404_page_in_the_layout():
    response = Client().get("/no-such-page/")
    assert response.status_code == 404
    html = response.content.decode()
    assert 'class="topbar"' in html and "Page not found" in html
    assert 'data-testid="error-page"' in html


def test_it_renders_a_styled_500_page_when_a_page_view_breaks(monkeypatch):
    user = UserFactory()
    client = Client(raise_request_exception=False)
    client.force_login(user)

    def broken(*args, **kwargs):
        raise RuntimeError(f"boom {SECRET}")

    monkeypatch.setattr("usage.selectors.today_for", broken)
    response = client.get("/")
    assert response.status_code == 500
    html = response.content.decode()
    assert 'class="topbar"' in html and "Server error" in html
    assert SECRET not in html and "Traceback" not in html


def test_it_renders_the_500_page_without_any_request_context():
    # handler500 renders without context processors: no user, session or messages.
    response = errors.server_error(RequestFactory().get("/dashboard/"))
    assert response.status_code == 500
    assert "Server error" in response.content.decode()


def test_it_falls_back_to_plain_html_when_the_500_template_itself_breaks(monkeypatch):
    def broken_template(name, *args, **kwargs):
        raise RuntimeError("template loader is broken")

    monkeypatch.setattr(errors.loader, "get_template", broken_template)
    response = errors.server_error(RequestFactory().get("/"))
    assert response.status_code == 500
    assert b"Server error" in response.content


def test_it_answers_json_500_under_api_and_proxy_from_the_handler_itself():
    api_answer = errors.server_error(RequestFactory().get("/api/usage"))
    assert api_answer.status_code == 500 and _json(api_answer) == {"detail": "Server error."}
    proxy_answer = errors.server_error(RequestFactory().post("/proxy/openai/v1/chat/completions"))
    assert proxy_answer.status_code == 500
    assert _json(proxy_answer)["error"]["type"] == "api_error"


# --- POST /api/budgets: the schema's `required` is what the code requires -------------------


def test_it_creates_an_overall_budget_when_scope_is_omitted(api):
    # Before: budget_create() got no `scope` and raised TypeError (a 500), while the schema
    # (model default) said scope was optional.
    response = api.post("/api/budgets", {"amount": "50"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["scope"] == "overall"


def test_it_keeps_the_scope_on_a_patch_without_it(api):
    created = api.post("/api/budgets", {"amount": "50"}, format="json").json()
    response = api.patch(f"/api/budgets/{created['id']}", {"amount": "60"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["scope"] == "overall"


def test_it_documents_the_same_required_fields_the_code_requires(api):
    schema = api.get("/api/schema/", {"format": "json"}).json()
    components = schema["components"]["schemas"]
    assert components["BudgetRequest"]["required"] == ["amount"]
    # Every required request field really is required: a body without it is a 400 naming it.
    response = api.post("/api/budgets", {}, format="json")
    assert response.status_code == 400 and set(response.json()) == {"amount"}


def test_it_documents_json_errors_on_every_api_operation(api):
    schema = api.get("/api/schema/", {"format": "json"}).json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            errors_documented = [code for code in responses if code.startswith(("4", "5"))]
            for code in errors_documented:
                assert "application/json" in responses[code].get("content", {}), (
                    method,
                    path,
                    code,
                )
            if "{id}" in path:
                assert "404" in responses, (method, path)


def test_it_accepts_a_patch_without_the_fields_the_schema_marks_optional(api):
    # The schema's PATCH body (PatchedAlertUpdate) has no required field; the code agrees.
    schema = api.get("/api/schema/", {"format": "json"}).json()
    assert "required" not in schema["components"]["schemas"]["PatchedAlertUpdateRequest"]
    created = api.post("/api/alerts", {"message": "note"}, format="json").json()
    response = api.patch(f"/api/alerts/{created['id']}", {}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["acknowledged"] is False  # unchanged
    put = api.put(f"/api/alerts/{created['id']}", {}, format="json")
    assert put.status_code == 400 and set(put.json()) == {"acknowledged"}  # PUT requires it
