from __future__ import annotations

import json

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Q

from alerts.models import Alert, Budget, NotificationChannel
from alerts.services import BUDGET_SCOPE_FIELDS, channel_target_clean, thresholds_clean
from alerts.webhooks import FORMAT_CHOICES
from providers.models import IngestKey, Provider, ProviderAccount
from usage import bounds


class ThresholdsField(forms.CharField):
    """Percentages typed as "80, 100"."""

    def prepare_value(self, value):
        if isinstance(value, (list, tuple)):
            return ", ".join(str(v) for v in value)
        return value

    def to_python(self, value):
        text = super().to_python(value)
        parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
        numbers = []
        for part in parts:
            try:
                numbers.append(int(part))
            except ValueError:
                raise ValidationError(f"{part!r} is not a whole number.") from None
        return thresholds_clean(numbers)


class IngestKeyChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, key: IngestKey) -> str:
        # The hint is the key's public first characters; the plaintext is never stored.
        name = key.name or f"{key.hint}…"
        revoked = " (revoked)" if key.revoked_at else ""
        return f"{name} · {key.account.name}{revoked}"


class BudgetForm(forms.Form):
    scope = forms.ChoiceField(choices=Budget.Scope.choices, label="Covers")
    provider = forms.ModelChoiceField(
        queryset=Provider.objects.none(), required=False, help_text="For “One provider”."
    )
    account = forms.ModelChoiceField(
        queryset=ProviderAccount.objects.none(), required=False, help_text="For “One account”."
    )
    ingest_key = IngestKeyChoiceField(
        queryset=IngestKey.objects.none(),
        required=False,
        help_text="For “One ingest key”: the calls made and usage sent with it.",
    )
    tag = forms.ChoiceField(
        choices=[("", "---------"), *Budget.Tag.choices],
        required=False,
        help_text="For “One tag value”: the tag calls carry (project, user or feature)…",
    )
    tag_value = forms.CharField(
        max_length=bounds.TAG_MAX_CHARS,
        required=False,
        strip=True,
        help_text="…and its value, exactly as sent, e.g. “search”.",
    )
    period = forms.ChoiceField(
        choices=Budget.Period.choices,
        initial=Budget.Period.MONTHLY,
        required=False,  # left out: monthly, as budgets were before periods
        help_text="Calendar days, weeks (Monday to Sunday) or months in the workspace's time zone.",
    )
    amount = forms.DecimalField(
        max_digits=20, **bounds.BUDGET.form_kwargs(), label="Amount (USD per period)"
    )
    thresholds = ThresholdsField(
        initial="80, 100", help_text="Percentages of the amount, e.g. 80, 100."
    )
    forecast_alert = forms.BooleanField(
        required=False,
        initial=True,
        label="Warn when the month-end forecast exceeds the budget",
        help_text="Forecasts apply only to monthly budgets over all spend, a provider or an "
        "account; other budgets ignore this.",
    )
    enforced = forms.BooleanField(
        required=False,
        label="Enforce: refuse proxied calls once spent",
        help_text="Once the period's spend reaches the amount, the proxy answers the calls this "
        "budget covers with 429 until the period ends. Ingested and synced usage is never "
        "refused, but it counts.",
    )
    refuse_unpriced = forms.BooleanField(
        required=False,
        label="Also refuse models without a price",
        help_text="Enforced budgets only: a model with no known price would spend uncounted.",
    )

    # How the page groups the fields (legend, field names).
    GROUPS = (
        ("What it covers", ("scope", "provider", "account", "ingest_key", "tag", "tag_value")),
        ("How much", ("period", "amount")),
        ("Alerts", ("thresholds", "forecast_alert")),
        ("Enforcement", ("enforced", "refuse_unpriced")),
    )

    def __init__(self, *args, workspace, instance: Budget | None = None, **kwargs):
        if instance is not None and "initial" not in kwargs:
            kwargs["initial"] = {
                "scope": instance.scope,
                "provider": instance.provider_id,
                "account": instance.account_id,
                "ingest_key": instance.ingest_key_id,
                "tag": instance.tag,
                "tag_value": instance.tag_value,
                "period": instance.period,
                "amount": instance.amount,
                "thresholds": instance.thresholds,
                "forecast_alert": instance.forecast_alert,
                "enforced": instance.enforced,
                "refuse_unpriced": instance.refuse_unpriced,
            }
        super().__init__(*args, **kwargs)
        # static/js/app.js shows only the chosen scope's pickers.
        self.fields["scope"].widget.attrs["data-scope-fields"] = json.dumps(
            {scope: list(names) for scope, names in BUDGET_SCOPE_FIELDS.items()}
        )
        self.fields["provider"].queryset = Provider.objects.all()
        # Only the workspace's accounts and keys are offered, and only they validate.
        self.fields["account"].queryset = ProviderAccount.objects.filter(
            workspace=workspace
        ).select_related("provider")
        # Active keys only, but a budget keeps the key it has even once that is revoked.
        keys = Q(revoked_at__isnull=True)
        if instance is not None and instance.ingest_key_id:
            keys |= Q(pk=instance.ingest_key_id)
        self.fields["ingest_key"].queryset = (
            IngestKey.objects.filter(keys, account__workspace=workspace)
            .select_related("account")
            .order_by("account__name", "name", "pk")
        )

    def groups(self):
        return [(legend, [self[name] for name in names]) for legend, names in self.GROUPS]

    def clean(self):
        data = super().clean()
        if "period" in data:
            data["period"] = data["period"] or Budget.Period.MONTHLY
        scope = data.get("scope")
        # The pickers of other scopes are ignored rather than rejected: the form shows them
        # all. A missing target is the service's error (alerts.services._budget_validate).
        for name, blank in (
            ("provider", None),
            ("account", None),
            ("ingest_key", None),
            ("tag", ""),
            ("tag_value", ""),
        ):
            if name in data and name not in BUDGET_SCOPE_FIELDS.get(scope, ()):
                data[name] = blank
        return data


class AlertFilterForm(forms.Form):
    kind = forms.ChoiceField(choices=[("", "Any kind"), *Alert.Kind.choices], required=False)
    state = forms.ChoiceField(
        choices=[("", "All"), ("open", "Not acknowledged"), ("acknowledged", "Acknowledged")],
        required=False,
    )

    def selector_kwargs(self) -> dict:
        if not self.is_valid():
            return {}
        state = self.cleaned_data.get("state")
        return {
            "kind": self.cleaned_data.get("kind") or None,
            "acknowledged": {"open": False, "acknowledged": True}.get(state),
        }


class ChannelForm(forms.Form):
    kind = forms.ChoiceField(choices=NotificationChannel.Kind.choices)
    target = forms.CharField(
        max_length=2000,
        label="Email address or webhook URL",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    format = forms.ChoiceField(
        choices=FORMAT_CHOICES,
        initial="generic",
        required=False,  # an email channel has none; a webhook left unset is generic
        label="Webhook format",
        help_text="Webhooks only: generic JSON, or the platform's own message.",
    )

    def clean(self):
        data = super().clean()
        if "format" in data:
            data["format"] = data["format"] or "generic"
        if data.get("kind") and data.get("target"):
            try:
                data["target"] = channel_target_clean(kind=data["kind"], target=data["target"])
            except ValidationError as exc:
                for field, messages in exc.message_dict.items():
                    for message in messages:
                        self.add_error(field, message)
        return data
