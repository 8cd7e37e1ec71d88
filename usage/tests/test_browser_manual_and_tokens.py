"""In Debian's chromium: edit and delete a manual entry and watch the dashboard total follow;
create an API token, use it, revoke it."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
import requests

from accounts.models import User

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's loop runs in this thread

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]
PASSWORD = "a-long-browser-test-passphrase"


def _log_in(page, base: str, username: str) -> None:
    User.objects.create_user(username, f"{username}@example.com", PASSWORD)
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/")


def test_it_edits_and_deletes_a_manual_entry_and_manages_api_tokens(page, live_server):
    base = live_server.url
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # Any failed request but the favicon (another change of issue 10 adds one).
    page.on(
        "response",
        lambda r: (
            errors.append(f"{r.status} {r.url}")
            if r.status >= 400 and "favicon" not in r.url
            else None
        ),
    )
    _log_in(page, base, "editor")

    page.goto(f"{base}/accounts/add/")
    page.select_option("select[name=provider]", label="Groq")
    page.fill("input[name=name]", "Groq team")
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/accounts/**")

    today = datetime.now(UTC).date().isoformat()
    page.goto(f"{base}/usage/new/")
    page.select_option("select[name=account]", label="Groq team (Groq)")
    page.fill("input[name=date]", today)
    page.fill("input[name=description]", "Team plan invoice")
    page.fill("input[name=cost]", "42.50")
    page.click("button[name=add_another]")
    # Saved; the form is back with the account and day already chosen.
    page.wait_for_url(f"{base}/usage/new/?**")
    assert page.input_value("input[name=date]") == today
    page.fill("input[name=description]", "Seat top-up")
    page.fill("input[name=cost]", "7.50")
    page.click("main button[type=submit]:not([name])")
    page.wait_for_url(f"{base}/")
    assert page.get_by_test_id("period-total").inner_text() == "$50.00"  # 42.50 + 7.50

    # Edit from History: $42.50 becomes $30.00, so the month is $37.50.
    page.goto(f"{base}/usage/history/?source=manual")
    page.locator("tr", has_text="Team plan invoice").get_by_role("link", name="Edit").click()
    page.wait_for_url("**/edit/**")
    page.fill("input[name=cost]", "30.00")
    page.click("main button[type=submit]:not([name])")
    page.wait_for_url(f"{base}/usage/history/?source=manual")
    page.goto(f"{base}/")
    assert page.get_by_test_id("period-total").inner_text() == "$37.50"

    # Delete the seat top-up: $30.00 left.
    page.goto(f"{base}/usage/history/?source=manual")
    page.locator("tr", has_text="Seat top-up").get_by_role("link", name="Delete").click()
    page.wait_for_url("**/delete/**")
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/usage/history/?source=manual")
    assert page.locator("tr", has_text="Seat top-up").count() == 0
    page.goto(f"{base}/")
    assert page.get_by_test_id("period-total").inner_text() == "$30.00"

    # The account's own page, from the Accounts list: same $30.00, its chart drawn by dashboard.js.
    page.goto(f"{base}/accounts/")
    page.click("text=Groq team")
    page.wait_for_url(f"{base}/accounts/*/overview/")
    assert page.get_by_test_id("account-total").inner_text() == "$30.00"
    page.wait_for_function("() => !!Chart.getChart(document.getElementById('chart-account-daily'))")

    # API token: made from the profile, shown once, works, revoked, refused.
    page.goto(f"{base}/profile/")
    page.click("text=API tokens")
    page.wait_for_url(f"{base}/profile/tokens/")
    page.fill("input[name=name]", "browser script")
    page.click("main button[type=submit]")
    raw = page.get_by_test_id("new-token-value").inner_text()
    assert raw.startswith("ctk_")
    me = requests.get(f"{base}/api/auth/me", headers={"Authorization": f"Bearer {raw}"}, timeout=10)
    assert me.status_code == 200 and me.json()["username"] == "editor"
    page.goto(f"{base}/profile/tokens/")
    assert raw not in page.content()
    row = page.locator("tr", has_text="browser script")
    row.get_by_role("button", name="Revoke").click()
    page.wait_for_url(f"{base}/profile/tokens/")
    assert page.locator("tr", has_text="browser script").count() == 0
    gone = requests.get(
        f"{base}/api/auth/me", headers={"Authorization": f"Bearer {raw}"}, timeout=10
    )
    assert gone.status_code == 401
    assert errors == []


def test_it_shows_only_the_chosen_providers_settings_on_the_account_form(page, live_server):
    base = live_server.url
    _log_in(page, base, "settings")
    page.goto(f"{base}/accounts/add/")

    page.select_option("select[name=provider]", label="Ollama (local LLMs)")
    assert page.is_visible("input[name=ollama_compute_rate_per_hour]")
    assert not page.is_visible("input[name=copilot_organization]")

    page.select_option("select[name=provider]", label="GitHub Copilot")
    assert page.is_visible("input[name=copilot_organization]")
    assert not page.is_visible("input[name=ollama_compute_rate_per_hour]")

    # The hidden boxes are only hidden: saving a Copilot account keeps its organization.
    page.fill("input[name=name]", "Copilot org")
    page.fill("input[name=copilot_organization]", "acme")
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/accounts/**")
    from providers.models import ProviderAccount

    assert ProviderAccount.objects.get(name="Copilot org").config["organization"] == "acme"
