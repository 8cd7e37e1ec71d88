from __future__ import annotations

import json

from django import forms
from django.core.exceptions import ValidationError

from providers.account_settings import settings_clean, settings_form_fields, settings_values
from providers.fields import secret_text_validate
from providers.models import Provider, ProviderAccount
from providers.registry import ADAPTERS, get_adapter_class
from providers.services import account_has_usage, account_provider_change_check

_KEY_HELP = "Stored encrypted and never shown again. Leave empty to keep the current key."


def _key_help() -> tuple[str, str]:
    """(API key help, admin key help), naming the providers that use each (from the registry)."""
    adapters = [get_adapter_class(kind) for kind in ADAPTERS]
    proxied = [a.label for a in adapters if a.proxy_routes and a.proxy_needs_key]
    optional = [a.label for a in adapters if a.proxy_routes and a.api_key_optional()]
    hints = [a.admin_key_hint for a in adapters if a.secret_field == "admin_key"]
    admin = ", ".join(hints[:-1]) + f", or {hints[-1]}" if len(hints) > 1 else "".join(hints)
    used_by = ", ".join(proxied)
    if optional:
        used_by += f"; optional for {', '.join(optional)}: sent only when stored"
    return (
        f"Used by the proxy ({used_by}). {_KEY_HELP}",
        f"For official usage sync: {admin}. {_KEY_HELP}",
    )


_API_KEY_HELP, _ADMIN_KEY_HELP = _key_help()


class ProviderSettingsFormMixin:
    """Adds every provider's settings fields (generated from the adapters' declarations) to an
    account ModelForm with a ``provider`` field, and validates provider and settings with the
    rules the service applies. Only the chosen provider's settings are used."""

    def add_setting_fields(self) -> None:
        self.setting_fields = settings_form_fields()
        current = self.instance.provider.slug if self.instance.provider_id else None
        if current and account_has_usage(account=self.instance):
            # The provider is fixed (account_provider_change_check): only its settings apply.
            self.fields["provider"].help_text = "Fixed: this account already has usage."
            self.setting_fields = {
                name: spec for name, spec in self.setting_fields.items() if spec[0] == current
            }
        # The page shows only the chosen provider's settings (static/js/app.js reads this map
        # of option value -> provider kind; without JavaScript every provider's are shown).
        choices = self.fields["provider"].queryset
        self.fields["provider"].widget.attrs["data-provider-kinds"] = json.dumps(
            {str(p.pk): p.slug for p in choices}
        )
        for field_name, (kind, setting, field) in self.setting_fields.items():
            shown = settings_values(
                kind=kind, stored=self.instance.config if kind == current else None
            )
            field.initial = shown[setting]
            self.fields[field_name] = field

    def settings_input(self, kind: str) -> dict:
        return {
            setting: self.cleaned_data.get(field_name)
            for field_name, (k, setting, _) in self.setting_fields.items()
            if k == kind and field_name not in self.errors
        }

    def clean_provider_and_settings(self, provider: Provider | None) -> None:
        if provider is None:
            return
        for field_name, (kind, _, _) in self.setting_fields.items():
            if kind != provider.slug:  # another provider's box: not used, so not an error
                self._errors.pop(field_name, None)
        try:
            account_provider_change_check(account=self.instance, provider=provider)
        except ValidationError as exc:
            self.add_error("provider", exc.message_dict["provider"])
        try:
            settings_clean(kind=provider.slug, values=self.settings_input(provider.slug))
        except ValidationError as exc:
            for setting, messages in exc.message_dict.items():
                self.add_error(f"{provider.slug}_{setting}", messages)


class AccountForm(ProviderSettingsFormMixin, forms.ModelForm):
    """Secret fields are write-only: they never render a value, and empty means "keep"."""

    api_key = forms.CharField(
        label="API key",
        required=False,
        strip=True,
        max_length=500,
        validators=[secret_text_validate],
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text=_API_KEY_HELP,
    )
    admin_key = forms.CharField(
        label="Admin key / GitHub token",
        required=False,
        strip=True,
        max_length=500,
        validators=[secret_text_validate],
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text=_ADMIN_KEY_HELP,
    )
    clear_api_key = forms.BooleanField(required=False, label="Remove the stored API key")
    clear_admin_key = forms.BooleanField(required=False, label="Remove the stored admin key")

    class Meta:
        model = ProviderAccount
        fields = ["provider", "name", "monthly_budget", "is_active"]

    def __init__(self, *args, workspace, **kwargs):
        super().__init__(*args, **kwargs)
        self.workspace = workspace
        self.fields["provider"].queryset = Provider.objects.all()
        if not self.instance.pk:
            del self.fields["clear_api_key"], self.fields["clear_admin_key"]
        self.add_setting_fields()

    def clean_name(self):
        name = self.cleaned_data["name"]
        clash = ProviderAccount.objects.filter(workspace=self.workspace, name=name)
        if self.instance.pk:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise forms.ValidationError("This workspace already has an account with this name.")
        return name

    def clean(self):
        data = super().clean()
        self.clean_provider_and_settings(data.get("provider"))
        return data

    def service_kwargs(self) -> dict:
        """What to pass to account_create / account_update."""
        from providers.services import UNCHANGED

        data = self.cleaned_data
        config = self.settings_input(data["provider"].slug)
        kwargs = {
            "provider": data["provider"],
            "name": data["name"],
            "monthly_budget": data.get("monthly_budget"),
            "is_active": data.get("is_active", True),
            "config": config,
        }
        for field in ("api_key", "admin_key"):
            if data.get(f"clear_{field}"):
                kwargs[field] = None
            elif data.get(field):
                kwargs[field] = data[field]
            elif self.instance.pk:
                kwargs[field] = UNCHANGED
        return kwargs
