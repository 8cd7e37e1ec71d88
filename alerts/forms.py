from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from alerts.models import Alert, Budget, NotificationChannel
from alerts.services import channel_target_clean, thresholds_clean
from alerts.webhooks import FORMAT_CHOICES
from providers.models import Provider, ProviderAccount
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


class BudgetForm(forms.Form):
    scope = forms.ChoiceField(choices=Budget.Scope.choices)
    provider = forms.ModelChoiceField(queryset=Provider.objects.none(), required=False)
    account = forms.ModelChoiceField(queryset=ProviderAccount.objects.none(), required=False)
    amount = forms.DecimalField(
        max_digits=20, **bounds.BUDGET.form_kwargs(), label="Amount (USD / month)"
    )
    thresholds = ThresholdsField(
        initial="80, 100", help_text="Percentages of the amount, e.g. 80, 100."
    )
    forecast_alert = forms.BooleanField(
        required=False,
        initial=True,
        label="Warn when the month-end forecast exceeds the budget",
    )

    def __init__(self, *args, workspace, instance: Budget | None = None, **kwargs):
        if instance is not None and "initial" not in kwargs:
            kwargs["initial"] = {
                "scope": instance.scope,
                "provider": instance.provider_id,
                "account": instance.account_id,
                "amount": instance.amount,
                "thresholds": instance.thresholds,
                "forecast_alert": instance.forecast_alert,
            }
        super().__init__(*args, **kwargs)
        self.fields["provider"].queryset = Provider.objects.all()
        # Only the workspace's accounts are offered, and only they validate.
        self.fields["account"].queryset = ProviderAccount.objects.filter(
            workspace=workspace
        ).select_related("provider")

    def clean(self):
        data = super().clean()
        scope = data.get("scope")
        if scope == Budget.Scope.PROVIDER and not data.get("provider"):
            self.add_error("provider", "Choose the provider this budget covers.")
        if scope == Budget.Scope.ACCOUNT and not data.get("account"):
            self.add_error("account", "Choose the account this budget covers.")
        # The unused target is ignored rather than rejected: the form shows both pickers.
        if scope != Budget.Scope.PROVIDER:
            data["provider"] = None
        if scope != Budget.Scope.ACCOUNT:
            data["account"] = None
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
