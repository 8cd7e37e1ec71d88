from __future__ import annotations

import zoneinfo

from django import forms
from django.contrib.auth.forms import UserCreationForm

from accounts.models import User

TIME_ZONE_CHOICES = [(z, z) for z in sorted(zoneinfo.available_timezones())]


class SignUpForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        model = User
        fields = ["username", "email"]


class ProfileForm(forms.ModelForm):
    time_zone = forms.ChoiceField(choices=TIME_ZONE_CHOICES)

    class Meta:
        model = User
        fields = ["email", "time_zone"]


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        required=False,
        help_text="What it is for, e.g. “nightly export script”.",
    )
