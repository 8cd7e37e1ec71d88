from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from django import forms

from providers.models import IngestKey, Provider, ProviderAccount
from usage import bounds
from usage.models import Source


class ManualEntryForm(forms.Form):
    account = forms.ModelChoiceField(queryset=ProviderAccount.objects.none())
    date = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}), help_text="UTC day.")
    model = forms.CharField(max_length=200, required=False, help_text="Model or line item.")
    description = forms.CharField(
        max_length=255, required=False, help_text="e.g. “Copilot Business, 12 seats” or an invoice."
    )
    # Every figure within its bound (usage/bounds.py): a form error in place, never a 500.
    cost = forms.DecimalField(max_digits=28, **bounds.CHARGE.form_kwargs(), label="Cost (USD)")
    input_tokens = forms.IntegerField(**bounds.TOKENS.form_kwargs(), required=False, initial=0)
    output_tokens = forms.IntegerField(**bounds.TOKENS.form_kwargs(), required=False, initial=0)
    request_count = forms.IntegerField(
        **bounds.COUNT.form_kwargs(), required=False, initial=0, label="Requests"
    )
    seats = forms.DecimalField(
        max_digits=20, **bounds.SEATS.form_kwargs(), required=False, initial=0
    )

    def __init__(self, *args, workspace, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["account"].queryset = ProviderAccount.objects.filter(
            workspace=workspace
        ).select_related("provider")

    def clean_date(self):
        value = self.cleaned_data["date"]
        if value < date(2000, 1, 1):
            raise forms.ValidationError("Must be 2000-01-01 or later.")
        if value > date.today() + timedelta(days=1):
            raise forms.ValidationError("Must not be in the future.")
        return value

    def clean(self):
        data = super().clean()
        if not data.get("model") and not data.get("description"):
            self.add_error("description", "Give a model or a description.")
        for f in ("input_tokens", "output_tokens", "request_count"):
            data[f] = data.get(f) or 0
        data["seats"] = data.get("seats") or Decimal(0)
        return data


class HistoryFilterForm(forms.Form):
    provider = forms.ModelChoiceField(
        queryset=Provider.objects.all(),
        required=False,
        to_field_name="slug",
        empty_label="All providers",
    )
    account = forms.ModelChoiceField(
        queryset=ProviderAccount.objects.none(), required=False, empty_label="All accounts"
    )
    model = forms.CharField(required=False, max_length=200)
    source = forms.ChoiceField(choices=[("", "All sources"), *Source.choices], required=False)
    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, workspace, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["account"].queryset = ProviderAccount.objects.filter(workspace=workspace)
        # One filter per attribution tag (X-Tracker-Project/User/Feature, ingestion's tags).
        for tag in bounds.TAG_KEYS:
            self.fields[tag] = forms.CharField(
                required=False,
                max_length=bounds.TAG_MAX_CHARS,
                label=f"{tag.title()} tag",
                help_text="Exact value.",
            )
        self.fields["ingest_key"] = forms.ModelChoiceField(
            queryset=IngestKey.objects.filter(account__workspace=workspace).select_related(
                "account__provider"
            ),
            required=False,
            empty_label="Any ingest key",
            label="Ingest key",
        )

    def tags(self) -> dict[str, str]:
        """The tag filters given (cleaned), for usage_history(tags=...)."""
        return {tag: self.cleaned_data[tag] for tag in bounds.TAG_KEYS if self.cleaned_data[tag]}

    def clean(self):
        data = super().clean()
        if data.get("start") and data.get("end") and data["start"] > data["end"]:
            self.add_error("end", "Must not be before the start date.")
        return data
