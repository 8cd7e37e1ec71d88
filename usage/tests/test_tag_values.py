"""The bound on distinct tag values (usage.bounds.TAG_MAX_VALUES per tag key, account and UTC
day): a new value past it is refused naming the field, never cut short or merged; values the
day already has always pass; and checking costs at most one query per batch."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from providers.services import ingest_key_create
from providers.tests.factories import AccountFactory, provider
from usage.ingest_apis import ingest_items
from usage.models import UsageRecord
from usage.services import tag_values
from usage.tests.rollup_check import assert_rollups_match_records

pytestmark = pytest.mark.django_db

PROBLEM = (
    "this account already has 3 distinct {tag} values this UTC day; "
    "reuse one of them or tag with fewer distinct values"
)


@pytest.fixture(autouse=True)
def _three_values_a_day(monkeypatch):
    monkeypatch.setattr(tag_values, "TAG_MAX_VALUES", 3)  # 1,000 in production


def _key():
    account = AccountFactory(provider=provider("openai"))
    _, key = ingest_key_create(account=account, name="k")
    return key


def _item(request_id: str, day: str = "2026-11-03", **tags) -> dict:
    return {
        "request_id": request_id,
        "occurred_at": f"{day}T10:00:00Z",
        "model": "gpt-4o",
        "usage": {"prompt_tokens": 10},
        "tags": tags,
    }


def _outcome(key, items) -> list[tuple[str, str]]:
    return [(r.status, r.reason) for r in ingest_items(key=key, items=items)]


def test_it_refuses_new_values_past_the_bound_and_keeps_taking_known_ones():
    key = _key()
    first = [_item(f"r{n}", project=p) for n, p in enumerate(["e", "d", "c", "b", "a"])]
    # Admitted in sorted order, whatever the batch's order: a, b and c; d and e are refused.
    reason = f"tags.project: {PROBLEM.format(tag='project')}"
    assert _outcome(key, first) == [
        ("rejected", reason),
        ("rejected", reason),
        ("created", ""),
        ("created", ""),
        ("created", ""),
    ]
    # A new process reads the day's values from the roll-up: d is still one too many.
    tag_values.tag_values_forget()
    assert _outcome(key, [_item("s1", project="d"), _item("s2", project="a")]) == [
        ("rejected", reason),
        ("created", ""),
    ]
    # Each tag key has its own bound, as has each day.
    assert _outcome(key, [_item("t1", project="a", user="u1", feature="f1")]) == [("created", "")]
    assert _outcome(key, [_item("t2", day="2026-11-04", project="z")]) == [("created", "")]
    # Refused values were never stored, cut or merged into another value.
    stored = sorted(UsageRecord.objects.values_list("tags__project", flat=True))
    assert stored == ["a", "a", "a", "b", "c", "z"]
    assert_rollups_match_records()


def test_another_account_has_its_own_bound():
    full, empty = _key(), _key()
    _outcome(full, [_item(f"r{n}", feature=f) for n, f in enumerate("abc")])
    assert _outcome(full, [_item("x", feature="d")])[0][0] == "rejected"
    assert _outcome(empty, [_item("x", feature="d")]) == [("created", "")]


def test_it_reads_the_days_values_at_most_once_a_batch_and_not_at_all_once_seen():
    key = _key()

    def reads(items) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert all(status == "created" for status, _ in _outcome(key, items))
        return sum('FROM "usage_dailyattribution"' in q["sql"] for q in captured.captured_queries)

    assert reads([_item(f"a{n}", project="p", user=f"u{n % 2}") for n in range(10)]) == 1
    assert reads([_item(f"b{n}", project="p", user=f"u{n % 2}") for n in range(10)]) == 0
    assert reads([_item("c", project="p", user="u2")]) == 1  # a value not seen yet
    assert reads([_item("d")]) == 0  # no tags: nothing to check
