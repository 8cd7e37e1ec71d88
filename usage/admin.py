from django import forms
from django.contrib import admin

from audit.admin import AuditedAdminMixin
from usage.models import (
    DailyUsage,
    ModelAlias,
    Price,
    RawHistoryPrune,
    Source,
    SyncRun,
    UsageRecord,
)
from usage.pricing import LONG_CONTEXT_FIELDS
from usage.selectors import raw_history_missing
from usage.services.rollup import rollup_rebuild


class UsageRecordForm(forms.ModelForm):
    class Meta:
        model = UsageRecord
        # Every editable field, as the admin's own form had (natural_key is read-only there).
        fields = [
            f.name
            for f in UsageRecord._meta.concrete_fields
            if f.editable and not f.primary_key and f.name != "natural_key"
        ]

    def clean(self):
        cleaned = super().clean()
        at, source = cleaned.get("bucket_start"), cleaned.get("source")
        kept_from = at and source == Source.ESTIMATED and raw_history_missing(start=at.date())
        if kept_from:
            # Its day's estimated roll-up is rebuilt from records, which are gone before it.
            self.add_error(
                "bucket_start",
                f"Per-request records before {kept_from} were removed (RAW_RETENTION_DAYS); "
                "an estimated record cannot be added or moved there.",
            )
        return cleaned


@admin.register(UsageRecord)
class UsageRecordAdmin(AuditedAdminMixin, admin.ModelAdmin):
    form = UsageRecordForm
    list_display = ["bucket_start", "account", "model", "source", "status", "cost", "request_count"]
    list_filter = ["source", "status", "provider"]
    search_fields = ["model", "request_id", "description", "account__name"]
    date_hierarchy = "bucket_start"
    readonly_fields = ["natural_key", "created_at", "updated_at"]
    raw_id_fields = ["account"]

    def save_model(self, request, obj, form, change):
        # Admin edits go through the same roll-up as every other write path.
        if not obj.natural_key:
            import uuid

            obj.natural_key = f"manual:{uuid.uuid4()}"
        obj.provider_id = obj.account.provider_id
        super().save_model(request, obj, form, change)
        rollup_rebuild(account_id=obj.account_id, days=[obj.bucket_start.date()], source=obj.source)

    def delete_model(self, request, obj):
        day, account_id, source = obj.bucket_start.date(), obj.account_id, obj.source
        super().delete_model(request, obj)
        rollup_rebuild(account_id=account_id, days=[day], source=source)

    def delete_queryset(self, request, queryset):
        groups = {(r.account_id, r.source, r.bucket_start.date()) for r in queryset}
        super().delete_queryset(request, queryset)
        for account_id, source, day in groups:
            rollup_rebuild(account_id=account_id, days=[day], source=source)


@admin.register(DailyUsage)
class DailyUsageAdmin(admin.ModelAdmin):
    list_display = ["day", "account", "model", "source", "cost", "unpriced_count", "request_count"]
    list_filter = ["source", "provider"]

    def has_add_permission(self, request):
        return False  # derived data: maintained by the write paths

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(RawHistoryPrune)
class RawHistoryPruneAdmin(admin.ModelAdmin):
    """The log of RAW_RETENTION_DAYS removals (usage.services.history): read only."""

    list_display = ["before", "pruned_at", "months", "records"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # the newest row is where ingestion starts refusing old events


@admin.register(SyncRun)
class SyncRunAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "account",
        "window_start",
        "window_end",
        "status",
        "fetched",
        "created",
        "updated",
        "error_class",
    ]
    list_filter = ["status"]


@admin.register(Price)
class PriceAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = [
        "provider",
        "model",
        "valid_from",
        "valid_to",
        "origin",
        "input_per_token",
        "output_per_token",
    ]
    list_filter = ["provider", "origin"]
    search_fields = ["model"]
    readonly_fields = ["origin", "created_at"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    f.name
                    for f in Price._meta.fields
                    if f.editable and not f.primary_key and f.name not in LONG_CONTEXT_FIELDS
                ]
                + ["created_at"]
            },
        ),
        (
            "Long-context tier",
            {
                "fields": list(LONG_CONTEXT_FIELDS),
                "description": "A request whose prompt (input, cached input included) is above "
                "the threshold is priced at these rates, every token of it. A rate left empty "
                "keeps the ordinary rate.",
            },
        ),
    ]

    def save_model(self, request, obj, form, change):
        # A price set here is an operator override: it wins over imported prices, and a later
        # import never touches it.
        obj.origin = Price.Origin.ADMIN
        super().save_model(request, obj, form, change)
        since = obj.valid_from.date().isoformat() if obj.valid_from else "DATE"
        self.message_user(
            request,
            "Usage already recorded keeps its cost until re-priced: "
            f"manage.py reprice --since {since}, or the “Re-price” action.",
        )

    @admin.action(description="Re-price estimated usage from the selected prices’ start")
    def reprice_from_selected(self, request, queryset):
        from usage.services.prices import reprice_estimated

        earliest = min((p.valid_from for p in queryset), default=None)
        if earliest is None:
            return
        changed = reprice_estimated(since=earliest.date())
        self.message_user(request, f"Re-priced {changed} estimated record(s).")

    actions = ["reprice_from_selected"]


@admin.register(ModelAlias)
class ModelAliasAdmin(admin.ModelAdmin):
    list_display = ["provider", "alias", "model"]
    list_filter = ["provider"]
    search_fields = ["alias", "model"]
