"""The budget form in a real browser: only the chosen scope's target pickers show, and a budget
for one tag value made there is listed with its period."""

from __future__ import annotations

import os

import pytest

from alerts.models import Budget

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # ORM calls beside Playwright's event loop

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]
PASSWORD = "a-long-browser-test-passphrase"


def test_it_shows_the_chosen_scopes_pickers_and_saves_a_tag_budget(page, live_server):
    base = live_server.url
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
    page.goto(f"{base}/signup/")
    page.fill("input[name=username]", "bea")
    page.fill("input[name=email]", "bea@example.com")
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/**")

    page.goto(f"{base}/budgets/add/")
    pickers = ("provider", "account", "ingest_key", "tag", "tag_value")

    def visible() -> set[str]:
        return {name for name in pickers if page.locator(f"p.field-{name}").is_visible()}

    assert visible() == set()  # "All spend" (the default) has no target
    page.select_option("select[name=scope]", "provider")
    assert visible() == {"provider"}
    page.select_option("select[name=scope]", "tag")
    assert visible() == {"tag", "tag_value"}
    page.select_option("select[name=tag]", "project")
    page.fill("input[name=tag_value]", "search")
    page.select_option("select[name=period]", "weekly")
    page.fill("input[name=amount]", "25")
    page.check("input[name=enforced]")
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/budgets/")

    budget = Budget.objects.get()
    assert (budget.scope, budget.tag, budget.tag_value, budget.period, budget.enforced) == (
        "tag",
        "project",
        "search",
        "weekly",
        True,
    )
    row = page.locator("tr", has_text="Project search")
    assert "Week" in row.inner_text() and "Enforced" in row.inner_text()
    assert errors == []
