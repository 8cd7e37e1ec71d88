"""Ingest keys page: list an account's keys, create one (shown once), set its request limit,
revoke.

Every member sees the keys (hints only); members make keys and change or revoke their own;
admins change or revoke any."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts.access import own_or_admin, role_required
from accounts.models import Role
from providers import selectors, services
from providers.models import IngestKey
from providers.services import REQUESTS_PER_MINUTE_MAX


def _requests_per_minute_field() -> forms.IntegerField:
    return forms.IntegerField(
        required=False,
        min_value=1,
        max_value=REQUESTS_PER_MINUTE_MAX,
        label="Request limit (calls per minute)",
        help_text="The proxy answers 429 past this many calls in a clock minute. "
        "Empty: no limit. Ingestion is never limited.",
    )


class IngestKeyForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        required=False,
        help_text="What will use it, e.g. “billing-service (prod)”.",
    )
    requests_per_minute = _requests_per_minute_field()


class IngestKeyLimitForm(forms.Form):
    requests_per_minute = _requests_per_minute_field()


def _service_errors(form: forms.Form, exc: ValidationError) -> None:
    for field, errors in exc.message_dict.items():
        for error in errors:
            form.add_error(field if field in form.fields else None, error)


@role_required(Role.VIEWER, Role.MEMBER)
def ingest_key_list(request, pk):
    account = selectors.account_get_for_workspace(workspace=request.membership.workspace, pk=pk)
    form = IngestKeyForm(request.POST or None)
    new_key = None
    if request.method == "POST" and form.is_valid():
        try:
            new_key, _ = services.ingest_key_create(
                account=account, created_by=request.user, **form.cleaned_data
            )
        except ValidationError as exc:
            _service_errors(form, exc)
        else:
            form = IngestKeyForm()
    response = _render_keys(request, account, form=form, new_key=new_key)
    if new_key:
        response["Cache-Control"] = "no-store"  # the one page that shows the plaintext
    return response


def _render_keys(request, account, *, form=None, new_key=None, limit_form=None, limit_key=None):
    context = {
        "account": account,
        "keys": IngestKey.objects.filter(account=account).select_related("created_by"),
        "form": form or IngestKeyForm(),
        "new_key": new_key,
        "events_url": request.build_absolute_uri("/api/usage/events"),
        "traces_url": request.build_absolute_uri(reverse("otlp-traces")),
        # The limit form that failed, shown again in its key's row with its error.
        "limit_form": limit_form,
        "limit_key_id": limit_key.pk if limit_key else None,
    }
    return render(request, "providers/ingest_keys.html", context)


def _own_key_or_403(request, pk, key_id, verb: str) -> IngestKey:
    account = selectors.account_get_for_workspace(workspace=request.membership.workspace, pk=pk)
    key = get_object_or_404(IngestKey, account=account, pk=key_id)
    if not own_or_admin(request.membership, key.created_by_id):
        raise PermissionDenied(f"Members {verb} only the keys they made; admins {verb} any.")
    return key


@role_required(Role.MEMBER)
@require_POST
def ingest_key_limit(request, pk, key_id):
    """Set or lift a key's request limit: whoever may revoke the key may change it."""
    key = _own_key_or_403(request, pk, key_id, "change")
    form = IngestKeyLimitForm(request.POST)
    if form.is_valid():
        try:
            services.ingest_key_limit_set(key=key, **form.cleaned_data)
        except ValidationError as exc:
            _service_errors(form, exc)
        else:
            limit = key.requests_per_minute
            messages.success(
                request,
                f"Ingest key {key.hint}…: "
                + (f"at most {limit:,} calls a minute." if limit else "no request limit."),
            )
            return redirect("ingest-key-list", pk=key.account_id)
    return _render_keys(request, key.account, limit_form=form, limit_key=key)


@role_required(Role.MEMBER)
@require_POST
def ingest_key_revoke(request, pk, key_id):
    key = _own_key_or_403(request, pk, key_id, "revoke")
    services.ingest_key_revoke(key=key)
    messages.success(request, f"Revoked ingest key {key.hint}….")
    return redirect("ingest-key-list", pk=key.account_id)
