"""The process-wide price book across nodes: a price changed on one is used by the others
within a version check, through the shared cache (settings.CACHE_SHARED, REDIS_URL).

Two `_SharedBook`s stand for two nodes' processes; Django's local-memory cache, which both see
here, stands for Redis (the two-node test, costtracker/tests/test_two_nodes.py, uses Redis).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from usage.models import Price
from usage.services import prices
from usage.services.prices import EPOCH, _SharedBook

pytestmark = pytest.mark.django_db

AT = datetime.fromisoformat("2026-11-15T12:00:00+00:00")


@pytest.fixture
def gpt_x():
    from providers.models import Provider

    openai = Provider.objects.get(slug="openai")
    return Price.objects.create(
        provider=openai,
        model="gpt-x",
        valid_from=EPOCH,
        origin=Price.Origin.ADMIN,
        input_per_token=Decimal("0.000001"),
        output_per_token=Decimal("0.000002"),
    )


def input_rate(book, price: Price) -> Decimal:
    return book.rule_for(provider=price.provider, model="gpt-x", at=AT).input_per_token


@pytest.fixture
def shared(settings, monkeypatch):
    settings.CACHE_SHARED = True
    cache.delete(prices.PRICE_VERSION_KEY)
    yield
    cache.delete(prices.PRICE_VERSION_KEY)


def test_it_uses_a_price_changed_on_another_node_after_its_next_version_check(
    shared, gpt_x, monkeypatch, django_capture_on_commit_callbacks
):
    here, there = _SharedBook(), _SharedBook()
    assert input_rate(here.get(), gpt_x) == Decimal("0.000001")
    assert input_rate(there.get(), gpt_x) == Decimal("0.000001")

    with django_capture_on_commit_callbacks(execute=True):
        gpt_x.input_per_token = Decimal("0.000003")
        gpt_x.save()  # on "there": the admin's save

    # Within PRICE_VERSION_CHECK_SECONDS a process keeps its book without asking the cache.
    assert input_rate(here.get(), gpt_x) == Decimal("0.000001")
    monkeypatch.setattr(prices, "PRICE_VERSION_CHECK_SECONDS", 0.0)
    here._check_at = 0.0
    assert input_rate(here.get(), gpt_x) == Decimal("0.000003")


def test_it_keeps_its_book_between_checks_without_a_query(shared, gpt_x):
    book = _SharedBook()
    first = book.get()
    input_rate(first, gpt_x)
    with CaptureQueriesContext(connection) as queries:
        assert book.get() is first
    assert len(queries) == 0


def test_without_a_shared_cache_nothing_is_read_from_the_cache(settings, gpt_x, monkeypatch):
    settings.CACHE_SHARED = False

    def refuse(*args, **kwargs):
        raise AssertionError("the cache was read")

    monkeypatch.setattr(prices, "_price_version", refuse)
    monkeypatch.setattr(prices, "PRICE_VERSION_CHECK_SECONDS", 0.0)
    book = _SharedBook()
    first = book.get()
    assert book.get() is first  # as before: renewed only after PRICE_CACHE_SECONDS


def test_an_unreadable_shared_cache_renews_the_book_at_every_check(shared, monkeypatch):
    def broken(*args, **kwargs):
        raise ConnectionError("redis is down")

    monkeypatch.setattr(cache, "get", broken)
    monkeypatch.setattr(prices, "PRICE_VERSION_CHECK_SECONDS", 0.0)
    book = _SharedBook()
    first = book.get()
    assert book.get() is not first
