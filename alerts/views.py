from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from alerts import selectors, services
from alerts.forms import AlertFilterForm, BudgetForm, ChannelForm


@login_required
def alert_list(request):
    form = AlertFilterForm(request.GET or None)
    alerts = selectors.alert_list(user=request.user, **form.selector_kwargs())[:200]
    return render(request, "alerts/alert_list.html", {"alerts": alerts, "form": form})


def _alert_row_or_redirect(request, alert):
    if request.htmx:
        return render(request, "alerts/alert_list.html#alert-row", {"alert": alert})
    return redirect("alert-list")


@login_required
@require_POST
def alert_acknowledge(request, pk):
    alert = selectors.alert_get_for_user(user=request.user, pk=pk)
    services.alert_acknowledge(alert=alert)
    return _alert_row_or_redirect(request, alert)


@login_required
@require_POST
def alert_unacknowledge(request, pk):
    alert = selectors.alert_get_for_user(user=request.user, pk=pk)
    services.alert_unacknowledge(alert=alert)
    return _alert_row_or_redirect(request, alert)


@login_required
@require_POST
def alert_delete(request, pk):
    alert = selectors.alert_get_for_user(user=request.user, pk=pk)
    services.alert_delete(alert=alert)
    if request.htmx:
        return HttpResponse("")  # the row is swapped for nothing
    messages.success(request, "Alert deleted.")
    return redirect("alert-list")


@login_required
def budget_list(request):
    statuses = selectors.budget_statuses(user=request.user)
    return render(request, "alerts/budget_list.html", {"statuses": statuses})


def _save_budget(request, form, budget=None):
    """Call the service; its validation errors land on the form. True when saved."""
    kwargs = {k: form.cleaned_data[k] for k in BudgetForm.base_fields}
    try:
        if budget is None:
            services.budget_create(owner=request.user, **kwargs)
        else:
            services.budget_update(budget=budget, **kwargs)
    except ValidationError as exc:
        for field, errors in exc.message_dict.items():
            for error in errors:
                form.add_error(field if field in form.fields else None, error)
        return False
    return True


@login_required
def budget_add(request):
    form = BudgetForm(request.POST or None, owner=request.user)
    if request.method == "POST" and form.is_valid() and _save_budget(request, form):
        messages.success(request, "Budget added.")
        return redirect("budget-list")
    return render(request, "alerts/budget_form.html", {"form": form})


@login_required
def budget_edit(request, pk):
    budget = selectors.budget_get_for_user(user=request.user, pk=pk)
    form = BudgetForm(request.POST or None, owner=request.user, instance=budget)
    if request.method == "POST" and form.is_valid() and _save_budget(request, form, budget):
        messages.success(request, "Budget saved.")
        return redirect("budget-list")
    return render(request, "alerts/budget_form.html", {"form": form, "budget": budget})


@login_required
def budget_delete(request, pk):
    budget = selectors.budget_get_for_user(user=request.user, pk=pk)
    if request.method == "POST":
        services.budget_delete(budget=budget)
        messages.success(request, "Budget deleted.")
        return redirect("budget-list")
    return render(request, "alerts/budget_confirm_delete.html", {"budget": budget})


@login_required
def channel_list(request):
    form = ChannelForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.channel_create(owner=request.user, **form.cleaned_data)
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                for error in errors:
                    form.add_error(field if field in form.fields else None, error)
        else:
            messages.success(request, "Channel added.")
            return redirect("channel-list")
    context = {
        "channels": selectors.channel_list(user=request.user),
        "deliveries": selectors.recent_deliveries(user=request.user),
        "form": form,
    }
    return render(request, "alerts/channel_list.html", context)


@login_required
@require_POST
def channel_delete(request, pk):
    channel = selectors.channel_get_for_user(user=request.user, pk=pk)
    services.channel_delete(channel=channel)
    messages.success(request, "Channel removed.")
    return redirect("channel-list")
