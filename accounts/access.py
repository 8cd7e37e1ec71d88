"""Who may do what in which workspace: the one place access to a workspace's things is decided.

Every request a signed-in user makes acts in one workspace: the one named by the
`X-Workspace` header (the API; an id from GET /api/workspaces), else the one chosen in the
page's switcher (kept in the session), else their personal workspace. It is resolved once per
request into `request.membership` (accounts.middleware). A workspace the user is not a member
of is a 404 wherever it is named, never a hint that it exists.

Then two rules, applied the same way to every route:
- objects are read through selectors that take the workspace (e.g.
  providers.selectors.account_get_for_workspace), so another workspace's object is a 404;
- each route declares the least role it needs (`role_required` on a page, `RoleRequired` +
  `required_roles` on an API view), and a member below it gets a 403 and no data.
"""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework.permissions import SAFE_METHODS, BasePermission

from accounts.models import Membership, Role, User

WORKSPACE_HEADER = "X-Workspace"
SESSION_KEY = "workspace_id"


def membership_get(*, user: User, workspace_id) -> Membership:
    """The user's membership of a workspace; 404 when there is none (or the id is no number)."""
    try:
        workspace_id = int(workspace_id)
    except (TypeError, ValueError):
        raise Http404("No such workspace.") from None
    membership = (
        Membership.objects.select_related("workspace")
        .filter(user=user, workspace_id=workspace_id)
        .first()
    )
    if membership is None:
        raise Http404("No such workspace.")
    return membership


def membership_personal(*, user: User) -> Membership:
    return Membership.objects.select_related("workspace").get(
        user=user, workspace__personal_for=user
    )


def membership_for_request(request) -> Membership | None:
    """The membership a request acts with (see the module's docstring); None when anonymous."""
    user = request.user
    if not user.is_authenticated:
        return None
    named = request.headers.get(WORKSPACE_HEADER)
    if named is not None:
        return membership_get(user=user, workspace_id=named)
    session = getattr(request, "session", None)
    chosen = session.get(SESSION_KEY) if session is not None else None
    if chosen is not None:
        try:
            return membership_get(user=user, workspace_id=chosen)
        except Http404:
            session.pop(SESSION_KEY, None)  # removed from it since: back to their own
    return membership_personal(user=user)


def role_denied_message(role: Role | str) -> str:
    return f"This needs the {Role(role).label.lower()} role in this workspace (or above)."


def role_check(request, role: Role | str) -> None:
    """403 unless the request's member has `role` or above."""
    if not request.membership.allows(role):
        raise PermissionDenied(role_denied_message(role))


def role_required(read: Role | str, write: Role | str | None = None):
    """A page that needs `read` or above to look (GET, HEAD) and `write` (default: `read`) to
    change anything (POST): 403 below it. Implies login_required."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            role_check(request, read if request.method in SAFE_METHODS else (write or read))
            return view(request, *args, **kwargs)

        return login_required(wrapped)

    return decorator


def own_or_admin(membership: Membership, created_by_id: int | None) -> bool:
    """Members manage what they made themselves (their ingest keys); admins manage everything."""
    return membership.allows(Role.ADMIN) or (
        membership.allows(Role.MEMBER) and created_by_id == membership.user_id
    )


class RoleRequired(BasePermission):
    """An API view's roles: `required_roles` maps HTTP methods to the least role; reads need a
    viewer and writes an admin unless the view says otherwise."""

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        default = Role.VIEWER if request.method in SAFE_METHODS else Role.ADMIN
        role = getattr(view, "required_roles", {}).get(request.method, default)
        if not request.membership.allows(role):
            self.message = role_denied_message(role)
            return False
        return True
