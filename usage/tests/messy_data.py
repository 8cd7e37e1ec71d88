"""Demo-like data that stresses page layout: long names, long errors, many rows.

Used by the layout browser test; `seed_messy(username=…)` can also be run from a shell to look
at the pages by hand.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.core.management import call_command
from django.utils import timezone

from accounts.models import User
from alerts.services import alert_manual_create, budget_create
from providers.models import Provider, ProviderAccount
from providers.services import account_create, ingest_key_create
from usage.models import SyncRun
from usage.services.records import manual_entry_create

DNS_ERROR = (
    "provider unreachable: HTTPSConnectionPool(host='api.openai.com', port=443): Max retries "
    "exceeded with url: /v1/organization/costs?start_time=1764547200&bucket_width=1d&limit=31 "
    '(Caused by NameResolutionError("<urllib3.connection.HTTPSConnection object at '
    "0x7f3b2c1d9e50>: Failed to resolve 'api.openai.com' ([Errno -3] Temporary failure in name "
    'resolution)"))'
)
LONG_MODEL = "ft:gpt-4o-mini-2024-07-18:acme-research-and-development:support-triage-v7:AbCdEfGh"


def seed_messy(*, username: str, password: str, time_zone: str = "America/New_York") -> User:
    user = User.objects.create_user(
        username, f"{username}@example.com", password, time_zone=time_zone
    )
    call_command("seed_demo", "--user", username, "--days", "40")
    openai = Provider.objects.get(slug="openai")
    broken = account_create(
        workspace=user.personal_workspace,
        provider=openai,
        name="Research & development department — production workloads (EU)",
        admin_key="sk-admin-layout-test-key-000000000000",
        monthly_budget=Decimal("20"),
    )
    now = timezone.now()
    ProviderAccount.objects.filter(pk=broken.pk).update(
        last_sync_at=now, last_sync_status="failed", last_sync_error=DNS_ERROR
    )
    for i in range(12):
        SyncRun.objects.create(
            account=broken,
            window_start=date(2026, 11, 1),
            window_end=date(2026, 12, 1),
            status=SyncRun.Status.FAILED,
            trigger="manual" if i % 2 else "schedule",
            started_at=now - timedelta(hours=i),
            finished_at=now - timedelta(hours=i) + timedelta(seconds=30),
            error_class="ProviderError",
            error_message=DNS_ERROR,
        )
    today = datetime.now(UTC).date()
    for i in range(60):
        manual_entry_create(
            account=broken,
            day=today - timedelta(days=i % 20),
            model=LONG_MODEL if i % 2 else "",
            description="Copilot Business – 12 seats, invoice INV-2026-000123456789",
            cost=None if i % 3 == 0 else Decimal("1.25"),
            input_tokens=123_456_789,
            output_tokens=98_765_432,
            request_count=12_345,
        )
    ingest_key_create(account=broken, name="Build server in the basement, second rack")
    budget_create(workspace=user.personal_workspace, scope="overall", amount=Decimal("50"))
    budget_create(
        workspace=user.personal_workspace, scope="account", account=broken, amount=Decimal("10")
    )
    alert_manual_create(
        workspace=user.personal_workspace,
        message="A note with a long word " + "x" * 120,
        account=broken,
    )
    return user
