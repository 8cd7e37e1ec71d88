"""Small things a person notices on a page: an unknown budget status, unnamed models, the
favicon, an over-long filter, the Delete button's colours."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import time_machine
from django.conf import settings
from django.urls import reverse

from accounts.tests.factories import UserFactory
from providers.tests.factories import AccountFactory, provider
from usage.extraction import RequestUsage
from usage.services.records import manual_entry_create
from usage.services.requests import RequestEvent, request_events_record

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _unpriced(account, request_id: str):
    request_events_record(
        account=account,
        events=[
            RequestEvent(
                request_id=request_id,
                usage=RequestUsage(model="mystery-model", input_tokens=700, output_tokens=300),
                occurred_at=datetime(2026, 11, 19, 9, 0, tzinfo=UTC),
            )
        ],
    )


@time_machine.travel(NOW, tick=False)
def test_it_says_budget_status_unknown_when_all_spend_is_unpriced(client):
    user = UserFactory()
    account = AccountFactory(
        workspace=user.personal_workspace,
        provider=provider("groq"),
        name="Groq",
        monthly_budget=Decimal("20"),
    )
    _unpriced(account, "r1")
    _unpriced(account, "r2")
    client.force_login(user)

    html = client.get(reverse("dashboard")).content.decode()

    card = html.split(f'id="card-{account.pk}"', 1)[1].split("</article>", 1)[0]
    assert "2 unpriced requests — budget status unknown" in card
    assert "0.0% of" not in card and ">Ok<" not in card
    assert "status-unknown" in html.split(f'id="card-{account.pk}"', 1)[0][-120:]


@time_machine.travel(NOW, tick=False)
def test_it_says_budget_status_unknown_on_the_budgets_page_too(client):
    # The same class of defect as the dashboard card: a budget over all-unpriced spend is not
    # "OK 0 %". The account's monthly budget is listed on the Budgets page.
    user = UserFactory()
    account = AccountFactory(
        workspace=user.personal_workspace,
        provider=provider("groq"),
        name="Groq",
        monthly_budget=Decimal("20"),
    )
    _unpriced(account, "r1")
    client.force_login(user)

    html = client.get(reverse("budget-list")).content.decode()

    row = html.split("<tbody>", 1)[1].split("</tr>", 1)[0]
    assert "Unknown: all spend unpriced" in row
    assert "+ 1 unpriced request" in row
    assert ">OK<" not in row and "0%" not in row


@time_machine.travel(NOW, tick=False)
def test_it_still_shows_the_percentage_when_some_spend_is_priced(client):
    user = UserFactory()
    account = AccountFactory(
        workspace=user.personal_workspace,
        provider=provider("groq"),
        name="Groq",
        monthly_budget=Decimal("20"),
    )
    _unpriced(account, "r1")
    manual_entry_create(account=account, day=date(2026, 11, 19), cost=Decimal("5"))
    client.force_login(user)

    card = client.get(reverse("dashboard")).content.decode().split(f'id="card-{account.pk}"')[1]

    # $5 of $20 = 25.0 %, priced spend only.
    assert "25.0% of $20.00" in card.split("</article>", 1)[0]
    assert "budget status unknown" not in card.split("</article>", 1)[0]


@time_machine.travel(NOW, tick=False)
def test_it_names_unnamed_models_in_top_models_by_their_description(client):
    user = UserFactory()
    account = AccountFactory(
        workspace=user.personal_workspace, provider=provider("copilot"), name="Copilot"
    )
    manual_entry_create(
        account=account,
        day=date(2026, 11, 1),
        description="Copilot Business, 10 seats",
        cost=Decimal("190"),
    )
    manual_entry_create(
        account=account, day=date(2026, 11, 2), description="Invoice 42", cost=Decimal("1")
    )
    manual_entry_create(
        account=account, day=date(2026, 11, 3), description="Invoice 42", cost=Decimal("1")
    )
    client.force_login(user)

    html = client.get(reverse("dashboard")).content.decode()

    table = html.split('data-testid="top-models"', 1)[1].split("</table>", 1)[0]
    row = re.search(r'<th scope="row">(.*?)</th>', table).group(1)
    # Most recent first, each description once.
    assert row == 'Invoice 42; Copilot Business, 10 seats <small class="muted">(no model)</small>'


def test_it_serves_a_favicon_and_links_it():
    icon = Path(settings.BASE_DIR) / "static" / "favicon.svg"
    assert icon.read_text().startswith("<svg xmlns=")


def test_it_answers_favicon_ico_with_the_svg_icon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 302
    assert response["Location"] == "/static/favicon.svg"
    page = client.get(reverse("login")).content.decode()
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page


def test_it_bounds_the_history_filter_and_answers_an_overlong_one_in_place(client):
    user = UserFactory()
    client.force_login(user)

    form = client.get(reverse("history")).content.decode()
    assert re.search(r'<input type="text" name="model" maxlength="200"', form)

    response = client.get(reverse("history"), {"model": "x" * 5000})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Ensure this value has at most 200 characters (it has 5000)." in html
    assert "<main>" in html  # the app's page, not a bare server error

    htmx = client.get(reverse("history"), {"model": "x" * 5000}, HTTP_HX_REQUEST="true")
    assert htmx.status_code == 200  # HTMX swaps only 2xx answers: the errors show in place
    assert "Fix the filters above." in htmx.content.decode()


def test_it_draws_a_link_style_danger_button_readably():
    css = (Path(settings.BASE_DIR) / "static" / "css" / "app.css").read_text()
    # The alerts page's "Delete" is button.link.danger: it was accent blue on critical red.
    rule = re.search(r"button\.link\.danger\s*\{([^}]*)\}", css).group(1)
    assert "background:none" in rule.replace(" ", "")
    assert "color:var(--critical)" in rule.replace(" ", "")
