"""Workspace pages: settings, members and roles, invites, switching, and accepting an invite.

Who may do what is the route's role (accounts.access): every member sees the members page;
admins edit the settings; owners manage members, roles and invites and delete the workspace.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts import services
from accounts.access import SESSION_KEY, membership_get, role_check, role_required
from accounts.forms import InviteForm, RoleForm, WorkspaceForm
from accounts.models import Invite, Role


def _errors(exc: ValidationError) -> str:
    return " ".join(exc.messages)


@role_required(Role.VIEWER, Role.ADMIN)
def workspace_settings(request):
    """The current workspace: its settings, members and open invites."""
    workspace = request.membership.workspace
    form = WorkspaceForm(
        request.POST or None, initial={"name": workspace.name, "time_zone": workspace.time_zone}
    )
    if request.method == "POST" and form.is_valid():
        services.workspace_update(workspace=workspace, **form.cleaned_data)
        messages.success(request, "Workspace saved.")
        return redirect("workspace")
    created = request.session.pop("invite_link", None)
    context = {
        "workspace": workspace,
        "form": form,
        "members": workspace.memberships.select_related("user").order_by("user__username"),
        "invites": Invite.objects.filter(workspace=workspace, accepted_at=None, revoked_at=None),
        "invite_form": InviteForm(),
        "roles": Role.choices,
        "invite_link": created,
    }
    response = render(
        request, "accounts/workspace.html", context, status=400 if form.errors else 200
    )
    if created:
        response["Cache-Control"] = "no-store"  # the page holds a one-time link
    return response


@role_required(Role.OWNER)
@require_POST
def invite_create(request):
    form = InviteForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(e for errs in form.errors.values() for e in errs))
        return redirect("workspace")
    raw, invite = services.invite_create(
        workspace=request.membership.workspace,
        created_by=request.user,
        accept_url=lambda raw: request.build_absolute_uri(reverse("invite-accept", args=[raw])),
        **form.cleaned_data,
    )
    # Shown once, on the next page: a redirect keeps a reload from making another invite.
    request.session["invite_link"] = {
        "url": request.build_absolute_uri(reverse("invite-accept", args=[raw])),
        "role": invite.get_role_display(),
        "email": invite.email,
    }
    return redirect("workspace")


@role_required(Role.OWNER)
@require_POST
def invite_revoke(request, pk):
    invite = get_object_or_404(Invite, workspace=request.membership.workspace, pk=pk)
    services.invite_revoke(invite=invite)
    messages.success(request, f"Invite {invite.hint}… revoked.")
    return redirect("workspace")


@role_required(Role.OWNER)
@require_POST
def member_role(request, pk):
    membership = get_object_or_404(request.membership.workspace.memberships, pk=pk)
    form = RoleForm(request.POST)
    if form.is_valid():
        try:
            services.membership_role_set(membership=membership, role=form.cleaned_data["role"])
        except ValidationError as exc:
            messages.error(request, _errors(exc))
        else:
            messages.success(request, f"{membership.user} is now {membership.get_role_display()}.")
    return redirect("workspace")


@role_required(Role.VIEWER)
@require_POST
def member_remove(request, pk):
    """Owners remove anyone; every member may leave (remove themselves)."""
    membership = get_object_or_404(request.membership.workspace.memberships, pk=pk)
    if membership.user_id != request.user.pk:
        role_check(request, Role.OWNER)
    try:
        services.membership_remove(membership=membership)
    except ValidationError as exc:
        messages.error(request, _errors(exc))
        return redirect("workspace")
    if membership.user_id == request.user.pk:
        request.session.pop(SESSION_KEY, None)
        messages.success(request, f"You left {membership.workspace}.")
        return redirect("dashboard")
    messages.success(request, f"Removed {membership.user} from the workspace.")
    return redirect("workspace")


@role_required(Role.OWNER)
def workspace_delete(request):
    workspace = request.membership.workspace
    if request.method == "POST":
        try:
            services.workspace_delete(workspace=workspace)
        except ValidationError as exc:
            messages.error(request, _errors(exc))
            return redirect("workspace")
        request.session.pop(SESSION_KEY, None)
        messages.success(request, f"Deleted the workspace {workspace.name} and everything in it.")
        return redirect("dashboard")
    return render(request, "accounts/workspace_confirm_delete.html", {"workspace": workspace})


@login_required
def workspace_new(request):
    form = WorkspaceForm(request.POST or None, initial={"time_zone": request.user.time_zone})
    if request.method == "POST" and form.is_valid():
        workspace = services.workspace_create(user=request.user, **form.cleaned_data)
        request.session[SESSION_KEY] = workspace.pk
        messages.success(request, f"Created {workspace.name}. Invite your team from here.")
        return redirect("workspace")
    return render(
        request, "accounts/workspace_new.html", {"form": form}, status=400 if form.errors else 200
    )


@login_required
@require_POST
def workspace_switch(request):
    """Act in another of the user's workspaces from now on (404 for one they are not in)."""
    membership = membership_get(user=request.user, workspace_id=request.POST.get("workspace"))
    request.session[SESSION_KEY] = membership.workspace_id
    return redirect("dashboard")


def invite_accept(request, token):
    """Anyone with the link sees what it is for; signing in (or up) and confirming joins."""
    invite = services.invite_find(raw=token)
    error = None
    if request.method == "POST" and request.user.is_authenticated:
        try:
            membership = services.invite_accept(raw=token, user=request.user)
        except services.InviteError as exc:
            error = str(exc)
        else:
            request.session[SESSION_KEY] = membership.workspace_id
            messages.success(
                request,
                f"You joined {membership.workspace} as {membership.get_role_display().lower()}.",
            )
            return redirect("dashboard")
    elif invite is None or not invite.is_open:
        error = "This invite link is not valid any more: it was used, revoked or has expired."
    response = render(
        request,
        "accounts/invite_accept.html",
        {"invite": invite if invite and invite.is_open else None, "error": error},
        status=400 if error else 200,
    )
    response["Cache-Control"] = "no-store"
    # The path holds the token: never sent to another site (no-referrer would also blank the
    # Origin of the form post, and CSRF protection refuses that).
    response["Referrer-Policy"] = "same-origin"
    return response
