"""End-to-end flows in Debian's chromium (Playwright, never `playwright install`)."""

from __future__ import annotations

import csv
import io
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.management import call_command

from accounts.models import User

# Playwright's sync API runs an event loop in this thread; Django's ORM calls from the test
# itself (fixtures, assertions) are still plain synchronous code.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]
PASSWORD = "a-long-browser-test-passphrase"


def _sign_up(page, base: str, username: str) -> None:
    page.goto(f"{base}/signup/")
    page.fill("input[name=username]", username)
    page.fill("input[name=email]", f"{username}@example.com")
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/**")


def _add_account(page, base: str, name: str, budget: str = "") -> None:
    page.goto(f"{base}/accounts/add/")
    page.select_option("select[name=provider]", label="Groq")
    page.fill("input[name=name]", name)
    if budget:
        page.fill("input[name=monthly_budget]", budget)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/accounts/**")


def _add_manual_entry(page, base: str, account: str, day: str, cost: str) -> None:
    page.goto(f"{base}/usage/new/")
    page.select_option("select[name=account]", label=account)
    page.fill("input[name=date]", day)
    page.fill("input[name=description]", "Team plan invoice")
    page.fill("input[name=cost]", cost)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/")


def test_it_goes_from_sign_up_to_dashboard_chart_and_csv_export(page, live_server, tmp_path):
    base = live_server.url
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    _sign_up(page, base, "browseruser")
    page.goto(f"{base}/")
    assert page.get_by_test_id("empty-state").is_visible()

    _add_account(page, base, "Groq team")
    today = datetime.now(UTC).date()
    _add_manual_entry(page, base, "Groq team (Groq)", today.isoformat(), "42.50")

    page.goto(f"{base}/")
    assert page.get_by_test_id("period-total").inner_text() == "$42.50"
    page.wait_for_function("() => !!Chart.getChart(document.getElementById('chart-daily'))")
    assert page.evaluate(
        "() => ['chart-daily', 'chart-providers', 'chart-forecast']"
        ".every(id => Chart.getChart(document.getElementById(id)) !== undefined)"
    )
    # The HTMX period picker swaps the content and the charts are drawn again.
    page.click("nav.period-picker >> text=Last 7 days")
    page.wait_for_url("**/?period=7d")
    page.wait_for_function("() => !!Chart.getChart(document.getElementById('chart-daily'))")
    assert page.locator("h1").first.inner_text() == "Last 7 days"
    assert page.get_by_test_id("period-total").inner_text() == "$42.50"

    page.goto(f"{base}/export/")
    page.fill("input[name=start]", (today - timedelta(days=1)).isoformat())
    page.fill("input[name=end]", today.isoformat())
    with page.expect_download() as info:
        page.click("button[name=download]")
    path = tmp_path / "export.csv"
    info.value.save_as(path)
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")  # UTF-8 BOM, for Excel
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    assert [(r["account"], r["provider"], r["source"], r["cost"]) for r in rows] == [
        ("Groq team", "groq", "manual", "42.5")
    ]
    assert errors == []


def test_it_renders_the_demo_dashboard_readably(page, live_server, tmp_path):
    """Demo data on a wide screen; DASHBOARD_SCREENSHOT=docs/dashboard.png keeps the picture."""
    User.objects.create_user("demo", "demo@example.com", PASSWORD, time_zone="Europe/Berlin")
    call_command("seed_demo", "--user", "demo", "--days", "90")
    base = live_server.url
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", "demo")
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/")
    page.wait_for_function("() => !!Chart.getChart(document.getElementById('chart-forecast'))")
    assert page.get_by_test_id("unpriced").is_visible()  # the demo Groq model has no price
    assert page.get_by_test_id("top-models").locator("tbody tr").count() == 10
    out = Path(os.environ.get("DASHBOARD_SCREENSHOT") or tmp_path / "dashboard.png")
    page.screenshot(path=str(out), full_page=True)
    assert out.stat().st_size > 50_000


def test_it_raises_a_budget_alert_that_can_be_acknowledged(page, live_server):
    base = live_server.url
    _sign_up(page, base, "budgetuser")
    _add_account(page, base, "Groq team")
    today = datetime.now(UTC).date()
    _add_manual_entry(page, base, "Groq team (Groq)", today.isoformat(), "42.50")

    # $42.50 against a $40.00 budget: past 80 % and 100 %.
    page.goto(f"{base}/budgets/add/")
    page.select_option("select[name=scope]", value="overall")
    page.fill("input[name=amount]", "40")
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/budgets/")

    page.goto(f"{base}/alerts/")
    open_rows = page.locator("tbody tr", has=page.get_by_role("button", name="Acknowledge"))
    assert open_rows.count() >= 1
    row = open_rows.first
    row_id = row.get_attribute("id")
    row.get_by_role("button", name="Acknowledge").click()
    acknowledged = page.locator(f"#{row_id}")
    acknowledged.get_by_text("Acknowledged").wait_for()
    assert acknowledged.get_by_role("button", name="Acknowledge").count() == 0
    page.reload()
    assert "Acknowledged" in page.locator(f"#{row_id}").inner_text()
