from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from providers import selectors, services
from providers.connection import account_test_connection
from providers.forms import AccountForm


@login_required
def account_list(request):
    accounts = selectors.account_list(user=request.user)
    return render(request, "providers/account_list.html", {"accounts": accounts})


@login_required
def account_add(request):
    form = AccountForm(request.POST or None, owner=request.user)
    if request.method == "POST" and form.is_valid():
        account = services.account_create(owner=request.user, **form.service_kwargs())
        messages.success(request, f"Added {account.name}.")
        return redirect("account-list")
    return render(request, "providers/account_form.html", {"form": form})


@login_required
def account_edit(request, pk):
    account = selectors.account_get_for_user(user=request.user, pk=pk)
    form = AccountForm(request.POST or None, instance=account, owner=request.user)
    if request.method == "POST" and form.is_valid():
        services.account_update(account=account, **form.service_kwargs())
        messages.success(request, f"Saved {account.name}.")
        return redirect("account-list")
    return render(request, "providers/account_form.html", {"form": form, "account": account})


@login_required
def account_delete(request, pk):
    account = selectors.account_get_for_user(user=request.user, pk=pk)
    if request.method == "POST":
        services.account_delete(account=account)
        messages.success(request, f"Deleted {account.name} and its usage.")
        return redirect("account-list")
    return render(request, "providers/account_confirm_delete.html", {"account": account})


@login_required
@require_POST
def account_test(request, pk):
    account = selectors.account_get_for_user(user=request.user, pk=pk)
    result = account_test_connection(account=account)
    return render(request, "providers/_test_result.html", {"result": result})
