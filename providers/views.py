from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.access import role_required
from accounts.models import Role
from alerts import selectors as alert_selectors
from providers import selectors, services
from providers.connection import account_test_connection
from providers.forms import AccountForm
from providers.models import IngestKey
from providers.ratelimits import selectors as ratelimit_selectors
from usage import selectors as usage_selectors
from usage.insight_apis import plain_decimal
from usage.models import Source
from usage.services.sync import account_supports_sync

# The account page's daily chart stacks spend by source (static/js/dashboard.js draws it).
SOURCE_STYLE = {
    Source.OFFICIAL: ("#1d4ed8", "none"),
    Source.ESTIMATED: ("#7e22ce", "diagonal"),
    Source.MANUAL: ("#35533f", "dots"),
}
RECENT_SYNC_RUNS = 10


@role_required(Role.VIEWER)
def account_list(request):
    accounts = selectors.account_list(workspace=request.membership.workspace)
    context = {"accounts": accounts}
    if not accounts:
        context["provider_names"] = selectors.provider_names()
    return render(request, "providers/account_list.html", context)


def _account_daily_chart(days: list[dict]) -> dict:
    """The dashboard's "daily" chart data, one dataset per source that has any spend."""
    return {
        "labels": [d["date"].isoformat() for d in days],
        "datasets": [
            {
                "label": Source(source).label,
                "slug": source,
                "color": SOURCE_STYLE[source][0],
                "pattern": SOURCE_STYLE[source][1],
                "data": [plain_decimal(d["by_source"][source]) for d in days],
            }
            for source in Source.values
            if any(d["by_source"][source] for d in days)
        ],
    }


@role_required(Role.VIEWER)
def account_detail(request, pk):
    """One account: this month's spend by source and against its budget, a daily chart, the
    models it used, its rate limits, its ingest keys and its latest syncs."""
    account = selectors.account_get_for_workspace(workspace=request.membership.workspace, pk=pk)
    today = usage_selectors.today_for(request.membership.workspace)
    first, _ = usage_selectors.month_bounds(today)
    end = today + timedelta(days=1)
    summary = usage_selectors.dashboard_summary(
        workspace=request.membership.workspace,
        start=first,
        end=end,
        with_budget=True,
        account_id=account.pk,
    )
    month = summary.accounts[0]
    days = usage_selectors.spend_by_day(
        workspace=request.membership.workspace, start=first, end=end, account_id=account.pk
    )
    runs = list(account.sync_runs.all()[:RECENT_SYNC_RUNS])
    # Budgets made on the Budgets page for this account (its own monthly_budget is `month`).
    budgets = [
        s
        for s in alert_selectors.budget_statuses(
            workspace=request.membership.workspace, today=today
        )
        if s.target.budget is not None and s.target.account_id == account.pk
    ]
    context = {
        "account": account,
        "today": today,
        "month_start": first,
        "month": month,
        "summary": summary,
        "chart": _account_daily_chart(days),
        "daily_rows": [d for d in days if d["cost"]],
        "models": usage_selectors.top_models(
            workspace=request.membership.workspace,
            start=first,
            end=end,
            limit=50,
            account_id=account.pk,
        ),
        "keys": IngestKey.objects.filter(account=account),
        "runs": runs,
        "budgets": budgets,
        "latest_run": runs[0] if runs else None,
        "supports_sync": account_supports_sync(account),
        "zero": Decimal(0),
        "rate_limits": ratelimit_selectors.rate_limit_rows(
            workspace=request.membership.workspace, account_id=account.pk
        ),
        "rate_limit_low_percent": ratelimit_selectors.headroom_percent(),
    }
    return render(request, "providers/account_detail.html", context)


@role_required(Role.ADMIN)
def account_add(request):
    form = AccountForm(request.POST or None, workspace=request.membership.workspace)
    if request.method == "POST" and form.is_valid():
        account = services.account_create(
            workspace=request.membership.workspace, **form.service_kwargs()
        )
        messages.success(request, f"Added {account.name}.")
        return redirect("account-list")
    return render(request, "providers/account_form.html", {"form": form})


@role_required(Role.ADMIN)
def account_edit(request, pk):
    account = selectors.account_get_for_workspace(workspace=request.membership.workspace, pk=pk)
    form = AccountForm(
        request.POST or None, instance=account, workspace=request.membership.workspace
    )
    if request.method == "POST" and form.is_valid():
        services.account_update(account=account, **form.service_kwargs())
        messages.success(request, f"Saved {account.name}.")
        return redirect("account-list")
    return render(request, "providers/account_form.html", {"form": form, "account": account})


@role_required(Role.ADMIN)
def account_delete(request, pk):
    account = selectors.account_get_for_workspace(workspace=request.membership.workspace, pk=pk)
    if request.method == "POST":
        services.account_delete(account=account)
        messages.success(request, f"Deleted {account.name} and its usage.")
        return redirect("account-list")
    return render(request, "providers/account_confirm_delete.html", {"account": account})


@role_required(Role.ADMIN)
@require_POST
def account_test(request, pk):
    account = selectors.account_get_for_workspace(workspace=request.membership.workspace, pk=pk)
    result = account_test_connection(account=account)
    return render(request, "providers/_test_result.html", {"result": result})
