from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from accounts import selectors, services
from accounts.forms import ApiTokenForm, ProfileForm, SignUpForm, time_zone_names


def signup(request):
    if not settings.ALLOW_SIGNUP:
        raise Http404("Sign-up is disabled.")
    if request.user.is_authenticated:
        return redirect("dashboard")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        wanted = request.POST.get("next") or request.GET.get("next")
        if wanted and url_has_allowed_host_and_scheme(
            wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            return redirect(wanted)  # e.g. back to the invite that brought them here
        messages.success(request, "Welcome! Add your first provider account to start tracking.")
        return redirect("dashboard")
    return render(request, "registration/signup.html", {"form": form})


@login_required
def profile(request):
    form = ProfileForm(request.POST or None, instance=request.user)
    if request.method == "POST" and form.is_valid():
        form.save()
        # Their personal workspace follows their zone (a shared one has its own).
        services.user_time_zone_set(user=request.user, time_zone=form.cleaned_data["time_zone"])
        messages.success(request, "Profile saved.")
        return redirect("profile")
    return render(
        request,
        "accounts/profile.html",
        {"form": form, "time_zones": time_zone_names()},
        status=400 if form.errors else 200,
    )


@login_required
def api_tokens(request):
    """List, create (the plaintext is shown in this one response, never again) and revoke."""
    form = ApiTokenForm(request.POST or None)
    created = None
    if request.method == "POST" and form.is_valid():
        raw, token = services.api_token_create(user=request.user, name=form.cleaned_data["name"])
        created = {"raw": raw, "token": token}
        form = ApiTokenForm()
    context = {
        "form": form,
        "created": created,
        "tokens": selectors.api_token_list(user=request.user),
        "ttl_days": settings.API_TOKEN_TTL.days,
    }
    response = render(request, "accounts/api_tokens.html", context)
    if created:
        response["Cache-Control"] = "no-store"  # the page holds a secret
    return response


@login_required
@require_POST
def api_token_revoke(request, pk):
    token = selectors.api_token_get_for_user(user=request.user, pk=pk)
    services.api_token_revoke(token=token)
    messages.success(request, f"Token {token.name or token.hint + '…'} revoked.")
    return redirect("api-tokens")
