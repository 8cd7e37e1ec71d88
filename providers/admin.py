from django import forms
from django.contrib import admin

from audit.admin import AuditedAdminMixin
from providers.account_settings import settings_clean
from providers.fields import secret_text_validate
from providers.forms import ProviderSettingsFormMixin
from providers.models import IngestKey, Invoice, Provider, ProviderAccount


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "has_official_api", "supports_per_request", "supports_manual"]
    readonly_fields = ["slug"]


class ProviderAccountAdminForm(ProviderSettingsFormMixin, forms.ModelForm):
    """Secrets are write-only here too: never decrypted, never shown, only replaced.

    Provider settings are typed fields generated from the adapters, and the provider cannot
    change once the account has usage: the same rules as the app's form and the API.
    """

    new_api_key = forms.CharField(
        required=False,
        validators=[secret_text_validate],
        widget=forms.PasswordInput,
        help_text="Leave empty to keep the current key.",
    )
    new_admin_key = forms.CharField(
        required=False,
        validators=[secret_text_validate],
        widget=forms.PasswordInput,
        help_text="Leave empty to keep the current key.",
    )

    class Meta:
        model = ProviderAccount
        fields = [
            "workspace",
            "provider",
            "name",
            "monthly_budget",
            "is_active",
            "needs_attention",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_setting_fields()

    def clean(self):
        data = super().clean()
        self.clean_provider_and_settings(data.get("provider"))
        return data

    def save(self, commit=True):
        account = super().save(commit=False)
        account.config = settings_clean(
            kind=account.provider.slug, values=self.settings_input(account.provider.slug)
        )
        for field in ("api_key", "admin_key"):
            if self.cleaned_data.get(f"new_{field}"):
                account.set_secret(field, self.cleaned_data[f"new_{field}"])
        if commit:
            account.save()
        return account


@admin.register(ProviderAccount)
class ProviderAccountAdmin(AuditedAdminMixin, admin.ModelAdmin):
    form = ProviderAccountAdminForm
    list_display = [
        "name",
        "provider",
        "workspace",
        "is_active",
        "api_key_hint",
        "last_sync_status",
    ]
    list_filter = ["provider", "is_active", "last_sync_status"]
    search_fields = ["name", "workspace__name"]
    readonly_fields = [
        "api_key_hint",
        "admin_key_hint",
        "last_sync_at",
        "last_sync_status",
        "last_sync_error",
        "created_at",
        "updated_at",
    ]

    @admin.display(description="API key")
    def api_key_hint(self, obj):
        return f"set (…{obj.api_key_last4})" if obj.has_api_key else "not set"

    @admin.display(description="Admin key / token")
    def admin_key_hint(self, obj):
        return f"set (…{obj.admin_key_last4})" if obj.has_admin_key else "not set"


@admin.register(Invoice)
class InvoiceAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ["account", "month", "amount", "currency", "updated_at"]
    list_filter = ["currency"]
    search_fields = ["account__name", "note"]
    readonly_fields = ["created_at", "updated_at"]


@admin.register(IngestKey)
class IngestKeyAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ["hint", "name", "account", "created_at", "last_used_at", "revoked_at"]
    fields = ["account", "name", "hint", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["account", "hint", "created_at", "last_used_at"]

    def has_add_permission(self, request):
        return False  # keys are created in the app, where the plaintext is shown once
