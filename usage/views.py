from __future__ import annotations

from decimal import Decimal

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import redirect, render

from usage import selectors
from usage.forms import HistoryFilterForm, ManualEntryForm
from usage.services.records import manual_entry_create


@login_required
def dashboard(request):
    today = selectors.today_for(request.user)
    first, next_first = selectors.month_bounds(today)
    cards = selectors.month_summary(user=request.user, today=today)
    context = {
        "today": today,
        "month_start": first,
        "total": sum((c.cost for c in cards), Decimal(0)),
        "unpriced_count": sum(c.unpriced_count for c in cards),
        "cards": cards,
        "by_provider": selectors.spend_by_provider(user=request.user, start=first, end=next_first),
    }
    return render(request, "usage/dashboard.html", context)


@login_required
def manual_entry(request):
    form = ManualEntryForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        manual_entry_create(account=data.pop("account"), day=data.pop("date"), **data)
        messages.success(request, "Manual entry saved.")
        return redirect("dashboard")
    return render(request, "usage/manual_entry.html", {"form": form})


@login_required
def history(request):
    form = HistoryFilterForm(request.GET or None, user=request.user)
    records = selectors.usage_history(user=request.user).none()
    if form.is_bound and form.is_valid():
        f = form.cleaned_data
        records = selectors.usage_history(
            user=request.user,
            provider=f["provider"].slug if f.get("provider") else None,
            account_id=f["account"].pk if f.get("account") else None,
            model=f.get("model") or None,
            source=f.get("source") or None,
            start=f.get("start"),
            end=f.get("end"),
        )
    elif not form.is_bound:
        records = selectors.usage_history(user=request.user)
    page = Paginator(records, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    template = "usage/history.html#results" if request.htmx else "usage/history.html"
    return render(request, template, {"form": form, "page": page, "query": query.urlencode()})
