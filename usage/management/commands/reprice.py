from __future__ import annotations

from datetime import date

from django.core.management.base import BaseCommand, CommandError

from usage.selectors import raw_history_missing
from usage.services.prices import reprice_estimated


class Command(BaseCommand):
    help = (
        "Recompute estimated (per-request) costs since DATE (UTC) with the price book as it is "
        "now, after a price was added or corrected. Official and manual costs are never touched."
    )

    def add_arguments(self, parser):
        parser.add_argument("--since", required=True, help="UTC day, YYYY-MM-DD")

    def handle(self, *args, since, **options):
        try:
            day = date.fromisoformat(since)
        except ValueError as exc:
            raise CommandError("--since must be a date like 2026-11-01") from exc
        changed = reprice_estimated(since=day)
        self.stdout.write(self.style.SUCCESS(f"Re-priced {changed} estimated record(s)."))
        kept_from = raw_history_missing(start=day)
        if kept_from is not None:
            self.stdout.write(
                self.style.WARNING(
                    f"Per-request records before {kept_from} were removed (RAW_RETENTION_DAYS): "
                    "those days keep the prices they were recorded with."
                )
            )
