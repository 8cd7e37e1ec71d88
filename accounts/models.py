from __future__ import annotations

import hashlib
import secrets
import zoneinfo

from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"Unknown time zone {value!r}.")


class User(AbstractUser):
    # Used only to draw day and month boundaries and to display; storage is UTC.
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        try:
            return zoneinfo.ZoneInfo(self.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return zoneinfo.ZoneInfo("UTC")


class Role(models.TextChoices):
    """What a member of a workspace may do; each role may do everything of the ones below it.

    owner: everything, including members, roles, invites and deleting the workspace.
    admin: provider accounts and their secrets, every ingest key, budgets, channels,
      reconciliation and syncs; reads the audit log.
    member: sees everything, adds and edits manual entries, acknowledges alerts, makes and
      revokes their own ingest keys.
    viewer: reads only.
    """

    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"

    @property
    def rank(self) -> int:
        return _ROLE_RANK[self]


_ROLE_RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}
# The roles an invite may give: an owner is made by changing a member's role, never by a link.
INVITABLE_ROLES = [(r.value, r.label) for r in (Role.ADMIN, Role.MEMBER, Role.VIEWER)]


class Workspace(models.Model):
    """What a team shares: provider accounts (and through them keys, usage, manual entries and
    reconciliation), budgets, alerts, channels and the audit log. Every user has a personal
    one, made when the user is; others are made and shared through invites."""

    name = models.CharField(max_length=100)
    # Draws the workspace's day and month boundaries (budgets, the dashboard's month, the
    # dates a page shows); storage stays UTC. Every member sees the same figures.
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    # The user whose personal workspace this is: it cannot be left or deleted.
    personal_for = models.OneToOneField(
        User,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="personal_workspace",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        try:
            return zoneinfo.ZoneInfo(self.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return zoneinfo.ZoneInfo("UTC")

    @property
    def is_personal(self) -> bool:
        return self.personal_for_id is not None


class Membership(models.Model):
    """A user's place in a workspace. Access to anything a workspace owns goes through one."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=8, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["workspace__name", "user__username"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "user"], name="membership_once"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.workspace} ({self.role})"

    def allows(self, role: Role | str) -> bool:
        """Whether this member's role is `role` or above it."""
        return Role(self.role).rank >= Role(role).rank


def hash_token(raw: str) -> str:
    # Tokens are long random strings, so a fast hash is right: a password hasher would only
    # add latency to every API call without adding security.
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    """A personal API token. Only its SHA-256 is stored; the plaintext is shown once."""

    PREFIX = "ctk_"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True, help_text="What the token is for.")
    digest = models.CharField(max_length=64, unique=True)
    hint = models.CharField(max_length=12, help_text="First characters, to tell tokens apart.")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.hint}… ({self.user})"

    @classmethod
    def new_raw_token(cls) -> str:
        return cls.PREFIX + secrets.token_urlsafe(32)

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()


class Invite(models.Model):
    """An invitation to a workspace with a role: a link holding a random token, shown once,
    stored as its SHA-256; it expires and is used at most once. An email, when given, is where
    the link was sent and the only address whose account may accept it."""

    PREFIX = "ctv_"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="invites")
    role = models.CharField(max_length=8, choices=Role.choices)
    email = models.EmailField(blank=True)
    digest = models.CharField(max_length=64, unique=True)
    hint = models.CharField(max_length=12)
    created_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.hint}… to {self.workspace} as {self.role}"

    @classmethod
    def new_raw_token(cls) -> str:
        return cls.PREFIX + secrets.token_urlsafe(32)

    @property
    def is_open(self) -> bool:
        return (
            self.accepted_at is None
            and self.revoked_at is None
            and self.expires_at > timezone.now()
        )

    @property
    def state(self) -> str:
        if self.accepted_at is not None:
            return "accepted"
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at <= timezone.now() else "open"
