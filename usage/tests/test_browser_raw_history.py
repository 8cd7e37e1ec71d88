"""In Debian's chromium: the export form shows the raw-history notice while the chosen start
day is before the raw history (static/js/app.js), and only for sources that lose records."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

from accounts.models import User
from usage.models import RawHistoryPrune

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's loop runs in this thread

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]
PASSWORD = "a-long-browser-test-passphrase"


def test_it_shows_the_export_notice_while_the_start_is_before_the_raw_history(page, live_server):
    base = live_server.url
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    RawHistoryPrune.objects.create(before=datetime(2020, 1, 1, tzinfo=UTC))
    User.objects.create_user("exporter", "exporter@example.com", PASSWORD)
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", "exporter")
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/")

    page.goto(f"{base}/export/")
    assert "Raw history starts on 1 Jan 2020" in page.inner_text("main")
    notice = page.locator("[data-testid=raw-history-notice]")
    assert notice.is_hidden()  # the default start, the 1st of this month, is within
    page.fill("input[name=start]", "2019-12-15")
    assert notice.is_visible()
    assert "before 1 Jan 2020 were removed" in notice.inner_text()
    page.select_option("select[name=source]", "official")  # official rows are all kept
    assert notice.is_hidden()
    page.select_option("select[name=source]", "estimated")
    assert notice.is_visible()
    page.fill("input[name=start]", "2020-01-01")  # the first kept day
    assert notice.is_hidden()
    assert errors == []
