"""In Debian's chromium: an owner invites a viewer, who sees the team's dashboard grouped by
project and cannot change anything; a member adds a manual entry that the owner finds in the
audit log."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime

import pytest
import requests

from accounts.models import User, Workspace

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's loop runs in this thread

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]
PASSWORD = "a-long-browser-test-passphrase"


def _log_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/")


def _invite_link(page, base: str, role: str) -> str:
    page.goto(f"{base}/workspace/")
    page.get_by_test_id("invite-form").locator("select[name=role]").select_option(role)
    page.get_by_test_id("invite-form").get_by_role("button").click()
    page.wait_for_url(f"{base}/workspace/")
    link = page.get_by_test_id("new-invite-url").inner_text()
    assert re.fullmatch(rf"{re.escape(base)}/invites/ctv_[\w-]+/", link)
    return link


def _sign_up_through(page, base: str, link: str, username: str) -> None:
    """A newcomer opens the link, signs up from it, comes back to it and joins."""
    page.goto(link)
    page.locator("main").get_by_role("link", name="sign up").click()
    page.fill("input[name=username]", username)
    page.fill("input[name=email]", f"{username}@example.com")
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(link)
    page.get_by_role("button", name=re.compile(r"^Join Acme")).click()
    page.wait_for_url(f"{base}/")


def _record_tagged_usage(base: str, workspace: Workspace) -> None:
    """Three OpenRouter calls that carry their own cost, tagged with two projects."""
    from providers.models import Provider
    from providers.services import account_create, ingest_key_create

    account = account_create(
        workspace=workspace, provider=Provider.objects.get(slug="openrouter"), name="Router"
    )
    raw, _ = ingest_key_create(account=account, name="backend")
    now = datetime.now(UTC).isoformat()
    events = [
        (f"gen-{i}", project, cost)
        for i, (project, cost) in enumerate(
            [("search", "0.25"), ("search", "0.50"), ("chat", "1.25")]
        )
    ]
    body = [
        {
            "request_id": request_id,
            "occurred_at": now,
            "model": "openai/gpt-4o-mini",
            "usage": {"prompt_tokens": 100, "completion_tokens": 10, "cost": cost},
            "tags": {"project": project},
        }
        for request_id, project, cost in events
    ]
    answer = requests.post(
        f"{base}/api/usage/events",
        json=body,
        headers={"Authorization": f"Bearer {raw}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert [e["status"] for e in answer.json()["results"]] == ["created"] * 3


def test_an_owner_invites_a_viewer_and_a_member_and_the_log_shows_the_members_entry(
    browser, live_server
):
    base = live_server.url
    errors: list[str] = []

    def watch(page):
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on(
            "response",
            lambda r: (
                errors.append(f"{r.status} {r.url}")
                if r.status >= 400 and "favicon" not in r.url and "/accounts/add/" not in r.url
                else None
            ),
        )
        return page

    User.objects.create_user("olivia", "olivia@example.com", PASSWORD)
    owner = watch(browser.new_context().new_page())
    _log_in(owner, base, "olivia")
    owner.goto(f"{base}/workspaces/new/")
    owner.fill("input[name=name]", "Acme")
    owner.fill("input[name=time_zone]", "UTC")
    owner.click("main button[type=submit]")
    owner.wait_for_url(f"{base}/workspace/")
    _record_tagged_usage(base, Workspace.objects.get(name="Acme"))

    # The viewer joins from a link and sees the team's spend by project.
    viewer_link = _invite_link(owner, base, "viewer")
    viewer = watch(browser.new_context().new_page())
    _sign_up_through(viewer, base, viewer_link, "vic")
    assert viewer.locator("#workspace-select option:checked").inner_text() == "Acme"
    assert viewer.get_by_test_id("period-total").inner_text() == "$2.00"  # 0.25 + 0.50 + 1.25
    viewer.select_option("#group-by-select", "project")
    viewer.wait_for_url(re.compile(r".*group_by=project.*"))
    table = viewer.get_by_test_id("breakdown")
    table.locator("tr", has_text="search").wait_for()
    assert "$0.75" in table.locator("tr", has_text="search").inner_text()  # 0.25 + 0.50
    assert "$1.25" in table.locator("tr", has_text="chat").inner_text()
    assert viewer.get_by_test_id("breakdown-total").inner_text() == "$2.00"
    # ... and can change nothing: no controls offered, and the routes refuse.
    assert viewer.get_by_role("link", name="Add entry").count() == 0
    viewer.goto(f"{base}/accounts/")
    assert viewer.get_by_role("link", name="Add account").count() == 0
    assert viewer.get_by_role("link", name="Edit").count() == 0
    assert viewer.goto(f"{base}/accounts/add/").status == 403
    # The link worked once.
    stranger = browser.new_context().new_page()
    User.objects.create_user("sam", "sam@example.com", PASSWORD)
    _log_in(stranger, base, "sam")
    stranger.goto(viewer_link)
    assert "not valid any more" in stranger.content()

    # A member joins and adds a manual entry; the owner finds it in the audit log.
    member = watch(browser.new_context().new_page())
    _sign_up_through(member, base, _invite_link(owner, base, "member"), "mia")
    member.get_by_role("link", name="Add entry").click()
    member.select_option("select[name=account]", label="Router (OpenRouter)")
    member.fill("input[name=date]", datetime.now(UTC).date().isoformat())
    member.fill("input[name=description]", "Team workshop credits")
    member.fill("input[name=cost]", "3.00")
    member.click("main button[type=submit]:not([name])")
    member.wait_for_url(f"{base}/")
    assert member.get_by_test_id("period-total").inner_text() == "$5.00"  # 2.00 + 3.00

    owner.goto(f"{base}/audit/")
    row = owner.locator("tr", has_text="Team workshop credits")
    assert "mia" in row.inner_text() and "Created" in row.inner_text()
    # The viewer's session never reached the log.
    assert viewer.goto(f"{base}/audit/").status == 403
    assert [e for e in errors if "/audit/" not in e] == []
