from __future__ import annotations

import hashlib
import secrets
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from providers.fields import EncryptedSecretField, SealedSecret
from providers.registry import adapter_choices
from usage import bounds


class Provider(models.Model):
    """The catalogue: one row per provider we know, seeded by a data migration."""

    slug = models.CharField(max_length=32, unique=True, choices=adapter_choices)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    # How data can arrive for this provider.
    has_official_api = models.BooleanField(default=False)
    supports_per_request = models.BooleanField(default=True)
    supports_manual = models.BooleanField(default=True)
    base_url_setting = models.CharField(max_length=40, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def base_url(self) -> str:
        return getattr(settings, self.base_url_setting, "") if self.base_url_setting else ""

    def no_upstream_message(self) -> str:
        """What the proxy and the connection test say when no upstream URL is configured
        (a provider whose upstream only the operator can know has no default)."""
        setting = self.base_url_setting or "its base URL setting"
        return f"No upstream is configured for {self.name}: the server's operator sets {setting}."


class SyncStatus(models.TextChoices):
    NEVER = "never", "Never synced"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    PARTIAL = "partial", "Partial"
    SKIPPED = "skipped", "Skipped"


class ProviderAccount(models.Model):
    """A workspace's account at a provider, with its secrets stored encrypted and write-only."""

    workspace = models.ForeignKey(
        "accounts.Workspace", on_delete=models.CASCADE, related_name="provider_accounts"
    )
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="accounts")
    name = models.CharField(max_length=100)
    # Key the proxy forwards upstream (OpenAI/Anthropic/Groq/Perplexity API key).
    api_key = EncryptedSecretField(null=True, blank=True)
    api_key_last4 = models.CharField(max_length=4, blank=True)
    # Key for the official usage/cost APIs: OpenAI/Anthropic admin key, GitHub token.
    admin_key = EncryptedSecretField(null=True, blank=True)
    admin_key_last4 = models.CharField(max_length=4, blank=True)
    # The provider's settings as its adapter declares them (``settings``), e.g.
    # {"organization": "acme", ...} for GitHub Copilot. Written only through
    # providers.account_settings.settings_clean (the account services); never a free bag.
    config = models.JSONField(default=dict, blank=True)
    monthly_budget = models.DecimalField(
        max_digits=20,
        decimal_places=2,
        null=True,
        blank=True,
        validators=bounds.ACCOUNT_BUDGET.validators(),
        help_text="USD per calendar month; empty means no budget.",
    )
    is_active = models.BooleanField(default=True)
    # Created by `manage.py seed_demo`, which replaces exactly these accounts on a re-run.
    is_demo = models.BooleanField(default=False, editable=False)
    last_sync_at = models.DateTimeField(null=True, blank=True)
    last_sync_status = models.CharField(
        max_length=16, choices=SyncStatus.choices, default=SyncStatus.NEVER
    )
    last_sync_error = models.TextField(blank=True)
    needs_attention = models.BooleanField(
        default=False, help_text="Set when the provider rejected our key; cleared by a good sync."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider__name", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "name"], name="account_unique_name_per_workspace"
            ),
            bounds.check_constraint(
                "account", {"monthly_budget": bounds.ACCOUNT_BUDGET}, nullable={"monthly_budget"}
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.provider_id and self.provider.name})"

    def set_secret(self, field: str, plaintext: str | None) -> None:
        """Encrypt and store a secret now, so the plaintext never sits on the instance."""
        from providers import crypto

        if field not in ("api_key", "admin_key"):
            raise ValueError(field)
        if plaintext:
            setattr(self, field, SealedSecret(crypto.encrypt(plaintext)))
            setattr(self, f"{field}_last4", plaintext[-4:] if len(plaintext) >= 12 else "")
        else:
            setattr(self, field, None)
            setattr(self, f"{field}_last4", "")

    @property
    def has_api_key(self) -> bool:
        return bool(self.api_key)

    @property
    def has_admin_key(self) -> bool:
        return bool(self.admin_key)


class Invoice(models.Model):
    """What the provider billed an account for one calendar month, typed in by the user.

    Reconciliation sets it against what the tracker counted, and a true-up books the difference.
    """

    account = models.ForeignKey(ProviderAccount, on_delete=models.CASCADE, related_name="invoices")
    month = models.DateField(help_text="The first day of the billed month.")
    # The usage records' money shape: a true-up copies the amount into one of them.
    amount = models.DecimalField(max_digits=28, decimal_places=12)
    currency = models.CharField(max_length=3, default="USD", choices=[("USD", "USD")])
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["account", "-month"]
        constraints = [
            models.UniqueConstraint(fields=["account", "month"], name="invoice_one_per_month"),
            bounds.check_constraint("invoice", {"amount": bounds.INVOICE}),
            models.CheckConstraint(
                condition=models.Q(month__day=1), name="invoice_month_first_day"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.account} {self.month:%Y-%m}: {self.amount} {self.currency}"

    @staticmethod
    def amount_check(amount: Decimal) -> None:
        """The invoice bound (usage/bounds.py; the CHECK constraint enforces the same)."""
        if not isinstance(amount, Decimal):
            raise ValidationError({"amount": "Enter a number."})
        if problem := bounds.INVOICE.problem(amount):
            raise ValidationError({"amount": f"The amount {problem}."})
        if amount != amount.quantize(Decimal("1e-12")):
            raise ValidationError({"amount": "Use at most 12 decimal places."})

    def clean(self) -> None:
        if self.month and self.month.day != 1:
            raise ValidationError({"month": "Use the first day of the month."})
        if self.amount is not None:
            self.amount_check(self.amount)

    @property
    def month_key(self) -> str:
        return f"{self.month:%Y-%m}"


def hash_ingest_key(raw: str) -> str:
    # SHA-256, not a password hasher: the key is 32 random bytes, and ingestion is a hot path.
    return hashlib.sha256(raw.encode()).hexdigest()


class IngestKey(models.Model):
    """A key that may only write usage for one account. Shown once, stored hashed."""

    PREFIX = "cti_"

    account = models.ForeignKey(
        ProviderAccount, on_delete=models.CASCADE, related_name="ingest_keys"
    )
    name = models.CharField(max_length=100, blank=True)
    # The member who made it: members may revoke their own keys, and spend groups by it.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    digest = models.CharField(max_length=64, unique=True)
    hint = models.CharField(max_length=12)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # The proxy answers 429 with retry-after past this many calls in a clock minute (None: no
    # limit). Ingestion is never limited: it reports calls that already happened.
    requests_per_minute = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(1_000_000)]
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.hint}… for {self.account}"

    @classmethod
    def new_raw_key(cls) -> str:
        return cls.PREFIX + secrets.token_urlsafe(32)

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class IngestKeyMinute(models.Model):
    """Proxied calls one rate-limited ingest key made in one clock minute: a counter in the
    database, so every process and node counts the same calls (providers/key_limits.py)."""

    key = models.ForeignKey(IngestKey, on_delete=models.CASCADE, related_name="+", db_index=False)
    minute = models.DateTimeField()
    calls = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["key", "minute"], name="ingest_key_minute_unique")
        ]

    def __str__(self) -> str:
        return f"key {self.key_id} at {self.minute:%Y-%m-%d %H:%M}: {self.calls}"


class RateLimitState(models.Model):
    """The latest rate-limit headroom a provider told for one account and model.

    Written by the proxy's flush (providers.ratelimits.services.ratelimit_states_upsert): one
    row per account and model, the newest observation winning whichever process flushes last.
    A dimension's three columns are NULL when the provider did not send them.
    """

    account = models.ForeignKey(
        ProviderAccount, on_delete=models.CASCADE, related_name="rate_limit_states"
    )
    model = models.CharField(max_length=200, blank=True)
    observed_at = models.DateTimeField()
    requests_limit = models.BigIntegerField(null=True)
    requests_remaining = models.BigIntegerField(null=True)
    requests_reset_at = models.DateTimeField(null=True)
    tokens_limit = models.BigIntegerField(null=True)
    tokens_remaining = models.BigIntegerField(null=True)
    tokens_reset_at = models.DateTimeField(null=True)
    input_tokens_limit = models.BigIntegerField(null=True)
    input_tokens_remaining = models.BigIntegerField(null=True)
    input_tokens_reset_at = models.DateTimeField(null=True)
    output_tokens_limit = models.BigIntegerField(null=True)
    output_tokens_remaining = models.BigIntegerField(null=True)
    output_tokens_reset_at = models.DateTimeField(null=True)
    # When the last 429's retry-after said to try again.
    retry_at = models.DateTimeField(null=True)

    class Meta:
        ordering = ["account", "model"]
        constraints = [
            models.UniqueConstraint(fields=["account", "model"], name="ratelimit_state_unique")
        ]

    def __str__(self) -> str:
        return f"rate limits of {self.account_id}/{self.model or '(no model)'}"


class RateLimitHit(models.Model):
    """How many times a provider answered 429 for an account and model in one UTC minute.

    Minutes, not days, so a burst can be told (alerts); the panel sums them per day. ``model``
    is empty for the usage/cost APIs a sync calls.
    """

    class Source(models.TextChoices):
        PROXY = "proxy", "Proxy"
        SYNC = "sync", "Sync"

    account = models.ForeignKey(
        ProviderAccount, on_delete=models.CASCADE, related_name="rate_limit_hits"
    )
    model = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=8, choices=Source.choices)
    minute = models.DateTimeField(help_text="The UTC minute the 429s arrived in.")
    count = models.PositiveIntegerField()

    class Meta:
        ordering = ["account", "-minute"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "model", "source", "minute"], name="ratelimit_hit_unique"
            )
        ]
        indexes = [models.Index(fields=["account", "minute"], name="ratelimit_hit_minute")]

    def __str__(self) -> str:
        return f"{self.count} × 429 for {self.account_id}/{self.model} at {self.minute:%H:%M}"
