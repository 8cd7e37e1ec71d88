from django.conf import settings

from accounts.models import Membership


def site(request):
    return {"ALLOW_SIGNUP": settings.ALLOW_SIGNUP}


def workspace(request):
    """The request's membership and the user's workspaces, for the switcher and role-aware
    controls (what a role may not do is never offered; the route refuses it anyway)."""
    membership = getattr(request, "membership", None)
    if membership is None or not request.user.is_authenticated:
        return {}
    return {
        "membership": membership,
        "can_admin": membership.allows("admin"),
        "can_member": membership.allows("member"),
        "my_workspaces": lambda: (
            Membership.objects.filter(user=request.user)
            .select_related("workspace")
            .order_by("workspace__name")
        ),
    }
