"""The effective-dated price book: lookup, import, re-pricing.

History is never rewritten: an import that sees a changed price closes the current row
(valid_to) and opens a new one, so a request is priced by the row valid at its time. Prices an
administrator sets (origin "admin") win over imported ones.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from providers.models import Provider
from usage.models import ModelAlias, Price, Source, UsageRecord
from usage.pricing import SHIPPED_PRICES_PATH, candidate_model_names, litellm_to_prices
from usage.pricing import Price as PriceRule

PRICE_FIELDS = [f.name for f in dataclasses.fields(PriceRule)]
# The first import covers all earlier usage: without it nothing before today could be priced.
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def price_rule(row: Price) -> PriceRule:
    return PriceRule(**{f: getattr(row, f) for f in PRICE_FIELDS})


class PriceBook:
    """Price lookups for one batch of work, cached per (provider, model, day).

    Lookup order: admin alias → exact name → names without provider prefix or date suffix.
    At each name an admin-set row beats an imported one.
    """

    def __init__(self) -> None:
        self._cache: dict[tuple[int, str, date], Price | None] = {}
        self._aliases: dict[int, dict[str, str]] = {}

    def _alias(self, provider_id: int, model: str) -> str:
        if provider_id not in self._aliases:
            self._aliases[provider_id] = dict(
                ModelAlias.objects.filter(provider_id=provider_id).values_list("alias", "model")
            )
        return self._aliases[provider_id].get(model, model)

    def row_for(self, *, provider: Provider, model: str, at: datetime) -> Price | None:
        key = (provider.pk, model, at.date())
        if key not in self._cache:
            self._cache[key] = self._lookup(provider, model, at)
        return self._cache[key]

    def rule_for(self, *, provider: Provider, model: str, at: datetime) -> PriceRule | None:
        row = self.row_for(provider=provider, model=model, at=at)
        return price_rule(row) if row else None

    def _lookup(self, provider: Provider, model: str, at: datetime) -> Price | None:
        names = candidate_model_names(provider.slug, self._alias(provider.pk, model))
        if not names:
            return None
        rows = list(
            Price.objects.filter(provider=provider, model__in=names, valid_from__lte=at)
            .filter(Q(valid_to__isnull=True) | Q(valid_to__gt=at))
            .order_by("-valid_from")
        )
        for name in names:
            matching = [r for r in rows if r.model == name]
            for origin in (Price.Origin.ADMIN, Price.Origin.IMPORTED):
                for row in matching:
                    if row.origin == origin:
                        return row
        return None


@dataclass(frozen=True)
class ImportCounts:
    added: int
    changed: int
    unchanged: int


def load_price_file(path: Path | str = SHIPPED_PRICES_PATH) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f, parse_float=Decimal)


@transaction.atomic
def prices_import(*, data: dict, now: datetime | None = None) -> ImportCounts:
    """Import a LiteLLM price file: add a dated row only where a price is new or changed."""
    now = now or timezone.now()
    providers = {p.slug: p for p in Provider.objects.all()}
    current = {
        (row.provider.slug, row.model): row
        for row in Price.objects.select_related("provider").filter(
            origin=Price.Origin.IMPORTED, valid_to__isnull=True
        )
    }
    added = changed = unchanged = 0
    new_rows = []
    for (kind, model), rule in litellm_to_prices(data).items():
        provider = providers.get(kind)
        if provider is None:
            continue
        existing = current.get((kind, model))
        if existing is not None and price_rule(existing) == rule:
            unchanged += 1
            continue
        valid_from = EPOCH
        if existing is not None:
            existing.valid_to = now
            existing.save(update_fields=["valid_to"])
            valid_from = now
            changed += 1
        else:
            added += 1
        new_rows.append(
            Price(
                provider=provider,
                model=model[:200],
                valid_from=valid_from,
                origin=Price.Origin.IMPORTED,
                note="LiteLLM model_prices_and_context_window.json",
                **dataclasses.asdict(rule),
            )
        )
    Price.objects.bulk_create(new_rows, batch_size=500)
    return ImportCounts(added=added, changed=changed, unchanged=unchanged)


def reprice_estimated(*, since: date, account_ids: Iterable[int] | None = None) -> int:
    """Recompute estimated costs from `since` (UTC day) with the price book as it is now.

    Official and manual costs are never re-priced. Returns how many records changed.
    """
    from usage.extraction import RequestUsage
    from usage.pricing import cost_for
    from usage.services.rollup import day_start, rollup_rebuild

    book = PriceBook()
    qs = UsageRecord.objects.filter(
        source=Source.ESTIMATED, bucket_start__gte=day_start(since), status="ok"
    ).select_related("provider", "account")
    if account_ids is not None:
        qs = qs.filter(account_id__in=list(account_ids))
    changed = 0
    touched: set[tuple[int, date]] = set()
    with transaction.atomic():
        batch = []
        for record in qs.iterator(chunk_size=2000):
            # What pricing needs beyond the token columns, saved when the request was recorded.
            inputs = (record.raw or {}).get("pricing") or {}
            usage = RequestUsage(
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
            rule = book.rule_for(
                provider=record.provider, model=record.model, at=record.bucket_start
            )
            rate = record.account.config.get("compute_rate_per_hour")
            cost = cost_for(
                record.provider.slug, usage, rule,
                compute_rate_per_hour=Decimal(str(rate)) if rate not in (None, "") else None,
            )
            if cost is not None:
                cost = cost.quantize(Decimal("1e-12"))
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


def _decimal_or_none(value) -> Decimal | None:
    return Decimal(str(value)) if value not in (None, "") else None
