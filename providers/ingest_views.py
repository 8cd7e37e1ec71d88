"""Ingest keys page: list an account's keys, create one (shown once), revoke.

Every member sees the keys (hints only); members make keys and revoke their own; admins
revoke any."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts.access import own_or_admin, role_required
from accounts.models import Role
from providers import selectors, services
from providers.models import IngestKey


class IngestKeyForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        required=False,
        help_text="What will use it, e.g. “billing-service (prod)”.",
    )


@role_required(Role.VIEWER, Role.MEMBER)
def ingest_key_list(request, pk):
    account = selectors.account_get_for_workspace(workspace=request.membership.workspace, pk=pk)
    form = IngestKeyForm(request.POST or None)
    new_key = None
    if request.method == "POST" and form.is_valid():
        new_key, _ = services.ingest_key_create(
            account=account, name=form.cleaned_data["name"], created_by=request.user
        )
        form = IngestKeyForm()
    context = {
        "account": account,
        "keys": IngestKey.objects.filter(account=account).select_related("created_by"),
        "form": form,
        "new_key": new_key,
        "events_url": request.build_absolute_uri("/api/usage/events"),
        "traces_url": request.build_absolute_uri(reverse("otlp-traces")),
    }
    response = render(request, "providers/ingest_keys.html", context)
    if new_key:
        response["Cache-Control"] = "no-store"  # the one page that shows the plaintext
    return response


@role_required(Role.MEMBER)
@require_POST
def ingest_key_revoke(request, pk, key_id):
    account = selectors.account_get_for_workspace(workspace=request.membership.workspace, pk=pk)
    key = get_object_or_404(IngestKey, account=account, pk=key_id)
    if not own_or_admin(request.membership, key.created_by_id):
        raise PermissionDenied("Members revoke only the keys they made; admins revoke any.")
    services.ingest_key_revoke(key=key)
    messages.success(request, f"Revoked ingest key {key.hint}….")
    return redirect("ingest-key-list", pk=account.pk)
