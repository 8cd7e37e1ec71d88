"""The effective-dated price book: lookup, import, re-pricing.

History is never rewritten: an import that sees a changed price closes the current row
(valid_to) and opens a new one, so a request is priced by the row valid at its time. Prices an
administrator sets (origin "admin") win over imported ones.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_record
from providers.models import Provider
from usage import bounds
from usage.models import ModelAlias, Price, RecordStatus, Source, UsageRecord
from usage.pricing import SHIPPED_PRICES_PATH, candidate_model_names, litellm_to_prices
from usage.pricing import Price as PriceRule

logger = logging.getLogger(__name__)

PRICE_FIELDS = [f.name for f in dataclasses.fields(PriceRule)]
_PRICE_COLUMNS = ", ".join(f.column for f in Price._meta.concrete_fields)
# The first import covers all earlier usage: without it nothing before today could be priced.
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def price_rule(row: Price) -> PriceRule:
    return PriceRule(**{f: getattr(row, f) for f in PRICE_FIELDS})


class PriceBook:
    """Price lookups for one batch of work.

    Lookup order: admin alias → exact name → names without provider prefix or date suffix.
    At each name an admin-set row beats an imported one. Every dated row of the candidate
    names is fetched once per (provider, model) and the row valid at each request's own time
    is picked in memory, so one batch may span a price change (or reprice many days) with one
    query per model.
    """

    def __init__(self) -> None:
        self._candidates: dict[tuple[int, str], list[Price]] = {}
        self._aliases: dict[int, dict[str, str]] = {}
        self._rules: dict[int, PriceRule] = {}

    def _alias(self, provider_id: int, model: str) -> str:
        if provider_id not in self._aliases:
            # Hand-written queries: on the ingestion hot path, compiling an ORM query costs
            # more CPU than the database spends answering it.
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT alias, model FROM {ModelAlias._meta.db_table} WHERE provider_id = %s",
                    [provider_id],
                )
                self._aliases[provider_id] = dict(cursor.fetchall())
        return self._aliases[provider_id].get(model, model)

    def _rows(self, provider: Provider, model: str) -> list[Price]:
        key = (provider.pk, model)
        if key not in self._candidates:
            names = candidate_model_names(provider.slug, self._alias(provider.pk, model))
            rows = []
            if names:
                marks = ", ".join(["%s"] * len(names))
                rows = list(
                    Price.objects.raw(
                        f"SELECT {_PRICE_COLUMNS} FROM {Price._meta.db_table} "
                        f"WHERE provider_id = %s AND model IN ({marks})",
                        [provider.pk, *names],
                    )
                )
            rank = {name: i for i, name in enumerate(names)}
            origin = {Price.Origin.ADMIN: 0, Price.Origin.IMPORTED: 1}
            # Preference order; the first row valid at a given time wins.
            rows.sort(
                key=lambda r: (rank[r.model], origin.get(r.origin, 2), -r.valid_from.timestamp())
            )
            self._candidates[key] = rows
        return self._candidates[key]

    def row_for(self, *, provider: Provider, model: str, at: datetime) -> Price | None:
        for row in self._rows(provider, model):
            if row.valid_from <= at and (row.valid_to is None or at < row.valid_to):
                return row
        return None

    def rule_for(self, *, provider: Provider, model: str, at: datetime) -> PriceRule | None:
        row = self.row_for(provider=provider, model=model, at=at)
        if row is None:
            return None
        if row.pk not in self._rules:
            self._rules[row.pk] = price_rule(row)
        return self._rules[row.pk]


# Prices change rarely; a lookup per proxied call or ingested batch would be a query on the hot
# path. A price edit reaches new requests within this many seconds (`reprice` fixes older ones).
PRICE_CACHE_SECONDS = 30.0
# Several nodes (settings.CACHE_SHARED): every change of prices or aliases puts a new version in
# the shared cache, and each process compares its book's version at most this often, so an edit
# reaches every node within about a second for one cache read per process per second, not one per
# call. With a cache of its own (one machine) only the editing process hears at once; the others
# within PRICE_CACHE_SECONDS, as ever.
PRICE_VERSION_CHECK_SECONDS = 1.0
PRICE_VERSION_KEY = "usage:price-book-version"


def _price_version() -> object:
    try:
        return cache.get(PRICE_VERSION_KEY)
    except Exception as exc:  # the cache is down: trust no book longer than one check
        logger.warning("price book: cannot read its version (%s)", type(exc).__name__)
        return object()


class _SharedBook:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._book: PriceBook | None = None
        self._born = 0.0
        self._version: object = None
        self._check_at = 0.0  # when to compare the version again (shared cache only)

    def get(self) -> PriceBook:
        now = time.monotonic()
        book, shared = self._book, settings.CACHE_SHARED
        if book is not None and now - self._born <= PRICE_CACHE_SECONDS:
            if not shared or now < self._check_at:
                return book
        version = _price_version() if shared else None
        with self._lock:
            if (
                self._book is None
                or now - self._born > PRICE_CACHE_SECONDS
                or version != self._version
            ):
                self._book, self._born, self._version = PriceBook(), now, version
            self._check_at = now + PRICE_VERSION_CHECK_SECONDS
            return self._book

    def clear(self) -> None:
        with self._lock:
            self._book = None


_SHARED = _SharedBook()


def shared_price_book() -> PriceBook:
    """The process-wide price book, renewed every PRICE_CACHE_SECONDS and, with a shared
    cache, within PRICE_VERSION_CHECK_SECONDS of a change on any node."""
    return _SHARED.get()


def price_cache_clear() -> None:
    _SHARED.clear()


def price_book_changed() -> None:
    """Prices or aliases changed: once the transaction commits, this process forgets its book
    and, with a shared cache, every other node does at its next version check."""

    def forget() -> None:
        price_cache_clear()
        if settings.CACHE_SHARED:
            try:
                cache.set(PRICE_VERSION_KEY, uuid.uuid4().hex, timeout=None)
            except Exception as exc:  # the others still renew within PRICE_CACHE_SECONDS
                logger.warning("price book: cannot publish a change (%s)", type(exc).__name__)

    transaction.on_commit(forget, robust=True)


@dataclass(frozen=True)
class ImportCounts:
    added: int
    changed: int
    unchanged: int


class PriceFileError(ValueError):
    """The price file cannot be imported; nothing was written."""


# rate_field() is DECIMAL(28, 16): 12 digits before the point. No real price comes near.
_RATE_QUANTUM = Decimal("1e-16")
_RATE_LIMIT = Decimal(10) ** 12


def load_price_file(path: Path | str = SHIPPED_PRICES_PATH) -> dict:
    """Read a LiteLLM price file (numbers as Decimal). Raises PriceFileError."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f, parse_float=Decimal)
    except (OSError, ValueError, RecursionError) as exc:
        raise PriceFileError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise PriceFileError(f"{path}: expected a JSON object keyed by model name")
    return data


def price_rules_from_file(data: dict) -> dict[tuple[str, str], PriceRule]:
    """Validated {(provider slug, model): rule} from a parsed LiteLLM file.

    Every value is checked (finite, not negative, fits the column) and rounded to the stored
    precision here, so an unchanged file compares equal to what is stored and re-importing it
    adds nothing. Raises PriceFileError naming the entry.
    """
    if not isinstance(data, dict):
        raise PriceFileError("expected a JSON object keyed by model name")
    try:
        rules = litellm_to_prices(data)
    except (ValueError, ArithmeticError, TypeError, AttributeError) as exc:
        raise PriceFileError(str(exc)) from exc
    clean: dict[tuple[str, str], PriceRule] = {}
    for (kind, model), rule in rules.items():
        if len(model) > 200:
            raise PriceFileError(f"{model[:40]}…: model name longer than 200 characters")
        values = {}
        for name in PRICE_FIELDS:
            value = getattr(rule, name)
            if value is not None:
                # The long-context tier's columns have bounds (and a CHECK): the same here.
                tier_bound = bounds.PRICE_TIER.get(name)
                if tier_bound is not None and (problem := tier_bound.problem(value)):
                    raise PriceFileError(f"{model}.{name}: {value} {problem}")
                if isinstance(value, Decimal):
                    if not value.is_finite() or value < 0 or value >= _RATE_LIMIT:
                        raise PriceFileError(f"{model}.{name}: {value} is not a valid price")
                    value = value.quantize(_RATE_QUANTUM)
            values[name] = value
        clean[(kind, model)] = PriceRule(**values)
    if not clean:
        raise PriceFileError("no prices for a known provider (is this a LiteLLM price file?)")
    return clean


@transaction.atomic
def prices_import(
    *, data: dict, now: datetime | None = None, kinds: Collection[str] | None = None
) -> ImportCounts:
    """Import a LiteLLM price file: add a dated row only where a price is new or changed.

    The file is validated as a whole before anything is written (PriceFileError otherwise).
    A changed price closes the current imported row at `now` and opens a new one from `now`;
    a model seen for the first time is valid from EPOCH, so earlier usage can be priced.
    Admin-set rows are never touched. ``kinds``: only these providers' prices (None: all).
    """
    rules = price_rules_from_file(data)
    now = now or timezone.now()
    providers = {p.slug: p for p in Provider.objects.all()}
    current = {
        (row.provider.slug, row.model): row
        for row in Price.objects.select_related("provider").filter(
            origin=Price.Origin.IMPORTED, valid_to__isnull=True
        )
    }
    added = changed = unchanged = 0
    new_rows, closed = [], []
    for (kind, model), rule in rules.items():
        provider = providers.get(kind)
        if provider is None or (kinds is not None and kind not in kinds):
            continue
        existing = current.get((kind, model))
        if existing is not None and price_rule(existing) == rule:
            unchanged += 1
            continue
        valid_from = EPOCH
        if existing is not None:
            existing.valid_to = now
            closed.append(existing)
            valid_from = now
            changed += 1
        else:
            added += 1
        new_rows.append(
            Price(
                provider=provider,
                model=model,
                valid_from=valid_from,
                origin=Price.Origin.IMPORTED,
                note="LiteLLM model_prices_and_context_window.json",
                **dataclasses.asdict(rule),
            )
        )
    Price.objects.bulk_update(closed, ["valid_to"], batch_size=500)
    Price.objects.bulk_create(new_rows, batch_size=500)
    if closed or new_rows:
        price_book_changed()
    # One event per import, not one per row: the counts tell the story, the rows carry dates.
    audit_record(
        action=AuditEvent.Action.IMPORTED,
        object_type=Price._meta.verbose_name,
        object_label="LiteLLM price file",
        changes={
            "added": [None, added],
            "changed": [None, changed],
            "unchanged": [None, unchanged],
        },
    )
    return ImportCounts(added=added, changed=changed, unchanged=unchanged)


def reprice_estimated(*, since: date, account_ids: Iterable[int] | None = None) -> int:
    """Recompute estimated costs from `since` (UTC day) with the price book as it is now.

    Official and manual costs are never re-priced. Returns how many records changed.
    """
    from usage.services.requests import request_cost
    from usage.services.rollup import day_start, rollup_rebuild

    book = PriceBook()
    # Failed requests cost nothing whatever the price; incomplete streams are billed.
    qs = (
        UsageRecord.objects.filter(source=Source.ESTIMATED, bucket_start__gte=day_start(since))
        .exclude(status=RecordStatus.FAILED)
        .select_related("provider", "account")
    )
    if account_ids is not None:
        qs = qs.filter(account_id__in=list(account_ids))
    changed = 0
    touched: set[tuple[int, date]] = set()
    with transaction.atomic():
        batch = []
        for record in qs.iterator(chunk_size=2000):
            # What pricing needs beyond the token columns, saved when the request was recorded.
            inputs = (record.raw or {}).get("pricing") or {}
            if record.status == RecordStatus.INCOMPLETE and not inputs.get("usage_found", True):
                continue  # cut off before any usage arrived: unknown, whatever the price
            usage = usage_from_record(record)
            rule = book.rule_for(
                provider=record.provider, model=record.model, at=record.bucket_start
            )
            try:
                cost = request_cost(account=record.account, usage=usage, rule=rule)
            except ValueError:
                cost = None  # out of any storable range with this price: unpriced, not made up
            if cost != record.cost:
                record.cost = cost
                batch.append(record)
                touched.add((record.account_id, record.bucket_start.astimezone(UTC).date()))
        UsageRecord.objects.bulk_update(batch, ["cost"], batch_size=1000)
        changed = len(batch)
        by_account: dict[int, set[date]] = {}
        for account_id, day in touched:
            by_account.setdefault(account_id, set()).add(day)
        for account_id, days in by_account.items():
            rollup_rebuild(account_id=account_id, days=days, source=Source.ESTIMATED)
    return changed


def usage_from_record(record: UsageRecord):
    """A stored estimated record's usage as pricing sees it (a RequestUsage): the token and
    unit columns plus what pricing needs beyond them, saved in raw["pricing"] at recording."""
    from usage.extraction import RequestUsage

    inputs = (record.raw or {}).get("pricing") or {}
    return RequestUsage(
        model=record.model,
        input_tokens=record.input_tokens,
        cache_read_tokens=record.cache_read_tokens,
        cache_write_tokens=record.cache_write_tokens,
        cache_write_1h_tokens=record.cache_write_1h_tokens,
        output_tokens=record.output_tokens,
        reasoning_tokens=record.reasoning_tokens,
        request_count=record.request_count,
        search_queries=record.search_queries,
        images=record.images,
        audio_seconds=record.audio_seconds,
        total_duration_ns=int(inputs.get("total_duration_ns") or 0),
        provider_cost=_decimal_or_none(inputs.get("provider_cost")),
        search_context_size=inputs.get("search_context_size"),
        found=True,
    )


def _decimal_or_none(value) -> Decimal | None:
    return Decimal(str(value)) if value not in (None, "") else None
