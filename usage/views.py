from __future__ import annotations

from datetime import UTC, date, timedelta
from decimal import Decimal

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode

from accounts.access import role_required
from accounts.models import Role
from providers.registry import ADAPTERS, get_adapter_class
from providers.selectors import provider_names
from usage import selectors
from usage.breakdown import GROUP_BY_CHOICES, GROUP_BYS, spend_breakdown
from usage.forms import HistoryFilterForm, ManualEntryForm
from usage.insight_apis import plain_decimal
from usage.raw_history import raw_history_header, raw_history_notice
from usage.services.records import manual_entry_create, manual_entry_delete, manual_entry_update
from usage.templatetags.money import money

PERIODS = {
    "month": "This month",
    "last-month": "Last month",
    "7d": "Last 7 days",
    "30d": "Last 30 days",
    "90d": "Last 90 days",
    "custom": "Custom",
}
MAX_CUSTOM_DAYS = 366
DEFAULT_GROUP_BY = "provider"
CHART_GROUPS = 8  # the daily chart stacks the costliest groups, and one "Other"
TOP_LIST = 20  # groups listed by name under the chart; the API has them all
# Colour and pattern of the groups that are not providers (providers keep their own), in
# rank order; patterns keep the chart readable without colour.
GROUP_STYLES = [
    ("#2457d6", "none"), ("#d9822b", "diagonal"), ("#1f9d6b", "dots"), ("#b23a48", "horizontal"),
    ("#7a4fd1", "vertical"), ("#0f8fa8", "cross"), ("#c9a400", "zigzag"), ("#5c6b7f", "diagonal"),
]  # fmt: skip
OTHER_STYLE = ("#a7afbd", "dots")


class PeriodForm(forms.Form):
    period = forms.ChoiceField(choices=list(PERIODS.items()), required=False)
    group_by = forms.ChoiceField(choices=GROUP_BY_CHOICES, required=False)
    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        data = super().clean()
        if data.get("period") == "custom":
            start, end = data.get("start"), data.get("end")
            if not start:
                self.add_error("start", "Give a start date.")
            if not end:
                self.add_error("end", "Give an end date.")
            if start and end and start > end:
                self.add_error("end", "Must not be before the start date.")
            elif start and end and (end - start).days >= MAX_CUSTOM_DAYS:
                self.add_error("end", f"At most {MAX_CUSTOM_DAYS} days.")
        return data


def period_bounds(key: str, *, today: date, start=None, end=None) -> tuple[date, date, bool]:
    """[start, end) of a period and whether it is one calendar month (budgets apply)."""
    first, next_first = selectors.month_bounds(today)
    tomorrow = today + timedelta(days=1)
    if key == "last-month":
        prev_first, _ = selectors.month_bounds(first - timedelta(days=1))
        return prev_first, first, True
    if key in ("7d", "30d", "90d"):
        return tomorrow - timedelta(days=int(key[:-1])), tomorrow, False
    if key == "custom":
        return start, end + timedelta(days=1), False
    return first, tomorrow, True


# Fixed per provider so a provider looks the same on every chart; patterns keep the
# charts readable without colour (drawn by static/js/dashboard.js).
def _provider_style(slug: str) -> tuple[str, str]:
    """(chart colour, pattern) of a provider, from its adapter; a neutral pair if unknown."""
    if slug not in ADAPTERS:
        return ("#2457d6", "none")
    adapter = get_adapter_class(slug)
    return (adapter.chart_colour, adapter.chart_pattern)


def _group_style(breakdown, index: int, key: str) -> tuple[str, str]:
    if breakdown.group_by == "provider":
        return _provider_style(key)
    return GROUP_STYLES[index % len(GROUP_STYLES)]


def _chart_data(*, summary, breakdown, forecast, month_days, today) -> dict:
    days = breakdown.days
    series = [(g, _group_style(breakdown, i, g.key)) for i, g in enumerate(breakdown.charted)]
    if breakdown.other is not None:
        series.append((breakdown.other, OTHER_STYLE))
    daily_chart = {
        "labels": [d.isoformat() for d in days],
        "datasets": [
            {
                "label": g.label,
                "slug": g.key,
                "color": color,
                "pattern": pattern,
                "data": [plain_decimal(g.daily.get(d, Decimal(0))) for d in days],
            }
            for g, (color, pattern) in series
        ],
    }
    total = summary.total
    doughnut = {
        "labels": [_share_label(p, total) for p in summary.by_provider],
        "slugs": [p["provider"] for p in summary.by_provider],
        "colors": [_provider_style(p["provider"])[0] for p in summary.by_provider],
        "patterns": [_provider_style(p["provider"])[1] for p in summary.by_provider],
        "data": [plain_decimal(p["cost"]) for p in summary.by_provider],
    }
    first, next_first = selectors.month_bounds(today)
    month = [first + timedelta(days=i) for i in range((next_first - first).days)]
    running, actual = Decimal(0), []
    for d in month:
        if d <= today:
            running += month_days.get(d, Decimal(0))
            actual.append(plain_decimal(running))
        else:
            actual.append(None)
    projected: list[str | None] = [None] * len(month)
    if forecast.daily_projection:
        idx = (today - first).days
        if idx > 0:
            # Starts from yesterday's actual total so the dashed line continues the solid one.
            projected[idx - 1] = actual[idx - 1]
        running = forecast.month_to_date
        for d, amount in forecast.daily_projection:
            running += amount
            projected[(d - first).days] = plain_decimal(running)
    band: list[list[str] | None] = [None] * len(month)
    band[-1] = [plain_decimal(forecast.low), plain_decimal(forecast.high)]
    forecast_chart = {
        "labels": [d.isoformat() for d in month],
        "actual": actual,
        "projected": projected,
        "range": band,
        "has_projection": bool(forecast.daily_projection),
    }
    return {"daily": daily_chart, "doughnut": doughnut, "forecast": forecast_chart}


@role_required(Role.VIEWER)
def dashboard(request):
    today = selectors.today_for(request.membership.workspace)
    form = PeriodForm(request.GET or None)
    # Each choice falls back on its own: a bad group-by keeps the period, and the other way.
    data = {}
    if form.is_bound:
        form.is_valid()  # keeps the valid fields in cleaned_data, the others in errors
        data = form.cleaned_data
    period_ok = not any(f in form.errors for f in ("period", "start", "end", "__all__"))
    key = (period_ok and data.get("period")) or "month"
    start, end, with_budget = period_bounds(
        key, today=today, start=data.get("start"), end=data.get("end")
    )
    group_by = data.get("group_by") or DEFAULT_GROUP_BY
    summary = selectors.dashboard_summary(
        workspace=request.membership.workspace, start=start, end=end, with_budget=with_budget
    )
    context = {
        "today": today,
        "form": form,
        # Roll-up totals are complete before the raw history; the notice says what is not.
        "raw_history": raw_history_notice(start=start),
        "period": key,
        "periods": PERIODS,
        "period_label": PERIODS[key],
        "start": start,
        "last_day": end - timedelta(days=1),
        "with_budget": with_budget,
        "summary": summary,
        "has_accounts": bool(summary.accounts),
        "group_by": group_by,
        "group_by_choices": GROUP_BY_CHOICES,
        "group_label": GROUP_BYS[group_by].label,
        "group_tagged": GROUP_BYS[group_by].dimension is not None,
        # Kept on every period link; the default is left out so plain links stay plain.
        "group_query": "" if group_by == DEFAULT_GROUP_BY else f"&group_by={group_by}",
        "breakdown_api": reverse("api-usage-breakdown")
        + "?"
        + urlencode({"group_by": group_by, "start": start, "end": end - timedelta(days=1)}),
    }
    if not summary.accounts:
        context["provider_names"] = provider_names()
    if summary.has_usage:
        forecast, month_days = selectors.forecast_with_days(
            workspace=request.membership.workspace, today=today
        )
        breakdown = spend_breakdown(
            workspace=request.membership.workspace,
            group_by=group_by,
            start=start,
            end=end,
            top=CHART_GROUPS,
        )
        charts = _chart_data(
            summary=summary,
            breakdown=breakdown,
            forecast=forecast,
            month_days=month_days,
            today=today,
        )
        context |= {
            "forecast": forecast,
            "forecast_month": today.replace(day=1),
            "charts": charts,
            "daily_rows": _daily_rows(charts["daily"]),
            "breakdown": breakdown,
            "other_count": len(breakdown.groups) - len(breakdown.charted),
            "top_groups": breakdown.groups[:TOP_LIST],
            "more_groups": _rest(breakdown.groups[TOP_LIST:]),
        }
        context["show_top_models"] = group_by == DEFAULT_GROUP_BY
        if group_by == DEFAULT_GROUP_BY:
            # Providers have their own cards above: the list under the chart stays the models.
            models = selectors.top_models(
                workspace=request.membership.workspace, start=start, end=end
            )
            providers = {a.account.provider_id: a.account.provider for a in summary.accounts}
            for m in models:
                m["provider"] = providers[m["provider_id"]]
            context["models"] = models
    template = "usage/dashboard.html#content" if request.htmx else "usage/dashboard.html"
    return raw_history_header(render(request, template, context), context["raw_history"])


def _rest(groups: list) -> dict | None:
    """The groups past the named ones, as one line: how many, and their figures."""
    if not groups:
        return None
    return {
        "count": len(groups),
        "cost": sum((g.cost for g in groups), Decimal(0)),
        "unpriced_count": sum(g.unpriced_count for g in groups),
        "requests": sum(g.requests for g in groups),
        "tokens": sum(g.tokens for g in groups),
    }


def _share_label(p: dict, total: Decimal) -> str:
    """Direct label for the doughnut legend: name, amount, share (or "unpriced")."""
    if not p["cost"] and p["unpriced_count"]:
        return f"{p['name']}: unpriced ({p['unpriced_count']:,} requests)"
    share = f" ({(p['cost'] / total * 100).quantize(Decimal('1'))}%)" if total else ""
    return f"{p['name']} {money(p['cost'])}{share}"


def _daily_rows(daily: dict) -> list[dict]:
    """The daily chart as table rows for screen readers: one row per day with any spend."""
    rows = []
    for i, label in enumerate(daily["labels"]):
        values = [Decimal(ds["data"][i]) for ds in daily["datasets"]]
        if any(values):
            rows.append({"date": label, "values": values, "total": sum(values, Decimal(0))})
    return rows


ADD_ANOTHER = "add_another"


def _add_another_url(*, account_id: int, day: date) -> str:
    """The add form again, with the account and day just used already chosen."""
    query = urlencode({"account": account_id, "date": day.isoformat()})
    return f"{reverse('manual-entry')}?{query}"


def _next_url(request, default: str) -> str:
    """Where to go after an edit or delete: the page the user came from, if it is ours."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default


@role_required(Role.MEMBER)
def manual_entry(request):
    initial = {k: request.GET[k] for k in ("account", "date") if request.GET.get(k)}
    form = ManualEntryForm(
        request.POST or None, workspace=request.membership.workspace, initial=initial
    )
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        account, day = data.pop("account"), data.pop("date")
        manual_entry_create(account=account, day=day, **data)
        messages.success(request, "Manual entry saved.")
        if ADD_ANOTHER in request.POST:
            return redirect(_add_another_url(account_id=account.pk, day=day))
        return redirect("dashboard")
    return render(request, "usage/manual_entry.html", {"form": form})


def _manual_entry_initial(record) -> dict:
    values = {name: getattr(record, name, None) for name in ManualEntryForm.base_fields}
    values["account"] = record.account_id
    values["date"] = record.bucket_start.astimezone(UTC).date()
    return values


@role_required(Role.MEMBER)
def manual_entry_edit(request, pk):
    record = selectors.manual_entry_get_for_workspace(workspace=request.membership.workspace, pk=pk)
    form = ManualEntryForm(
        request.POST or None,
        workspace=request.membership.workspace,
        initial=_manual_entry_initial(record),
    )
    history_url = f"{reverse('history')}?source=manual"
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        account, day = data.pop("account"), data.pop("date")
        manual_entry_update(record=record, account=account, day=day, **data)
        messages.success(request, "Manual entry updated.")
        if ADD_ANOTHER in request.POST:
            return redirect(_add_another_url(account_id=account.pk, day=day))
        return redirect(_next_url(request, history_url))
    context = {"form": form, "record": record, "next": _next_url(request, history_url)}
    return render(request, "usage/manual_entry_edit.html", context)


@role_required(Role.MEMBER)
def manual_entry_delete_view(request, pk):
    record = selectors.manual_entry_get_for_workspace(workspace=request.membership.workspace, pk=pk)
    history_url = f"{reverse('history')}?source=manual"
    if request.method == "POST":
        manual_entry_delete(record=record)
        messages.success(request, "Manual entry deleted.")
        return redirect(_next_url(request, history_url))
    context = {"record": record, "next": _next_url(request, history_url)}
    return render(request, "usage/manual_entry_confirm_delete.html", context)


@role_required(Role.VIEWER)
def history(request):
    form = HistoryFilterForm(request.GET or None, workspace=request.membership.workspace)
    records = selectors.usage_history(workspace=request.membership.workspace).none()
    notice = None
    if form.is_bound and form.is_valid():
        f = form.cleaned_data
        notice = raw_history_notice(start=f.get("start"), source=f.get("source") or None)
        records = selectors.usage_history(
            workspace=request.membership.workspace,
            provider=f["provider"].slug if f.get("provider") else None,
            account_id=f["account"].pk if f.get("account") else None,
            model=f.get("model") or None,
            source=f.get("source") or None,
            start=f.get("start"),
            end=f.get("end"),
            tags=form.tags(),
            ingest_key_id=f["ingest_key"].pk if f.get("ingest_key") else None,
        )
    elif not form.is_bound:
        records = selectors.usage_history(workspace=request.membership.workspace)
        notice = raw_history_notice(start=None)
    page = Paginator(records, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    template = "usage/history.html#results" if request.htmx else "usage/history.html"
    # Bad filters are a 400 with the errors in place; HTMX swaps only 2xx answers in.
    status = 400 if form.is_bound and form.errors and not request.htmx else 200
    context = {
        "form": form,
        "page": page,
        "query": query.urlencode(),
        "here": request.get_full_path(),
        "raw_history": notice,
    }
    return raw_history_header(render(request, template, context, status=status), notice)


@role_required(Role.VIEWER)
def record_detail(request, pk):
    """One usage record and how its cost came about."""
    from usage.explain import usage_record_explain

    record = selectors.record_get_for_workspace(workspace=request.membership.workspace, pk=pk)
    explanation = usage_record_explain(record=record)
    return render(request, "usage/record_detail.html", {"e": explanation, "record": record})
