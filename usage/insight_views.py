"""Pages: export (form -> streamed CSV/JSON/FOCUS) and monthly reconciliation with true-up."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from rest_framework import serializers

from accounts.access import role_required
from accounts.models import Role
from providers.selectors import account_get_for_workspace
from usage import bounds, selectors
from usage.forms import HistoryFilterForm
from usage.insight_apis import EXPORT_FORMATS, export_response, parse_month
from usage.raw_history import raw_history_header, raw_history_notice
from usage.services.reconciliation import invoice_delete, invoice_set, true_up_book


class ExportForm(HistoryFilterForm):
    format = forms.ChoiceField(choices=EXPORT_FORMATS, initial="csv")

    def __init__(self, *args, workspace, **kwargs):
        super().__init__(*args, workspace=workspace, **kwargs)
        del self.fields["ingest_key"]  # History's filter; the export does not take it (yet)
        self.fields["start"].help_text = "UTC day, inclusive. Empty: the 1st of this month."
        self.fields["end"].help_text = "UTC day, inclusive. Empty: today."
        self.fields["model"].help_text = "Part of a model name."
        self.today = selectors.today_for(workspace)

    def clean(self):
        data = super().clean()
        data["start"] = data.get("start") or self.today.replace(day=1)
        data["end"] = data.get("end") or self.today
        if data["start"] > data["end"] and "end" not in self.errors:
            self.add_error("end", "Must not be before the start date.")
        return data


@role_required(Role.VIEWER)
def export(request):
    form = ExportForm(
        request.GET if "download" in request.GET else None, workspace=request.membership.workspace
    )
    if form.is_bound and form.is_valid():
        f = form.cleaned_data
        return export_response(
            workspace=request.membership.workspace,
            filters={
                "format": f["format"],
                "start": f["start"],
                "end": f["end"],
                "provider": f["provider"].slug if f.get("provider") else None,
                "account": f["account"].pk if f.get("account") else None,
                "source": f.get("source") or None,
                "model": f.get("model") or None,
            },
            bom=True,  # the page's download is what people open in Excel
        )
    # Where the raw history starts is on the page whatever the dates; the notice in full once
    # the chosen range starts earlier (here a refused form; in the browser, static/js/app.js).
    first_kept = raw_history_notice(start=None)
    chosen = None
    if form.is_bound and "start" not in form.errors:
        chosen = raw_history_notice(
            start=form.cleaned_data.get("start"), source=form.cleaned_data.get("source") or None
        )
    context = {"form": form, "raw_history": first_kept, "raw_history_chosen": chosen}
    response = render(request, "usage/export.html", context, status=400 if form.is_bound else 200)
    return raw_history_header(response, chosen)


class InvoiceForm(forms.Form):
    account = forms.IntegerField(min_value=1)
    month = forms.RegexField(regex=r"^\d{4}-\d{2}$")
    invoice = forms.DecimalField(
        max_digits=20,
        decimal_places=2,
        min_value=Decimal(0),
        max_value=bounds.INVOICE.high,
        required=False,
    )
    note = forms.CharField(max_length=500, required=False)


def _month_or_none(raw: str | None, today):
    try:
        return parse_month(raw, today=today)
    except serializers.ValidationError:
        return None


def _recon_url(month_start) -> str:
    return f"{reverse('reconciliation')}?month={month_start:%Y-%m}"


def _render_recon(request, month_start, *, errors=None, status=200):
    rows = selectors.reconciliation_month(
        workspace=request.membership.workspace, month_start=month_start
    )
    notice = raw_history_notice(start=month_start)
    context = {
        "rows": rows,
        "month_start": month_start,
        "errors": errors or {},
        "raw_history": notice,
    }
    response = render(request, "usage/reconciliation.html", context, status=status)
    return raw_history_header(response, notice)


@role_required(Role.VIEWER)
def reconciliation(request):
    today = selectors.today_for(request.membership.workspace)
    month_start = _month_or_none(request.GET.get("month"), today)
    if month_start is None:
        messages.error(request, "month: use YYYY-MM, e.g. 2026-11.")
        return _render_recon(request, today.replace(day=1), status=400)
    return _render_recon(request, month_start)


@role_required(Role.ADMIN)
@require_POST
def reconciliation_invoice(request):
    today = selectors.today_for(request.membership.workspace)
    form = InvoiceForm(request.POST)
    month_start = _month_or_none(request.POST.get("month"), today) or today.replace(day=1)
    if not form.is_valid() or _month_or_none(form.cleaned_data["month"], today) is None:
        account_id = getattr(form, "cleaned_data", {}).get("account")
        text = "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()) or (
            "month: use YYYY-MM."
        )
        if account_id is None:
            messages.error(request, text)
        return _render_recon(request, month_start, errors={account_id: text}, status=400)
    account = account_get_for_workspace(
        workspace=request.membership.workspace, pk=form.cleaned_data["account"]
    )
    amount = form.cleaned_data["invoice"]
    if amount is None:
        invoice_delete(account=account, month_start=month_start)
        messages.success(request, f"Invoice total for {account.name}, {month_start:%Y-%m} removed.")
        return redirect(_recon_url(month_start))
    try:
        invoice_set(
            account=account,
            month_start=month_start,
            amount=amount,
            note=form.cleaned_data["note"],
        )
    except ValidationError as exc:
        text = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
        return _render_recon(request, month_start, errors={account.pk: text}, status=400)
    messages.success(request, f"Invoice total for {account.name}, {month_start:%Y-%m} saved.")
    return redirect(_recon_url(month_start))


@role_required(Role.ADMIN)
@require_POST
def reconciliation_true_up(request):
    today = selectors.today_for(request.membership.workspace)
    month_start = _month_or_none(request.POST.get("month"), today)
    raw_account = request.POST.get("account", "")
    if month_start is None or not raw_account.isdigit():
        field = "month" if month_start is None else "account"
        messages.error(request, f"{field}: missing or malformed.")
        return _render_recon(request, month_start or today.replace(day=1), status=400)
    account = account_get_for_workspace(workspace=request.membership.workspace, pk=int(raw_account))
    try:
        record = true_up_book(account=account, month_start=month_start, today=today)
    except ValidationError as exc:
        text = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
        return _render_recon(request, month_start, errors={account.pk: text}, status=400)
    if record is None:
        messages.success(request, f"{account.name}: already matches the invoice; nothing booked.")
    else:
        messages.success(
            request,
            f"{account.name}: booked a true-up of {record.cost:,.2f} USD for {month_start:%Y-%m}.",
        )
    return redirect(_recon_url(month_start))
