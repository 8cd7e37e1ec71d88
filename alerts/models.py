from __future__ import annotations

from urllib.parse import urlsplit

from django.db import models

from alerts.webhooks import FORMAT_CHOICES
from providers.models import IngestKey, Provider, ProviderAccount
from usage import bounds
from usage.models import money_field


def default_thresholds() -> list[int]:
    return [80, 100]


class Budget(models.Model):
    """A budget over everything, one provider, one account, one ingest key or one tag value,
    per calendar day, week (Monday to Sunday) or month in the workspace's time zone.

    An *enforced* budget also stops spend: once its period's spend reaches the amount, the
    proxy refuses the calls it covers (alerts/enforcement.py).
    """

    class Scope(models.TextChoices):
        OVERALL = "overall", "All spend"
        PROVIDER = "provider", "One provider"
        ACCOUNT = "account", "One account"
        INGEST_KEY = "ingest_key", "One ingest key"
        TAG = "tag", "One tag value"

    class Period(models.TextChoices):
        DAILY = "daily", "Day"
        WEEKLY = "weekly", "Week"
        MONTHLY = "monthly", "Month"

    class Tag(models.TextChoices):
        # The tags a call carries (usage.bounds.TAG_KEYS), as the attribution roll-up keys them.
        PROJECT = "project", "Project"
        USER = "user", "User"
        FEATURE = "feature", "Feature"

    workspace = models.ForeignKey(
        "accounts.Workspace", on_delete=models.CASCADE, related_name="budgets"
    )
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.OVERALL)
    provider = models.ForeignKey(Provider, null=True, blank=True, on_delete=models.CASCADE)
    account = models.ForeignKey(ProviderAccount, null=True, blank=True, on_delete=models.CASCADE)
    ingest_key = models.ForeignKey(
        IngestKey, null=True, blank=True, on_delete=models.CASCADE, related_name="budgets"
    )
    tag = models.CharField(max_length=16, choices=Tag.choices, blank=True)
    tag_value = models.CharField(max_length=bounds.TAG_MAX_CHARS, blank=True)
    period = models.CharField(max_length=8, choices=Period.choices, default=Period.MONTHLY)
    amount = models.DecimalField(
        max_digits=20, decimal_places=2, validators=bounds.BUDGET.validators()
    )
    thresholds = models.JSONField(
        default=default_thresholds, help_text="Percentages, e.g. [80, 100]."
    )
    forecast_alert = models.BooleanField(default=True)
    enforced = models.BooleanField(
        default=False, help_text="The proxy refuses the calls it covers once the amount is spent."
    )
    refuse_unpriced = models.BooleanField(
        default=False,
        help_text="Enforced budgets only: also refuse models without a price, whose spend "
        "would otherwise go uncounted.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["scope", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(
                        scope="overall",
                        provider__isnull=True,
                        account__isnull=True,
                        ingest_key__isnull=True,
                        tag="",
                    )
                    | models.Q(
                        scope="provider",
                        provider__isnull=False,
                        account__isnull=True,
                        ingest_key__isnull=True,
                        tag="",
                    )
                    | models.Q(
                        scope="account",
                        provider__isnull=True,
                        account__isnull=False,
                        ingest_key__isnull=True,
                        tag="",
                    )
                    | models.Q(
                        scope="ingest_key",
                        provider__isnull=True,
                        account__isnull=True,
                        ingest_key__isnull=False,
                        tag="",
                    )
                    | (
                        models.Q(
                            scope="tag",
                            provider__isnull=True,
                            account__isnull=True,
                            ingest_key__isnull=True,
                        )
                        & ~models.Q(tag="")
                        & ~models.Q(tag_value="")
                    )
                ),
                name="budget_scope_matches_target",
            ),
            # One budget per target and period: two for the same would alert twice for one
            # spend. (A daily and a monthly budget for the same target are both allowed.)
            models.UniqueConstraint(
                fields=["workspace", "period"],
                condition=models.Q(scope="overall"),
                name="budget_one_overall",
            ),
            models.UniqueConstraint(
                fields=["workspace", "provider", "period"],
                condition=models.Q(scope="provider"),
                name="budget_one_per_provider",
            ),
            models.UniqueConstraint(
                fields=["workspace", "account", "period"],
                condition=models.Q(scope="account"),
                name="budget_one_per_account",
            ),
            models.UniqueConstraint(
                fields=["workspace", "ingest_key", "period"],
                condition=models.Q(scope="ingest_key"),
                name="budget_one_per_ingest_key",
            ),
            models.UniqueConstraint(
                fields=["workspace", "tag", "tag_value", "period"],
                condition=models.Q(scope="tag"),
                name="budget_one_per_tag_value",
            ),
            bounds.check_constraint("budget", {"amount": bounds.BUDGET}),
        ]

    def __str__(self) -> str:
        return f"${self.amount}/{self.get_period_display().lower()} for {self.target_label}"

    @property
    def target_label(self) -> str:
        if self.scope == self.Scope.ACCOUNT:
            return f"Account {self.account.name}"
        if self.scope == self.Scope.PROVIDER:
            return f"Provider {self.provider.name}"
        if self.scope == self.Scope.INGEST_KEY:
            key = self.ingest_key
            return f"Ingest key {key.name or key.hint + '…'} ({key.account.name})"
        if self.scope == self.Scope.TAG:
            return f"{self.get_tag_display()} {self.tag_value}"
        return "All spend"


class BudgetPeriodSpend(models.Model):
    """The spend of an enforced budget's period as the proxy checks it (alerts/enforcement.py).

    Set from the roll-ups by every alert evaluation (so ingestion, sync and manual spend count
    within a minute) and raised at once by each proxied call the budget covers, so concurrent
    calls see each other's spend without the proxy summing roll-ups on every call.
    """

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="period_spends")
    period_start = models.DateField()
    spent = money_field(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["budget", "period_start"], name="budget_period_spend_unique"
            )
        ]

    def __str__(self) -> str:
        return f"budget {self.budget_id} from {self.period_start}: {self.spent}"


class Alert(models.Model):
    """Something the user should look at. `dedupe_key` makes each alert fire once."""

    class Kind(models.TextChoices):
        THRESHOLD = "threshold", "Budget threshold"
        FORECAST = "forecast", "Forecast"
        ANOMALY = "anomaly", "Anomaly"
        SYNC = "sync", "Sync problem"
        MANUAL = "manual", "Note"
        TEST = "test", "Test notification"
        RATELIMIT_LOW = "ratelimit_low", "Rate-limit headroom low"
        RATELIMIT_BURST = "ratelimit_429", "Burst of 429s"

    workspace = models.ForeignKey(
        "accounts.Workspace", on_delete=models.CASCADE, related_name="alerts"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    budget = models.ForeignKey(Budget, null=True, blank=True, on_delete=models.CASCADE)
    account = models.ForeignKey(ProviderAccount, null=True, blank=True, on_delete=models.CASCADE)
    threshold = models.IntegerField(null=True, blank=True)
    period = models.DateField(null=True, blank=True, help_text="First day of the budget period.")
    dedupe_key = models.CharField(max_length=200)
    message = models.TextField()
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    # False for rows kept only for their dedupe key or deliveries, not for a person to read:
    # thresholds a new budget had already passed (only the highest alerts), test notifications.
    listed = models.BooleanField(default=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "dedupe_key"], name="alert_fires_once")
        ]
        indexes = [
            models.Index(fields=["workspace", "kind", "created_at"], name="alert_workspace_kind")
        ]

    def __str__(self) -> str:
        return self.message[:80]


class NotificationChannel(models.Model):
    """Where a workspace's alerts are sent: an email address or a webhook URL."""

    class Kind(models.TextChoices):
        EMAIL = "email", "Email"
        WEBHOOK = "webhook", "Webhook"

    workspace = models.ForeignKey(
        "accounts.Workspace", on_delete=models.CASCADE, related_name="notification_channels"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # An email address or an http(s) URL. A webhook URL often embeds a token (Slack's do), so
    # pages and API responses show only `target_display`.
    target = models.CharField(max_length=2000)
    format = models.CharField(
        max_length=16,
        choices=FORMAT_CHOICES,
        default="generic",
        help_text="The body a webhook receives: generic JSON, or Slack, Teams or Discord's own.",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["kind", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "kind", "target"], name="channel_once_per_target"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.target_display}"

    @property
    def target_display(self) -> str:
        """The email address, or only the scheme and host of a webhook URL."""
        if self.kind == self.Kind.EMAIL:
            return self.target
        parts = urlsplit(self.target)
        return f"{parts.scheme}://{parts.hostname or ''}/…"


class NotificationDelivery(models.Model):
    """One alert sent (or not) to one channel; one row per pair, updated by each attempt."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(
        NotificationChannel, on_delete=models.CASCADE, related_name="deliveries"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.IntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    # When the next try is scheduled (a pending delivery whose last try failed for now).
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["alert", "channel"], name="delivery_once_per_channel")
        ]

    def __str__(self) -> str:
        return f"alert {self.alert_id} -> channel {self.channel_id}: {self.status}"


class EvaluationDue(models.Model):
    """An evaluation of one workspace's alerts that is due, kept in the database so any node
    runs it.

    Every change in spend asks for one (alerts.services.alerts_evaluation_request): one row per
    workspace and coalescing window, due at the window's end. alerts.tasks.evaluate_due takes
    the due rows (a DELETE … RETURNING, so two nodes never take the same row) and evaluates
    each workspace once.
    """

    # The unique (workspace, due_at) index serves lookups by workspace.
    workspace = models.ForeignKey(
        "accounts.Workspace", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    due_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "due_at"], name="alerts_evaluation_due_unique"
            )
        ]

    def __str__(self) -> str:
        return (
            f"evaluate alerts of workspace {self.workspace_id} at {self.due_at:%Y-%m-%d %H:%M:%S}"
        )
