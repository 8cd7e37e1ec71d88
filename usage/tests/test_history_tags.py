"""History filters by each attribution tag (project, user, feature): the page, its HTMX
results and `GET /api/usage/history` give the same records; a filter value past the tag bound
is an error in place (a 400 naming the field), never a cut-short match."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from accounts.tests.factories import UserFactory
from providers.tests.factories import AccountFactory, provider
from usage.extraction import RequestUsage
from usage.services.requests import RequestEvent, request_events_record

pytestmark = pytest.mark.django_db
AT = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def owner():
    user = UserFactory()
    account = AccountFactory(workspace=user.personal_workspace, provider=provider("openai"))
    events = [
        RequestEvent(
            request_id=request_id,
            usage=RequestUsage(model="gpt-4o-mini", input_tokens=10, found=True),
            occurred_at=AT,
            tags=tags,
        )
        for request_id, tags in [
            ("a", {"project": "apollo", "user": "ada", "feature": "search"}),
            ("b", {"project": "apollo", "user": "bob"}),
            ("c", {"project": "gemini-lab", "feature": "search"}),
            ("d", {}),
        ]
    ]
    request_events_record(account=account, events=events)
    return user


def shown_ids(page) -> set[str]:
    return {record.request_id for record in page.context["page"].object_list}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"project": "apollo"}, {"a", "b"}),
        ({"user": "ada"}, {"a"}),
        ({"feature": "search"}, {"a", "c"}),
        ({"project": "apollo", "feature": "search"}, {"a"}),  # every given tag must match
        ({"project": "apol"}, set()),  # exact values, not a substring
        ({}, {"a", "b", "c", "d"}),
    ],
)
def test_the_page_and_the_api_filter_by_each_tag_alike(client, owner, query, expected):
    client.force_login(owner)

    page = client.get(reverse("history"), query)
    api = client.get("/api/usage/history", query)

    assert page.status_code == 200
    assert shown_ids(page) == expected
    assert {row["request_id"] for row in api.json()["results"]} == expected


def test_an_overlong_tag_filter_is_an_error_in_place(client, owner):
    client.force_login(owner)

    page = client.get(reverse("history"), {"project": "p" * 201})
    api = client.get("/api/usage/history", {"project": "p" * 201})

    assert page.status_code == 400
    assert "at most 200 characters" in page.context["form"].errors["project"][0]
    assert api.status_code == 400
    assert "project" in api.json()


def test_the_page_and_the_api_filter_by_the_ingest_key_that_wrote_a_record(client):
    from providers.services import ingest_key_create

    user, stranger = UserFactory(), UserFactory()
    account = AccountFactory(workspace=user.personal_workspace, provider=provider("openai"))
    _, first = ingest_key_create(account=account, name="backend")
    _, second = ingest_key_create(account=account, name="batch jobs")
    usage = RequestUsage(model="gpt-4o-mini", input_tokens=10, found=True)
    for key, ids in ((first, ["k1", "k2"]), (second, ["k3"]), (None, ["k4"])):
        request_events_record(
            account=account,
            events=[RequestEvent(request_id=i, usage=usage, occurred_at=AT) for i in ids],
            ingest_key_id=key.pk if key else None,
        )
    client.force_login(user)
    page = client.get(reverse("history"), {"ingest_key": first.pk})
    assert shown_ids(page) == {"k1", "k2"}
    api = client.get("/api/usage/history", {"ingest_key": second.pk}).json()
    assert [(r["request_id"], r["ingest_key"]) for r in api["results"]] == [("k3", second.pk)]
    # Another workspace's key is no choice on the page (a 400 in place) and finds nothing in
    # the API: the records read are the workspace's own whatever the filter.
    client.force_login(stranger)
    assert client.get(reverse("history"), {"ingest_key": first.pk}).status_code == 400
    assert client.get("/api/usage/history", {"ingest_key": first.pk}).json()["count"] == 0
