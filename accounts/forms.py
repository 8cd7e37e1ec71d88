from __future__ import annotations

import zoneinfo

from django import forms
from django.contrib.auth.forms import UserCreationForm

from accounts.models import INVITABLE_ROLES, Role, User

# Offered first in the time-zone suggestions; every IANA zone is accepted.
COMMON_TIME_ZONES = [
    "UTC",
    "America/Los_Angeles",
    "America/Denver",
    "America/Chicago",
    "America/New_York",
    "America/Sao_Paulo",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Paris",
    "Africa/Johannesburg",
    "Asia/Dubai",
    "Asia/Kolkata",
    "Asia/Singapore",
    "Asia/Shanghai",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Pacific/Auckland",
]


def time_zone_names() -> list[str]:
    """Every zone the server knows: the common ones first, then the rest alphabetically."""
    known = zoneinfo.available_timezones()
    common = [z for z in COMMON_TIME_ZONES if z in known]
    return common + sorted(known - set(common))


class TimeZoneField(forms.CharField):
    """A searchable text input (suggestions from a <datalist>), checked against zoneinfo.

    Case and spaces are forgiven ("europe/berlin", "America/New York"); anything else is
    refused in place, naming an example."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 64)
        kwargs.setdefault(
            "help_text", "Start typing a city or region, e.g. Berlin, New_York, Tokyo."
        )
        super().__init__(**kwargs)
        self.widget.attrs.update(
            {"list": "time-zones", "autocomplete": "off", "spellcheck": "false"}
        )

    def clean(self, value):
        value = super().clean(value)
        if not value:
            return value
        wanted = value.strip().replace(" ", "_").casefold()
        for name in zoneinfo.available_timezones():
            if name.casefold() == wanted:
                return name
        raise forms.ValidationError(
            "Unknown time zone %(value)s: pick one from the list, e.g. Europe/Berlin.",
            code="invalid_time_zone",
            params={"value": repr(value[:64])},
        )


class SignUpForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        model = User
        fields = ["username", "email"]


class ProfileForm(forms.ModelForm):
    time_zone = TimeZoneField()

    class Meta:
        model = User
        fields = ["email", "time_zone"]


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        required=False,
        help_text="What it is for, e.g. “nightly export script”.",
    )


class WorkspaceForm(forms.Form):
    name = forms.CharField(max_length=100)
    time_zone = TimeZoneField(
        help_text="Draws the workspace's days and months (budgets, this month) for every member."
    )


class InviteForm(forms.Form):
    role = forms.ChoiceField(choices=INVITABLE_ROLES, initial=Role.VIEWER)
    email = forms.EmailField(
        required=False,
        help_text="Optional: the link is emailed there, and only an account with this address "
        "may use it. Empty: copy the link yourself.",
    )


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)
