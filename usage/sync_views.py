"""Sync now, live sync status, sync history. Thin: look up (404 for anyone else), call, render."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST, require_safe

from accounts.access import role_required
from accounts.models import Role
from providers.selectors import account_get_for_workspace
from usage.models import SyncRun
from usage.services.sync import account_supports_sync, run_is_stale, sync_request

STATUS_TEMPLATE = "providers/_sync_status.html"


def _status_context(account, run: SyncRun | None) -> dict:
    active = run is not None and run.status in (SyncRun.Status.QUEUED, SyncRun.Status.RUNNING)
    stale = active and run_is_stale(run)
    return {
        "account": account,
        "run": run,
        "supports_sync": account_supports_sync(account),
        # Poll while a worker may still move the run on; a stale run will not move.
        "polling": active and not stale,
        "stale": stale,
    }


@role_required(Role.ADMIN)
@require_POST
def sync_now(request, pk):
    account = account_get_for_workspace(workspace=request.membership.workspace, pk=pk)
    if not account_supports_sync(account):
        context = _status_context(account, None)
        return render(request, STATUS_TEMPLATE, context, status=400)
    run, created = sync_request(account=account)
    if not request.htmx:
        if created:
            messages.success(request, f"Sync of {account.name} queued.")
        else:
            messages.info(request, f"A sync of {account.name} is already under way.")
        return redirect("account-list")
    return render(request, STATUS_TEMPLATE, _status_context(account, run))


@role_required(Role.VIEWER)
@require_safe
def sync_status(request, pk):
    """The status cell: the run given by ?run=<id> (Sync now) or the account's latest run."""
    account = account_get_for_workspace(workspace=request.membership.workspace, pk=pk)
    runs = account.sync_runs.all()
    run_id = request.GET.get("run", "")
    run = runs.filter(pk=int(run_id)).first() if run_id.isdigit() else runs.first()
    return render(request, STATUS_TEMPLATE, _status_context(account, run))


@role_required(Role.VIEWER)
@require_safe
def sync_history(request, pk):
    account = account_get_for_workspace(workspace=request.membership.workspace, pk=pk)
    page = Paginator(account.sync_runs.all(), 50).get_page(request.GET.get("page"))
    context = {
        "account": account,
        "page": page,
        "supports_sync": account_supports_sync(account),
    }
    return render(request, "usage/sync_history.html", context)
