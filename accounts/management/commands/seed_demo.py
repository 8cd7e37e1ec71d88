"""Load clearly-labelled demo data for one user: `manage.py seed_demo --user alice [--days 90]`.

Creates "Demo – …" accounts (``is_demo``) with usage through every write path the
product has: official daily lines (OpenAI, Anthropic), estimated per-request events (Groq,
Perplexity, Ollama) and manual seat entries (GitHub Copilot). Re-running replaces the user's
demo accounts and their data; it never touches other accounts. Never run automatically.
Every model used here is priced by the shipped price book (usage/data/), so the demo shows no
unpriced estimates (tested).
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from providers.adapters.base import UsageLine
from providers.models import Provider, ProviderAccount
from providers.services import account_create
from usage.extraction import RequestUsage
from usage.services.records import manual_entry_create, usage_lines_replace_window
from usage.services.requests import RequestEvent, request_events_record

PREFIX = "Demo – "
# slug: (account name, monthly budget, provider settings)
ACCOUNTS = {
    "openai": ("OpenAI", Decimal("180"), {}),
    "anthropic": ("Anthropic", Decimal("400"), {}),
    "groq": ("Groq", Decimal("20"), {}),
    "perplexity": ("Perplexity", Decimal("40"), {}),
    "ollama": ("Ollama (local)", None, {"compute_rate_per_hour": "0.40"}),
    "copilot": ("GitHub Copilot", Decimal("200"), {"organization": "demo-org"}),
}
# Demo-only rates (USD per million tokens) for the official lines; they stand in for what the
# provider's cost API would report.
OFFICIAL_MODELS = {
    "openai": [
        ("gpt-4o", 2_000_000, 250_000, Decimal("2.50"), Decimal("10.00")),
        ("gpt-4o-mini", 6_000_000, 900_000, Decimal("0.15"), Decimal("0.60")),
        ("text-embedding-3-small", 9_000_000, 0, Decimal("0.02"), Decimal("0")),
    ],
    "anthropic": [
        ("claude-sonnet-4-5", 1_100_000, 160_000, Decimal("3.00"), Decimal("15.00")),
        ("claude-haiku-4-5", 2_500_000, 300_000, Decimal("1.00"), Decimal("5.00")),
    ],
}
SEAT_PRICE = Decimal("19")
MILLION = Decimal(1_000_000)
_FEATURES = ("chat", "search", "summarise")


def _activity(rng: random.Random, day: date, start: date) -> float:
    """A day's activity: quieter weekends, slow growth, some noise."""
    weekend = 0.35 if day.weekday() >= 5 else 1.0
    growth = 0.75 + 0.5 * (day - start).days / 90
    return weekend * growth * rng.uniform(0.8, 1.2)


class Command(BaseCommand):
    help = (
        "Load demo accounts named 'Demo – …' and DAYS days of usage for one user. "
        "Re-running replaces that user's demo data."
    )

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True, help="Username to load the demo data for.")
        parser.add_argument("--days", type=int, default=90, help="Days of history (1-400).")

    def handle(self, *args, user: str, days: int, **options):
        owner = User.objects.filter(username=user).first()
        if owner is None:
            raise CommandError(f"No user named {user!r}. Create it first (sign up or createuser).")
        if not 1 <= days <= 400:
            raise CommandError("--days must be between 1 and 400.")
        today = timezone.now().astimezone(UTC).date()
        start = today - timedelta(days=days - 1)
        with transaction.atomic():
            workspace = owner.personal_workspace
            removed, _ = ProviderAccount.objects.filter(workspace=workspace, is_demo=True).delete()
            accounts = {
                slug: account_create(
                    workspace=workspace,
                    provider=Provider.objects.get(slug=slug),
                    name=PREFIX + name,
                    config=settings,
                    monthly_budget=budget,
                    is_demo=True,
                )
                for slug, (name, budget, settings) in ACCOUNTS.items()
            }
            rng = random.Random(f"demo:{owner.username}:{days}")
            for slug in ("openai", "anthropic"):
                self._official(accounts[slug], slug, rng, start, today)
            events = self._events(accounts, rng, start, today)
            self._seats(accounts["copilot"], start, today)
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data loaded for {owner.username}: {len(accounts)} 'Demo – …' accounts, "
                f"{days} days, {events} per-request events"
                + (" (previous demo data replaced)." if removed else ".")
            )
        )

    def _official(self, account, slug, rng, start: date, today: date) -> None:
        # Official figures lag: the provider reports complete UTC days, up to yesterday.
        lines = []
        for i in range((today - start).days):
            day = start + timedelta(days=i)
            level = _activity(rng, day, start)
            for model, inp, out, in_rate, out_rate in OFFICIAL_MODELS[slug]:
                tin, tout = int(inp * level), int(out * level)
                cost = (tin * in_rate + tout * out_rate) / MILLION
                lines.append(
                    UsageLine(
                        day=day,
                        model=model,
                        line_item=f"{model} (demo)",
                        input_tokens=tin,
                        output_tokens=tout,
                        request_count=max(1, tin // 1500),
                        cost=cost.quantize(Decimal("0.000001")),
                        raw={"demo": True},
                    )
                )
        usage_lines_replace_window(account=account, start=start, end=today, lines=lines)

    def _events(self, accounts, rng, start: date, today: date) -> int:
        now = timezone.now()
        total = 0
        specs = {
            # (events per active day, models)
            "groq": (6, ["openai/gpt-oss-20b", "openai/gpt-oss-20b", "openai/gpt-oss-120b"]),
            "perplexity": (3, ["sonar", "sonar-pro"]),
            "ollama": (5, ["llama3.2"]),
        }
        for slug, (per_day, models) in specs.items():
            account = accounts[slug]
            batch = []
            for i in range((today - start).days + 1):
                day = start + timedelta(days=i)
                for n in range(round(per_day * _activity(rng, day, start))):
                    at = datetime.combine(day, time.min, tzinfo=UTC) + timedelta(
                        seconds=rng.randrange(86_400)
                    )
                    if at > now:
                        continue
                    model = rng.choice(models)
                    usage = RequestUsage(
                        model=model,
                        input_tokens=rng.randrange(300, 6000),
                        output_tokens=rng.randrange(100, 1500),
                        found=True,
                    )
                    if slug == "perplexity":
                        usage.provider_cost = Decimal(rng.randrange(500, 2500)) / 100_000
                        usage.search_context_size = "low"
                    if slug == "ollama":
                        usage.total_duration_ns = rng.randrange(2, 40) * 1_000_000_000
                    batch.append(
                        RequestEvent(
                            request_id=f"demo-{account.pk}-{day:%Y%m%d}-{n}",
                            usage=usage,
                            occurred_at=at,
                            # Attribution tags (usage.bounds.TAG_KEYS), so the breakdown by
                            # project and feature has something to show.
                            tags={
                                "demo": "true",
                                "project": rng.choice(["web", "data"]),
                                "feature": _FEATURES[n % len(_FEATURES)],
                            },
                        )
                    )
            request_events_record(account=account, events=batch)
            total += len(batch)
        return total

    def _seats(self, account, start: date, today: date) -> None:
        day = start.replace(day=1)
        while day <= today:
            seats = 8 if day < today.replace(day=1) else 10
            manual_entry_create(
                account=account,
                day=max(day, start),
                description=f"Copilot Business, {seats} seats (demo)",
                cost=SEAT_PRICE * seats,
                seats=Decimal(seats),
                tags={"demo": "true"},
            )
            day = (day + timedelta(days=32)).replace(day=1)
