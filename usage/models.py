from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models

from providers.http import ErrorClass
from providers.models import Provider, ProviderAccount
from usage import bounds


def money_field(**kwargs) -> models.DecimalField:
    # 12 decimal places: a $0.00000015 request must never round to zero (the seeds'
    # DECIMAL(10,4) did). NULL means "unpriced", never $0.
    return models.DecimalField(max_digits=28, decimal_places=12, **kwargs)


def rate_field(**kwargs) -> models.DecimalField:
    # Per-token prices reach 1e-9 USD and below.
    return models.DecimalField(max_digits=28, decimal_places=16, null=True, blank=True, **kwargs)


class Source(models.TextChoices):
    OFFICIAL = "official", "Official"
    ESTIMATED = "estimated", "Estimated"
    MANUAL = "manual", "Manual"


class Granularity(models.TextChoices):
    DAY = "day", "UTC day"
    EVENT = "event", "Single request"


class RecordStatus(models.TextChoices):
    OK = "ok", "OK"
    FAILED = "failed", "Failed upstream"
    INCOMPLETE = "incomplete", "Incomplete stream"


TOKEN_FIELDS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
)
# The categories a record's token total adds up: reasoning is a part of output, not on top of it.
COUNTED_TOKEN_FIELDS = tuple(f for f in TOKEN_FIELDS if f != "reasoning_tokens")


# Counts other than tokens, in the order exports and APIs list them.
UNIT_FIELDS = ("request_count", "seats", "search_queries", "images", "audio_seconds", "credits")


class UsageRecord(models.Model):
    """One synced bucket, one proxied/ingested request, or one manual entry.

    `natural_key` is unique per account, so receiving the same thing again updates one row
    instead of adding another: `day:<date>|<model>|<line item>` for a synced bucket,
    `req:<request id>` for a request, `manual:<uuid>` for a manual entry. A request's key is
    kept unique by RequestKey; the others by the partial unique index below.

    On PostgreSQL the table is partitioned (migration 0012, usage/services/history.py): by
    source, then estimated (per-request) records by month of `bucket_start`, so a month of
    raw history is dropped as a whole partition. A unique index there must include the
    partition key, which is why requests are deduplicated in RequestKey instead. The same rule
    means: no foreign key to this model (`id` alone is not unique there), no unique index
    without `source` and `bucket_start`, no concurrent index builds on the parent. And a day
    before the raw history cannot be rebuilt from records (rollup_rebuild refuses it).
    """

    # No single-column FK indexes: the composite indexes below lead with these columns, and
    # every extra index is paid for on each of the millions of inserts.
    # No FK constraints in the database either: checking two per inserted row was a quarter
    # of PostgreSQL's time for a batch of ingested requests. Integrity holds without them:
    # every write of records also writes their roll-up rows (DailyUsage, whose constraints
    # stay) in the same statement or transaction, so a record for a missing account or
    # provider fails with its roll-up; deleting an account still cascades (Django does it,
    # holding the account row first: usage/signals.py).
    account = models.ForeignKey(
        ProviderAccount,
        on_delete=models.CASCADE,
        related_name="usage",
        db_index=False,
        db_constraint=False,
    )
    provider = models.ForeignKey(
        Provider, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )
    # The ingest key that wrote it (ingestion and the proxy); NULL for everything else. No index
    # and no constraint, like the two above; DO_NOTHING: a deleted key's spend stays its own.
    ingest_key = models.ForeignKey(
        "providers.IngestKey",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    natural_key = models.CharField(max_length=600)
    model = models.CharField(max_length=200, blank=True)
    line_item = models.CharField(max_length=255, blank=True)
    description = models.CharField(max_length=255, blank=True)
    request_id = models.CharField(max_length=200, blank=True)
    bucket_start = models.DateTimeField(help_text="UTC start of the bucket or time of the request.")
    granularity = models.CharField(max_length=8, choices=Granularity.choices)
    # Token categories. input_tokens is UNCACHED input; reasoning is a part of output.
    # Every count and amount is bounded (usage/bounds.py): validators for forms and the admin,
    # CHECK constraints (Meta) for everything else.
    input_tokens = models.BigIntegerField(default=0, validators=bounds.TOKENS.validators())
    cache_read_tokens = models.BigIntegerField(default=0, validators=bounds.TOKENS.validators())
    cache_write_tokens = models.BigIntegerField(default=0, validators=bounds.TOKENS.validators())
    cache_write_1h_tokens = models.BigIntegerField(default=0, validators=bounds.TOKENS.validators())
    output_tokens = models.BigIntegerField(default=0, validators=bounds.TOKENS.validators())
    reasoning_tokens = models.BigIntegerField(default=0, validators=bounds.TOKENS.validators())
    request_count = models.IntegerField(default=0, validators=bounds.COUNT.validators())
    # Other units.
    seats = models.DecimalField(
        max_digits=20, decimal_places=4, default=0, validators=bounds.SEATS.validators()
    )
    search_queries = models.IntegerField(default=0, validators=bounds.COUNT.validators())
    images = models.IntegerField(default=0, validators=bounds.COUNT.validators())
    audio_seconds = models.DecimalField(
        max_digits=20, decimal_places=3, default=0, validators=bounds.AUDIO_SECONDS.validators()
    )
    credits = models.DecimalField(
        max_digits=20, decimal_places=4, default=0, validators=bounds.CREDITS.validators()
    )
    cost = money_field(null=True, blank=True, validators=bounds.COST.validators())
    currency = models.CharField(max_length=3, default="USD")
    source = models.CharField(max_length=16, choices=Source.choices)
    status = models.CharField(max_length=16, choices=RecordStatus.choices, default=RecordStatus.OK)
    tags = models.JSONField(default=dict, blank=True)
    raw = models.JSONField(default=dict, blank=True, help_text="Provider payload, for audit.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-bucket_start", "-id"]
        constraints = [
            # Synced and manual rows; requests are unique through RequestKey. On PostgreSQL
            # this index lives on the partition those rows are in (same name).
            models.UniqueConstraint(
                fields=["account", "natural_key"],
                condition=~models.Q(source="estimated"),
                name="usage_record_unique_settled_key",
            ),
            bounds.check_constraint("usage_record", bounds.RECORD, nullable={"cost"}),
        ]
        indexes = [
            models.Index(fields=["account", "source", "bucket_start"], name="usage_acct_src_time"),
        ]

    def __str__(self) -> str:
        return f"{self.account} {self.model or self.line_item} {self.bucket_start:%Y-%m-%d}"

    @property
    def total_tokens(self) -> int:
        return sum(getattr(self, f) for f in COUNTED_TOKEN_FIELDS)


class RequestKey(models.Model):
    """A request id recorded for an account: what makes per-request records idempotent.

    The ingestion statement inserts here first (ON CONFLICT DO NOTHING) and writes records
    only for the keys it inserted, so an event sent again is a duplicate whatever its time.
    It is its own unpartitioned table because a unique index on the partitioned records
    would have to include the month, and a re-sent event without `occurred_at` gets a new
    time. Keys older than the raw history are deleted with it (raw_history_prune).
    """

    pk = models.CompositePrimaryKey("account_id", "natural_key")
    account = models.ForeignKey(
        ProviderAccount,
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
        db_constraint=False,  # like UsageRecord's: checked by the roll-up rows written with it
    )
    natural_key = models.CharField(max_length=600)
    bucket_start = models.DateTimeField(help_text="The request's time: when its key may go.")

    def __str__(self) -> str:
        return f"{self.account_id} {self.natural_key}"


class RawHistoryPrune(models.Model):
    """One removal of raw per-request records older than RAW_RETENTION_DAYS.

    The newest `before` is where the raw history starts: pages and exports of an earlier
    range say their per-request detail is gone (the roll-ups, official and manual rows stay),
    and recording refuses events before it, in the recording statement itself: their keys
    are gone, so a resent one could not be told from the original its roll-up still counts.
    It is written before anything is removed (usage.services.history.raw_history_prune).
    """

    before = models.DateTimeField(help_text="Records before this instant were removed.")
    pruned_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(
        null=True, blank=True, help_text="Empty while the removal is under way (or was cut off)."
    )
    months = models.PositiveIntegerField(default=0, help_text="Monthly partitions dropped.")
    records = models.BigIntegerField(default=0, help_text="Records deleted one by one.")
    keys = models.BigIntegerField(default=0, help_text="Request keys deleted.")

    class Meta:
        ordering = ["-before"]

    def __str__(self) -> str:
        return f"raw history before {self.before:%Y-%m-%d} removed"


class RollupTotals(models.Model):
    """The sums every roll-up keeps (usage/services/rollup.py writes them from one definition)."""

    # Estimated rows of an account and day that also has official figures: kept for
    # reconciliation, left out of totals. Set by the roll-up writers so reads need no subquery.
    superseded = models.BooleanField(default=False)
    cost = money_field(default=0, help_text="Sum of priced records only.")
    unpriced_count = models.IntegerField(default=0)
    unpriced_tokens = models.BigIntegerField(default=0)
    record_count = models.IntegerField(default=0)
    failed_count = models.IntegerField(default=0)
    request_count = models.BigIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    cache_read_tokens = models.BigIntegerField(default=0)
    cache_write_tokens = models.BigIntegerField(default=0)
    cache_write_1h_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)

    class Meta:
        abstract = True

    @property
    def total_tokens(self) -> int:
        return sum(getattr(self, f) for f in COUNTED_TOKEN_FIELDS)


class DailyUsage(RollupTotals):
    """Roll-up per account × model × UTC day × source, kept current by every write path.

    Dashboards and totals read this table, never the per-request rows.
    """

    # The unique (account, day, source, model) index serves every lookup by account and day.
    account = models.ForeignKey(
        ProviderAccount, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="+")
    model = models.CharField(max_length=200, blank=True)
    day = models.DateField()
    source = models.CharField(max_length=16, choices=Source.choices)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "day", "source", "model"], name="daily_usage_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.model} {self.day} {self.source}"


class Dimension(models.TextChoices):
    """What a DailyAttribution row breaks spend down by: a tag (usage.bounds.TAG_KEYS) or the
    ingest key."""

    PROJECT = "project", "Project"
    USER = "user", "User"
    FEATURE = "feature", "Feature"
    INGEST_KEY = "ingest_key", "Ingest key"


class DailyAttribution(RollupTotals):
    """Roll-up per account × UTC day × source × one dimension of who and what spent (the
    project, user or feature tag, or the ingest key) × its value. Every record counts once in
    each dimension, so each dimension's rows sum to DailyUsage's totals. Kept by the same
    writers, in the same statement or transaction, as DailyUsage, so a breakdown by tag or key
    never scans the records, and reads only the rows of its one dimension.

    `value`: the tag's value, or the ingest key's id as text; '' when the record had no such
    tag or no key wrote it (synced, manual and true-up rows, and proxy calls made with a
    personal token). The key is no foreign key: it may be deleted later and its spend must stay.
    """

    account = models.ForeignKey(
        ProviderAccount, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    day = models.DateField()
    source = models.CharField(max_length=16, choices=Source.choices)
    dimension = models.CharField(max_length=16, choices=Dimension.choices)
    value = models.CharField(max_length=bounds.TAG_MAX_CHARS, blank=True)

    class Meta:
        constraints = [
            # Led by (account, dimension, day): a breakdown reads one dimension over a range
            # of days, the tag bound one account's days of the tag dimensions.
            models.UniqueConstraint(
                fields=["account", "dimension", "day", "source", "value"],
                name="daily_attribution_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.day} {self.source} {self.dimension}={self.value}"


class SyncRun(models.Model):
    """One official sync of one account: what window, what happened, what changed."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        PARTIAL = "partial", "Partial"
        SKIPPED = "skipped", "Skipped"

    account = models.ForeignKey(ProviderAccount, on_delete=models.CASCADE, related_name="sync_runs")
    window_start = models.DateField()
    window_end = models.DateField(help_text="Exclusive.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    trigger = models.CharField(max_length=16, default="schedule")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Renewed while the run works (before each provider request and before writing); a
    # running run whose heartbeat is older than SYNC_LEASE_SECONDS lost its worker.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # 1 for a first try; a temporary failure is tried again by a later task, up to
    # SYNC_MAX_ATTEMPTS, and the failed run says when (next_retry_at).
    attempt = models.PositiveSmallIntegerField(default=1)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    fetched = models.IntegerField(default=0)
    created = models.IntegerField(default=0)
    updated = models.IntegerField(default=0)
    error_class = models.CharField(max_length=100, blank=True, choices=ErrorClass.choices)
    error_message = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["account", "status"], name="syncrun_acct_status")]

    def __str__(self) -> str:
        return f"sync {self.account_id} {self.window_start}..{self.window_end} {self.status}"

    @property
    def error_summary(self) -> str:
        """The one human line of the error (what a page shows first)."""
        return self.error_message.partition("\n")[0]

    @property
    def error_details(self) -> str:
        """Whatever follows that line: technical detail and the provider's body excerpt."""
        return self.error_message.partition("\n")[2]


class Price(models.Model):
    """An effective-dated price of one model at one provider, USD per unit.

    Prices are never edited in place by an import: a changed price closes the old row
    (valid_to) and adds a new one, so history keeps the price it was recorded under.
    """

    class Origin(models.TextChoices):
        IMPORTED = "imported", "Imported (LiteLLM)"
        ADMIN = "admin", "Set by an administrator"

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="prices")
    model = models.CharField(max_length=200)
    valid_from = models.DateTimeField()
    valid_to = models.DateTimeField(null=True, blank=True, help_text="Exclusive; empty = open.")
    origin = models.CharField(max_length=16, choices=Origin.choices, default=Origin.ADMIN)
    input_per_token = rate_field()
    cache_read_per_token = rate_field()
    cache_write_per_token = rate_field()
    cache_write_1h_per_token = rate_field()
    output_per_token = rate_field()
    reasoning_per_token = rate_field()
    per_request = rate_field()
    search_low = rate_field(help_text="Per request with low search context.")
    search_medium = rate_field()
    search_high = rate_field()
    per_image = rate_field()
    per_audio_second = rate_field()
    per_seat_month = rate_field()
    per_credit = rate_field()
    # Long-context tier (usage.pricing.Price): a request whose prompt (cached input included)
    # is above the threshold is priced at these rates, every token of it.
    long_context_threshold = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=bounds.CONTEXT_THRESHOLD.validators(),
        help_text="Prompt tokens above which the long-context rates apply; empty = no tier.",
    )
    input_per_token_long = rate_field(validators=bounds.RATE.validators())
    cache_read_per_token_long = rate_field(validators=bounds.RATE.validators())
    cache_write_per_token_long = rate_field(validators=bounds.RATE.validators())
    cache_write_1h_per_token_long = rate_field(validators=bounds.RATE.validators())
    output_per_token_long = rate_field(validators=bounds.RATE.validators())
    note = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["provider__name", "model", "-valid_from"]
        indexes = [models.Index(fields=["provider", "model", "valid_from"], name="price_lookup")]
        constraints = [
            bounds.check_constraint("price_tier", bounds.PRICE_TIER, nullable=bounds.PRICE_TIER),
        ]

    def __str__(self) -> str:
        return f"{self.provider.slug}/{self.model} from {self.valid_from:%Y-%m-%d}"

    def clean(self) -> None:
        """A long-context rate needs a threshold to apply at, and a threshold needs a rate."""
        from usage.pricing import LONG_CONTEXT_RATES

        rates = [name for name in LONG_CONTEXT_RATES if getattr(self, name) is not None]
        if rates and self.long_context_threshold is None:
            message = "Set the prompt size the long-context rates apply above."
            raise ValidationError({"long_context_threshold": message})
        if self.long_context_threshold is not None and not rates:
            raise ValidationError(
                {"long_context_threshold": "Set at least one long-context rate, or clear this."}
            )


class ModelAlias(models.Model):
    """Admin-defined name mapping, e.g. a deployment name to the priced model."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="aliases")
    alias = models.CharField(max_length=200)
    model = models.CharField(max_length=200)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "alias"], name="alias_unique_per_provider")
        ]

    def __str__(self) -> str:
        return f"{self.alias} → {self.model}"
