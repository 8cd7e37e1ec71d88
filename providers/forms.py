from __future__ import annotations

from django import forms

from providers.models import Provider, ProviderAccount

_KEY_HELP = "Stored encrypted and never shown again. Leave empty to keep the current key."


class AccountForm(forms.ModelForm):
    """Secret fields are write-only: they never render a value, and empty means "keep"."""

    api_key = forms.CharField(
        label="API key",
        required=False,
        strip=True,
        max_length=500,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Used by the proxy (OpenAI, Anthropic, Groq, Perplexity). " + _KEY_HELP,
    )
    admin_key = forms.CharField(
        label="Admin key / GitHub token",
        required=False,
        strip=True,
        max_length=500,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="For official usage sync: OpenAI sk-admin-…, Anthropic sk-ant-admin…, "
        "or a GitHub token. " + _KEY_HELP,
    )
    clear_api_key = forms.BooleanField(required=False, label="Remove the stored API key")
    clear_admin_key = forms.BooleanField(required=False, label="Remove the stored admin key")
    organization = forms.CharField(
        required=False, max_length=100, help_text="GitHub organization (Copilot only)."
    )

    class Meta:
        model = ProviderAccount
        fields = ["provider", "name", "monthly_budget", "is_active"]

    def __init__(self, *args, owner, **kwargs):
        super().__init__(*args, **kwargs)
        self.owner = owner
        self.fields["provider"].queryset = Provider.objects.all()
        if self.instance.pk:
            self.fields["organization"].initial = self.instance.config.get("organization", "")
        else:
            del self.fields["clear_api_key"], self.fields["clear_admin_key"]

    def clean_name(self):
        name = self.cleaned_data["name"]
        clash = ProviderAccount.objects.filter(owner=self.owner, name=name)
        if self.instance.pk:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise forms.ValidationError("You already have an account with this name.")
        return name

    def clean(self):
        data = super().clean()
        provider = data.get("provider")
        if provider and provider.slug == "copilot" and not data.get("organization"):
            self.add_error("organization", "GitHub Copilot needs the organization name.")
        return data

    def service_kwargs(self) -> dict:
        """What to pass to account_create / account_update."""
        from providers.services import UNCHANGED

        data = self.cleaned_data
        config = dict(self.instance.config or {}) if self.instance.pk else {}
        if data.get("organization"):
            config["organization"] = data["organization"]
        else:
            config.pop("organization", None)
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
