from __future__ import annotations

from django.core.management.base import BaseCommand

from usage.tasks import raw_history_maintain


class Command(BaseCommand):
    help = (
        "Make the coming months' partitions of per-request records (PostgreSQL) and remove the "
        "raw history RAW_RETENTION_DAYS no longer keeps: what the daily usage-history schedule "
        "does, run now."
    )

    def handle(self, *args, **options):
        self.stdout.write(self.style.SUCCESS(raw_history_maintain()))
