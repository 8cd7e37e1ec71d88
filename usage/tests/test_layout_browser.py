"""Every page stands on a phone and on a wide screen (Debian chromium via Playwright).

Pages are discovered, not listed: the main navigation's links, then the links inside each of
those pages (accounts, their sync history, ingest keys, budgets, …), one page per URL shape.
A page added later is covered as soon as something links to it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from usage.tests.messy_data import seed_messy

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]
PASSWORD = "a-long-browser-test-passphrase"
VIEWPORTS = [(390, 844), (1440, 900)]
SKIP = re.compile(r"^/(admin|api|proxy|static)/|^/logout/|/delete/?$|\.(csv|json)$")
# Overflow that is not inside a scrolling box: what made the whole page scroll sideways.
OVERFLOWING = """() => {
  const out = [];
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.right <= window.innerWidth + 1) continue;
    let p = el.parentElement, clipped = false;
    while (p) {
      if (getComputedStyle(p).overflowX !== 'visible') { clipped = true; break; }
      p = p.parentElement;
    }
    const name = `${el.tagName.toLowerCase()}.${el.className}`;
    if (!clipped) out.push(`${name} → ${Math.round(r.right)}px`);
  }
  return out.slice(0, 5);
}"""
# Buttons whose text does not stand out from what is behind it (WCAG AA: 4.5:1).
LOW_CONTRAST = """() => {
  const parse = c => { const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const p = m[1].split(',').map(Number);
    return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1}; };
  const lum = ({r, g, b}) => {
    const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const behind = el => { for (let e = el; e; e = e.parentElement) {
    const c = parse(getComputedStyle(e).backgroundColor); if (c && c.a > 0.5) return c; }
    return {r: 255, g: 255, b: 255, a: 1}; };
  const out = [];
  for (const el of document.querySelectorAll('button, a.button')) {
    if (!el.offsetParent) continue;
    const l1 = lum(parse(getComputedStyle(el).color)), l2 = lum(behind(el));
    const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    if (ratio < 4.5) out.push(`${el.textContent.trim()}: ${ratio.toFixed(2)}:1`);
  }
  return out;
}"""


def _shape(path: str) -> str:
    return re.sub(r"/\d+(?=/|$)", "/N", path)


def _links(page, base: str, selector: str) -> list[str]:
    hrefs = page.eval_on_selector_all(selector, "els => els.map(a => a.href)")
    host = urlsplit(base).netloc
    paths = []
    for href in hrefs:
        parts = urlsplit(href)
        if parts.netloc != host or SKIP.search(parts.path):
            continue
        paths.append(parts.path + (f"?{parts.query}" if parts.query else ""))
    return paths


def _discover(page, base: str) -> list[str]:
    page.goto(f"{base}/")
    nav = _links(page, base, "header a[href]")
    assert len(nav) >= 8, nav  # dashboard … export, profile
    seen: dict[str, str] = {}
    for path in nav:
        seen.setdefault(_shape(urlsplit(path).path), path)
    for path in list(nav):
        page.goto(base + path)
        for link in _links(page, base, "main a[href]"):
            seen.setdefault(_shape(urlsplit(link).path), link)
    return list(seen.values())


def _log_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/")


def test_it_never_scrolls_sideways_on_a_phone_or_a_wide_screen(page, live_server, tmp_path):
    seed_messy(username="messy", password=PASSWORD)
    base = live_server.url
    shots = Path(os.environ.get("LAYOUT_SCREENSHOTS") or tmp_path)
    _log_in(page, base, "messy")
    paths = _discover(page, base)
    shapes = {_shape(urlsplit(p).path) for p in paths}
    # The pages the issue names are among those found.
    for must in ["/accounts/", "/accounts/N/syncs/", "/reconciliation/", "/budgets/", "/alerts/"]:
        assert must in shapes, sorted(shapes)
    paths.append("/usage/history/?source=manual")

    problems, unreadable, missing = [], [], []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    for width, height in VIEWPORTS:
        page.set_viewport_size({"width": width, "height": height})
        for path in paths:
            response = page.goto(base + path)
            assert response is not None and response.status == 200, (path, response)
            # Details on demand (a sync error's full text) must not widen the page either.
            page.eval_on_selector_all("details", "els => els.forEach(d => d.open = true)")
            scroll_width = page.evaluate("document.documentElement.scrollWidth")
            inner_width = page.evaluate("window.innerWidth")
            if scroll_width > inner_width:
                problems.append((width, path, scroll_width, page.evaluate(OVERFLOWING)))
            if width < 500 and path == "/":
                # The whole navigation is on screen, wrapped, not pushed off to the right.
                for box in page.locator("header nav a").evaluate_all(
                    "els => els.map(a => a.getBoundingClientRect().right)"
                ):
                    if box > width:
                        problems.append((width, "header nav", box, []))
            if width > 1000 and (low := page.evaluate(LOW_CONTRAST)):
                unreadable.append((path, low))
            name = re.sub(r"[^a-z0-9]+", "_", path.lower()).strip("_") or "dashboard"
            page.screenshot(path=str(shots / f"{width}_{name}.png"), full_page=True)
    assert problems == []
    assert unreadable == []  # e.g. the alerts page's Delete was blue on red
    assert missing == []  # the favicon included
    assert len(paths) >= 12  # nav pages plus account, sync history, ingest keys, budget pages
