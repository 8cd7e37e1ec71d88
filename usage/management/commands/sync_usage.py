"""Sync official usage now, in the foreground: `manage.py sync_usage [--account ID] [--days N]`."""

from __future__ import annotations

import argparse

from django.core.management.base import BaseCommand, CommandError

from providers.models import ProviderAccount
from usage.models import SyncRun
from usage.services.sync import account_supports_sync, usage_sync
from usage.tasks import syncable_accounts


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of days, 1 or more: {value!r}")
    return number


class Command(BaseCommand):
    help = (
        "Fetch official usage from the providers now and store it (a manual backfill). "
        "Without --days: the last 3 UTC days, or SYNC_BACKFILL_DAYS for a never-synced account."
    )

    def add_arguments(self, parser):
        parser.add_argument("--account", type=int, help="Only this provider account (its id).")
        parser.add_argument(
            "--days", type=_positive, help="UTC days to fetch, ending today (today included)."
        )

    def handle(self, *args, account=None, days=None, **options):
        if account is not None:
            found = ProviderAccount.objects.select_related("provider").filter(pk=account).first()
            if found is None:
                raise CommandError(f"No provider account with id {account}.")
            if not account_supports_sync(found):
                raise CommandError(
                    f"Account {account} ({found.provider.name}) has no official usage API "
                    "to sync: it is tracked per request."
                )
            accounts = [found]
        else:
            accounts = list(syncable_accounts().select_related("provider"))
            if not accounts:
                self.stdout.write("No active account with an official usage API and a key.")
                return
        failed = 0
        for acct in accounts:
            run = usage_sync(account_id=acct.pk, days=days, trigger="command")
            label = f"account {acct.pk} ({acct.name}, {acct.provider.name})"
            if run is None:  # only a redelivered task gets None; kept for completeness
                self.stdout.write(f"{label}: already handled")
                continue
            window = f"{run.window_start:%Y-%m-%d}..{run.window_end:%Y-%m-%d} (end excluded)"
            if run.status == SyncRun.Status.SUCCEEDED:
                self.stdout.write(
                    self.style.SUCCESS(
                        f"{label}: succeeded {window}: fetched {run.fetched}, "
                        f"created {run.created}, updated {run.updated}"
                    )
                )
            elif run.status == SyncRun.Status.SKIPPED:
                self.stdout.write(self.style.WARNING(f"{label}: {run.error_message}"))
            else:
                failed += 1
                first_line = run.error_message.splitlines()[0] if run.error_message else ""
                self.stdout.write(self.style.ERROR(f"{label}: {run.status} {window}: {first_line}"))
        if failed:
            raise CommandError(f"{failed} of {len(accounts)} account(s) failed to sync.")
