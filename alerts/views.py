from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.access import role_required
from accounts.models import Role
from alerts import selectors, services
from alerts.forms import AlertFilterForm, BudgetForm, ChannelForm

ALERTS_PER_PAGE = 50


@role_required(Role.VIEWER)
def alert_list(request):
    form = AlertFilterForm(request.GET or None)
    alerts = selectors.alert_list(workspace=request.membership.workspace, **form.selector_kwargs())
    page = Paginator(alerts, ALERTS_PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "alerts": page,
        "page": page,
        "open_ids": [a.pk for a in page if a.acknowledged_at is None],
        "form": form,
        "query": query.urlencode(),
        "here": request.get_full_path(),
    }
    return render(request, "alerts/alert_list.html", context)


@role_required(Role.VIEWER)
def alert_detail(request, pk):
    alert = selectors.alert_get_for_workspace(workspace=request.membership.workspace, pk=pk)
    deliveries = alert.deliveries.select_related("channel")
    return render(request, "alerts/alert_detail.html", {"alert": alert, "deliveries": deliveries})


@role_required(Role.MEMBER)
@require_POST
def alerts_acknowledge(request):
    """Acknowledge the ticked alerts, or (``all``) every alert that was shown on the page."""
    field = "shown" if "all" in request.POST else "selected"
    ids = [v for v in request.POST.getlist(field) if v.isdigit()]
    count = services.alerts_acknowledge(workspace=request.membership.workspace, ids=ids)
    if ids:
        messages.success(request, f"Acknowledged {count} alert{'s' if count != 1 else ''}.")
    else:
        messages.info(request, "Tick the alerts to acknowledge first.")
    target = request.POST.get("next", "")
    if not target.startswith("/alerts/") or target.startswith("//"):
        target = "alert-list"
    return redirect(target)


def _alert_row_or_redirect(request, alert):
    if request.htmx:
        return render(request, "alerts/alert_list.html#alert-row", {"alert": alert})
    return redirect("alert-list")


@role_required(Role.MEMBER)
@require_POST
def alert_acknowledge(request, pk):
    alert = selectors.alert_get_for_workspace(workspace=request.membership.workspace, pk=pk)
    services.alert_acknowledge(alert=alert)
    return _alert_row_or_redirect(request, alert)


@role_required(Role.MEMBER)
@require_POST
def alert_unacknowledge(request, pk):
    alert = selectors.alert_get_for_workspace(workspace=request.membership.workspace, pk=pk)
    services.alert_unacknowledge(alert=alert)
    return _alert_row_or_redirect(request, alert)


@role_required(Role.ADMIN)
@require_POST
def alert_delete(request, pk):
    alert = selectors.alert_get_for_workspace(workspace=request.membership.workspace, pk=pk)
    services.alert_delete(alert=alert)
    if request.htmx:
        return HttpResponse("")  # the row is swapped for nothing
    messages.success(request, "Alert deleted.")
    return redirect("alert-list")


@role_required(Role.VIEWER)
def budget_list(request):
    statuses = selectors.budget_statuses(workspace=request.membership.workspace)
    return render(request, "alerts/budget_list.html", {"statuses": statuses})


def _save_budget(request, form, budget=None):
    """Call the service; its validation errors land on the form. True when saved."""
    kwargs = {k: form.cleaned_data[k] for k in BudgetForm.base_fields}
    try:
        if budget is None:
            services.budget_create(workspace=request.membership.workspace, **kwargs)
        else:
            services.budget_update(budget=budget, **kwargs)
    except ValidationError as exc:
        for field, errors in exc.message_dict.items():
            for error in errors:
                form.add_error(field if field in form.fields else None, error)
        return False
    return True


@role_required(Role.ADMIN)
def budget_add(request):
    form = BudgetForm(request.POST or None, workspace=request.membership.workspace)
    if request.method == "POST" and form.is_valid() and _save_budget(request, form):
        messages.success(request, "Budget added.")
        return redirect("budget-list")
    return render(request, "alerts/budget_form.html", {"form": form})


@role_required(Role.ADMIN)
def budget_edit(request, pk):
    budget = selectors.budget_get_for_workspace(workspace=request.membership.workspace, pk=pk)
    form = BudgetForm(request.POST or None, workspace=request.membership.workspace, instance=budget)
    if request.method == "POST" and form.is_valid() and _save_budget(request, form, budget):
        messages.success(request, "Budget saved.")
        return redirect("budget-list")
    return render(request, "alerts/budget_form.html", {"form": form, "budget": budget})


@role_required(Role.ADMIN)
def budget_delete(request, pk):
    budget = selectors.budget_get_for_workspace(workspace=request.membership.workspace, pk=pk)
    if request.method == "POST":
        services.budget_delete(budget=budget)
        messages.success(request, "Budget deleted.")
        return redirect("budget-list")
    return render(request, "alerts/budget_confirm_delete.html", {"budget": budget})


@role_required(Role.VIEWER, Role.ADMIN)
def channel_list(request):
    form = ChannelForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.channel_create(workspace=request.membership.workspace, **form.cleaned_data)
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                for error in errors:
                    form.add_error(field if field in form.fields else None, error)
        else:
            messages.success(request, "Channel added.")
            return redirect("channel-list")
    context = {
        "channels": selectors.channel_list(workspace=request.membership.workspace),
        "deliveries": selectors.recent_deliveries(workspace=request.membership.workspace),
        "form": form,
    }
    return render(request, "alerts/channel_list.html", context)


@role_required(Role.ADMIN)
@require_POST
def channel_test(request, pk):
    channel = selectors.channel_get_for_workspace(workspace=request.membership.workspace, pk=pk)
    delivery = services.channel_test_send(channel=channel)
    if delivery.status == delivery.Status.SENT:
        messages.success(request, f"Test notification sent to {channel.target_display}.")
    else:
        messages.error(
            request, f"Test notification to {channel.target_display} failed: {delivery.error}"
        )
    return redirect("channel-list")


@role_required(Role.ADMIN)
@require_POST
def channel_delete(request, pk):
    channel = selectors.channel_get_for_workspace(workspace=request.membership.workspace, pk=pk)
    services.channel_delete(channel=channel)
    messages.success(request, "Channel removed.")
    return redirect("channel-list")
