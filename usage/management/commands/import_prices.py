from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from providers.registry import ADAPTERS
from usage.models import Price
from usage.pricing import SHIPPED_PRICES_PATH
from usage.services.prices import PriceFileError, load_price_file, prices_import


class Command(BaseCommand):
    help = (
        "Import prices from a LiteLLM model_prices_and_context_window.json (default: the shipped "
        "snapshot). Adds a new dated row only where a price changed; history is never rewritten. "
        "Prices set in the admin always win over imported ones. Run `reprice --since DATE` "
        "afterwards to re-price estimated usage recorded before a price existed or changed."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", nargs="?", default=str(SHIPPED_PRICES_PATH))
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help=(
                "Import only for providers that have no imported prices yet (so a newly "
                "registered provider gets the shipped prices on the next start, and the others "
                "are left alone)."
            ),
        )

    def handle(self, *args, path, if_empty, **options):
        kinds = None
        if if_empty:
            loaded = Price.objects.filter(origin=Price.Origin.IMPORTED).values_list(
                "provider__slug", flat=True
            )
            kinds = set(ADAPTERS) - set(loaded)
            if not kinds:
                self.stdout.write("Price book already loaded; skipping.")
                return
        try:
            # Validated as a whole before the first write: a bad file changes nothing.
            counts = prices_import(data=load_price_file(Path(path)), kinds=kinds)
        except PriceFileError as exc:
            raise CommandError(f"Cannot import {path}: {exc}") from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"Prices: {counts.added} added, {counts.changed} changed (new dated rows), "
                f"{counts.unchanged} unchanged."
            )
        )
