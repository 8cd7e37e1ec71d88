"""Every page passes the Content-Security-Policy in chromium: no inline script or style, no eval.

The pages are found, not listed: starting from the navigation, every same-origin link on every
page reached is followed (one page per URL shape, so /accounts/3/ and /accounts/4/ count once),
so a page added later is covered as soon as something links to it. Then the API docs, an HTMX
swap, and the admin (its index, every changelist, a change form from each that has rows).
"""

from __future__ import annotations

import os
import re
from datetime import date
from decimal import Decimal
from urllib.parse import urljoin, urlsplit

import pytest
from django.core.management import call_command
from django.urls import reverse
from playwright.sync_api import Error as PlaywrightError

from accounts.models import User

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]
PASSWORD = "a-long-browser-test-passphrase"
# Never followed: they change state on GET or leave the HTML app.
SKIP = re.compile(r"^/(logout|proxy|api/(?!docs/$)|admin/|static/|media/)|/(delete|revoke)/?$")
MAX_PAGES = 80

# Runs in every document before its own scripts; CDP-injected, so CSP does not apply to it.
LISTEN = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"}`
    + ` at ${e.sourceFile || document.location.pathname}:${e.lineNumber} ${e.sample || ""}`);
});
"""


class Watch:
    """Collects CSP complaints from the console and from securitypolicyviolation events."""

    def __init__(self, page):
        self.page = page
        self.problems: list[str] = []
        page.add_init_script(LISTEN)
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"{page.url}: {exc}"))

    def _console(self, message) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            self.problems.append(f"{self.page.url}: {message.text}")

    def visit(self, url: str) -> bool:
        """Open url and check it; False when it is a download rather than a page."""
        try:
            response = self.page.goto(url)
        except PlaywrightError as exc:
            if "Download is starting" in str(exc):
                return False
            raise
        assert response is not None, url
        assert response.status < 400 or response.status == 404, (url, response.status)
        policy = response.headers.get("content-security-policy", "")
        assert "script-src 'self'" in policy and "unsafe" not in policy, (url, policy)
        self.settle()
        return True

    def settle(self) -> None:
        self.page.wait_for_timeout(100)  # violation events are queued as tasks
        self.problems += [f"{self.page.url}: {v}" for v in self.page.evaluate("window.__csp")]


def _shape(path: str) -> str:
    return re.sub(r"/\d+(?=/|$)", "/N", path)


def _links(page, base: str, selector: str) -> list[str]:
    hrefs = page.eval_on_selector_all(selector, "els => els.map(a => a.getAttribute('href'))")
    found = []
    for href in hrefs:
        if not href or href.startswith(("#", "mailto:", "javascript:")):
            continue
        url = urljoin(page.url, href)
        if url.startswith(base) and not SKIP.search(urlsplit(url).path):
            found.append(url)
    return found


def _crawl(watch: Watch, page, base: str, *, also: list[str]) -> list[str]:
    """Breadth-first from the navigation (then `also`); returns the paths visited."""
    watch.visit(f"{base}/")
    queue = _links(page, base, "header a[href], footer a[href]")
    assert len(queue) >= 8, queue  # the nav really was found
    queue += also
    seen: set[str] = {"/"}
    visited = ["/"]
    while queue and len(visited) < MAX_PAGES:
        url = queue.pop(0)
        parts = urlsplit(url)
        key = _shape(parts.path) + ("?" if parts.query else "")
        if key in seen:
            continue
        seen.add(key)
        if not watch.visit(url):
            continue  # a download (CSV/JSON export)
        visited.append(parts.path)
        queue += _links(page, base, "a[href]")
    return visited


def _data(user: User) -> list[str]:
    """Something on every page: demo spend, a budget past its thresholds (alerts), a channel,
    a failed sync. Returns the paths no link leads to yet (sync history shows after a sync)."""
    from alerts.services import budget_create, channel_create
    from providers.models import ProviderAccount
    from usage.models import SyncRun

    call_command("seed_demo", "--user", user.username, "--days", "10")
    budget_create(workspace=user.personal_workspace, scope="overall", amount=Decimal("5"))
    channel_create(workspace=user.personal_workspace, kind="email", target="ops@example.com")
    account = (
        ProviderAccount.objects.filter(workspace=user.personal_workspace).order_by("pk").first()
    )
    today = date.today()
    SyncRun.objects.create(
        account=account,
        window_start=today,
        window_end=today,
        status=SyncRun.Status.FAILED,
        error_message="provider error (500): upstream said no",
    )
    return [reverse("account-sync-history", args=[account.pk])]


def test_every_page_renders_without_a_csp_violation(page, live_server):
    base = live_server.url
    user = User.objects.create_superuser("cspadmin", "csp@example.com", PASSWORD)
    unlinked = _data(user)
    watch = Watch(page)

    watch.visit(f"{base}/signup/")  # 404 when sign-up is off: still a page to check
    watch.visit(f"{base}/login/")
    # The watch sees a violation (a control: a style="" set from script is refused).
    page.evaluate("document.body.setAttribute('style', 'color: red')")
    watch.settle()
    assert any("style-src" in p for p in watch.problems), watch.problems
    watch.problems.clear()

    page.fill("input[name=username]", "cspadmin")
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/")
    watch.settle()

    visited = _crawl(watch, page, base, also=[base + path for path in unlinked])
    for path in ("/accounts/", "/budgets/", "/alerts/", "/profile/", "/api/docs/", *unlinked):
        assert path in visited, visited
    assert watch.problems == []

    # Scripted pages really ran: charts drawn, budget bars filled, Swagger UI built.
    watch.visit(f"{base}/")
    page.wait_for_function("() => !!Chart.getChart(document.getElementById('chart-daily'))")
    widths = page.eval_on_selector_all("[data-width]", "els => els.map(e => e.style.width)")
    assert widths and all(w.endswith("%") for w in widths), widths
    page.click("nav.period-picker >> text=Last 7 days")  # an HTMX swap
    page.wait_for_url("**/?period=7d")

    page.wait_for_function("() => !!Chart.getChart(document.getElementById('chart-daily'))")
    watch.settle()
    watch.visit(f"{base}/api/docs/")
    page.wait_for_selector(".swagger-ui .opblock")
    page.locator(".opblock-summary").first.click()
    watch.settle()

    assert watch.problems == []

    # The admin, as a superuser: index, every changelist, a change form where there are rows.
    watch.visit(f"{base}/admin/")
    changelists = sorted(set(_links_admin(page, base)))
    assert len(changelists) >= 5, changelists
    for url in changelists:
        watch.visit(url)
        rows = page.locator("#result_list tbody th a")
        if rows.count():
            watch.visit(urljoin(page.url, rows.first.get_attribute("href")))
    watch.visit(f"{base}/admin/auth/group/add/")

    watch.visit(f"{base}/no-such-page/")  # the 404 page too
    assert watch.problems == []


def _links_admin(page, base: str) -> list[str]:
    hrefs = page.eval_on_selector_all(
        "#content-main th[scope=row] a[href]", "els => els.map(a => a.getAttribute('href'))"
    )
    return [urljoin(base, h) for h in hrefs]
