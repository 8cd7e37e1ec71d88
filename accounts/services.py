"""Writes for users, workspaces (members, roles, invites) and API tokens."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from accounts.models import ApiToken, Invite, Membership, Role, User, Workspace, hash_token
from audit.models import AuditEvent
from audit.services import audit_record

INVITE_TTL = timedelta(days=7)


@transaction.atomic
def user_create(*, username: str, password: str, email: str = "") -> User:
    user = User(username=username, email=email)
    validate_password(password, user)
    user.set_password(password)
    user.full_clean(exclude=["password"])
    user.save()
    return user


def api_token_create(*, user: User, name: str = "") -> tuple[str, ApiToken]:
    """Returns the plaintext token (shown once) and the stored, hashed row.

    The one way tokens are made: POST /api/auth/login and the tokens page both call it.
    """
    raw = ApiToken.new_raw_token()
    token = ApiToken.objects.create(
        user=user,
        name=name.strip()[:100],
        digest=hash_token(raw),
        hint=raw[:10],
        expires_at=timezone.now() + settings.API_TOKEN_TTL,
    )
    return raw, token


def api_token_revoke(*, token: ApiToken) -> None:
    token.delete()


def api_tokens_purge_expired(*, now: datetime | None = None) -> int:
    deleted, _ = ApiToken.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return deleted


# --- Workspaces -----------------------------------------------------------------------------


def workspace_personal_name(username: str) -> str:
    """ "<username>'s workspace", cut to fit the name column (a username may be 150
    characters, a workspace name 100)."""
    suffix = "'s workspace"
    return username[: Workspace._meta.get_field("name").max_length - len(suffix)] + suffix


def workspace_personal_create(*, user: User) -> Workspace:
    """The user's personal workspace, with them as its owner; made once, when the user is
    (accounts.signals), whichever way the user is made."""
    workspace, made = Workspace.objects.get_or_create(
        personal_for=user,
        defaults={"name": workspace_personal_name(user.username), "time_zone": user.time_zone},
    )
    if made:
        Membership.objects.create(workspace=workspace, user=user, role=Role.OWNER)
    return workspace


@transaction.atomic
def workspace_create(*, user: User, name: str, time_zone: str | None = None) -> Workspace:
    """A new shared workspace, with `user` as its owner."""
    workspace = Workspace(name=name.strip(), time_zone=time_zone or user.time_zone)
    workspace.full_clean()
    workspace.save()
    Membership.objects.create(workspace=workspace, user=user, role=Role.OWNER)
    audit_record(
        action=AuditEvent.Action.CREATED,
        obj=workspace,
        workspace=workspace,
        after={"name": workspace.name, "time_zone": workspace.time_zone},
    )
    return workspace


@transaction.atomic
def workspace_update(*, workspace: Workspace, name: str, time_zone: str) -> Workspace:
    before = {"name": workspace.name, "time_zone": workspace.time_zone}
    workspace.name, workspace.time_zone = name.strip(), time_zone
    workspace.full_clean()
    workspace.save(update_fields=["name", "time_zone"])
    after = {"name": workspace.name, "time_zone": workspace.time_zone}
    if before != after:
        audit_record(
            action=AuditEvent.Action.UPDATED,
            obj=workspace,
            workspace=workspace,
            before=before,
            after=after,
        )
    return workspace


@transaction.atomic
def workspace_delete(*, workspace: Workspace) -> None:
    """Delete a shared workspace and everything it owns (accounts, usage, budgets, alerts,
    channels). A personal workspace cannot be deleted. Its audit events stay, by name."""
    if workspace.is_personal:
        raise ValidationError("A personal workspace cannot be deleted.")
    audit_record(
        action=AuditEvent.Action.DELETED,
        obj=workspace,
        workspace=workspace,
        before={"name": workspace.name},
    )
    from providers.services import account_delete  # each account's usage goes its own way

    for account in workspace.provider_accounts.all():
        account_delete(account=account)
    workspace.delete()


def _owners_left(workspace: Workspace, *, without: Membership) -> int:
    """The owners other than `without`, counted with the workspace row locked (call inside the
    transaction that changes the membership): two owners demoting or removing each other at
    once take turns, so the second sees the first's change and the workspace keeps an owner."""
    Workspace.objects.select_for_update().filter(pk=workspace.pk).exists()
    return workspace.memberships.filter(role=Role.OWNER).exclude(pk=without.pk).count()


@transaction.atomic
def membership_role_set(*, membership: Membership, role: str) -> Membership:
    """Change a member's role. A workspace always keeps an owner, and the owner of a personal
    workspace stays its owner."""
    role = Role(role)
    if membership.role == role:
        return membership
    if membership.role == Role.OWNER and (
        membership.workspace.personal_for_id == membership.user_id
        or not _owners_left(membership.workspace, without=membership)
    ):
        raise ValidationError({"role": "The workspace would be left without an owner."})
    before = {"role": membership.role}
    membership.role = role
    membership.save(update_fields=["role"])
    audit_record(
        action=AuditEvent.Action.UPDATED,
        obj=membership,
        before=before,
        after={"role": membership.role},
    )
    return membership


@transaction.atomic
def workspaces_hand_over(*, user: User) -> list[Membership]:
    """Before a user is deleted: each shared workspace they alone own passes to its senior
    other member (highest role, then longest there), so no team is left without an owner.
    A workspace with no other member is left as it is. Returns the promoted memberships."""
    promoted = []
    for owned in Membership.objects.filter(
        user=user, role=Role.OWNER, workspace__personal_for=None
    ):
        workspace = owned.workspace
        if _owners_left(workspace, without=owned):
            continue
        others = list(workspace.memberships.exclude(pk=owned.pk).order_by("created_at", "pk"))
        if not others:
            continue
        heir = max(others, key=lambda m: Role(m.role).rank)  # max keeps the first of a tie
        before = {"role": heir.role}
        heir.role = Role.OWNER
        heir.save(update_fields=["role"])
        audit_record(
            action=AuditEvent.Action.UPDATED,
            obj=heir,
            before=before,
            after={"role": heir.role, "because": f"{user.get_username()} was deleted"},
        )
        promoted.append(heir)
    return promoted


@transaction.atomic
def membership_remove(*, membership: Membership) -> None:
    """Remove a member (or let one leave). The last owner cannot go, nor the owner of a personal
    workspace. The member's ingest keys keep working: they belong to the workspace's accounts;
    an admin revokes them if they should stop."""
    workspace = membership.workspace
    if workspace.personal_for_id == membership.user_id:
        raise ValidationError("The owner of a personal workspace cannot leave it.")
    if membership.role == Role.OWNER and not _owners_left(workspace, without=membership):
        raise ValidationError("The workspace would be left without an owner.")
    audit_record(
        action=AuditEvent.Action.DELETED,
        obj=membership,
        before={"user": membership.user.get_username(), "role": membership.role},
    )
    membership.delete()


# --- Invites --------------------------------------------------------------------------------


@transaction.atomic
def invite_create(
    *, workspace: Workspace, role: str, created_by: User, email: str = "", accept_url=None
) -> tuple[str, Invite]:
    """Returns the plaintext token (the link is shown once) and the stored row (SHA-256 only).

    With an email, the link is also sent there (after the commit) and only an account with that
    address may accept it. `accept_url(raw)` makes the absolute link for the email.
    Owners are made by changing a member's role, never by a link.
    """
    role = Role(role)
    if role == Role.OWNER:
        raise ValidationError(
            {
                "role": "Invite as admin, member or viewer; an owner is made by changing a "
                "member's role."
            }
        )
    raw = Invite.new_raw_token()
    invite = Invite.objects.create(
        workspace=workspace,
        role=role,
        email=email.strip(),
        digest=hash_token(raw),
        hint=raw[:10],
        created_by=created_by,
        expires_at=timezone.now() + INVITE_TTL,
    )
    audit_record(
        action=AuditEvent.Action.CREATED,
        obj=invite,
        after={
            "role": invite.role,
            "email": invite.email,
            "expires_at": invite.expires_at.isoformat(),
        },
    )
    if invite.email and accept_url is not None:
        link = accept_url(raw)
        transaction.on_commit(
            lambda: send_mail(
                subject=f"You are invited to {workspace.name} on AI Cost Tracker",
                message=(
                    f"{created_by.get_username()} invites you to the workspace "
                    f"{workspace.name} as {role.label.lower()}.\n\nAccept: {link}\n\n"
                    f"The link works once and expires on {invite.expires_at:%Y-%m-%d %H:%M} UTC."
                ),
                from_email=None,
                recipient_list=[invite.email],
            ),
            robust=True,
        )
    return raw, invite


@transaction.atomic
def invite_revoke(*, invite: Invite) -> None:
    if invite.accepted_at is None and invite.revoked_at is None:
        invite.revoked_at = timezone.now()
        invite.save(update_fields=["revoked_at"])
        audit_record(action=AuditEvent.Action.REVOKED, obj=invite)


class InviteError(Exception):
    """An invite that cannot be accepted: unknown, used, revoked, expired or for someone else."""


def invite_find(*, raw: str) -> Invite | None:
    return (
        Invite.objects.select_related("workspace", "created_by")
        .filter(digest=hash_token(raw))
        .first()
    )


@transaction.atomic
def invite_accept(*, raw: str, user: User) -> Membership:
    """Join the invite's workspace with its role, once. Someone already a member keeps their
    role and the invite stays unused."""
    invite = Invite.objects.select_for_update().filter(digest=hash_token(raw)).first()
    if invite is None:
        raise InviteError("This invite link is not valid.")
    if invite.accepted_at is not None:
        raise InviteError("This invite has already been used.")
    if invite.revoked_at is not None:
        raise InviteError("This invite was revoked.")
    if invite.expires_at <= timezone.now():
        raise InviteError("This invite has expired: ask for a new one.")
    if invite.email and invite.email.casefold() != (user.email or "").casefold():
        raise InviteError(
            "This invite was sent to another email address: sign in with the account that has "
            "it, or ask for a link without an address."
        )
    existing = Membership.objects.filter(workspace=invite.workspace, user=user).first()
    if existing is not None:
        return existing
    membership = Membership.objects.create(workspace=invite.workspace, user=user, role=invite.role)
    invite.accepted_at, invite.accepted_by = timezone.now(), user
    invite.save(update_fields=["accepted_at", "accepted_by"])
    audit_record(
        action=AuditEvent.Action.CREATED,
        obj=membership,
        actor=user,
        after={"user": user.get_username(), "role": membership.role, "invite": invite.hint},
    )
    return membership


@transaction.atomic
def user_time_zone_set(*, user: User, time_zone: str) -> None:
    """The user's own zone, which their personal workspace follows (a shared workspace has its
    own, set on its settings page). The workspace's change is logged like any other."""
    user.time_zone = time_zone
    user.save(update_fields=["time_zone"])
    personal = Workspace.objects.filter(personal_for=user).first()
    if personal is not None:
        workspace_update(workspace=personal, name=personal.name, time_zone=time_zone)
