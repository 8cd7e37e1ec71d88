"""The admin of workspaces, memberships and invites: pages render for a superuser, never show
an invite's digest, and edits go through the services."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from accounts import services
from accounts.models import Invite, Membership, Role, Workspace
from accounts.tests.factories import UserFactory
from audit.models import AuditEvent
from providers.models import ProviderAccount
from providers.tests.factories import AccountFactory, provider
from usage.models import UsageRecord
from usage.services.records import manual_entry_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def team():
    owner, viewer = UserFactory(), UserFactory()
    workspace = services.workspace_create(user=owner, name="Team")
    raw, _ = services.invite_create(workspace=workspace, role=Role.VIEWER, created_by=owner)
    services.invite_accept(raw=raw, user=viewer)
    open_raw, open_invite = services.invite_create(
        workspace=workspace, role=Role.ADMIN, created_by=owner, email="a@example.com"
    )
    return workspace, [raw, open_raw], open_invite


def test_it_renders_the_admin_pages_without_an_invite_digest(admin_client, team):
    workspace, raws, invite = team
    membership = workspace.memberships.get(role=Role.VIEWER)
    pages = [
        reverse("admin:accounts_workspace_changelist"),
        reverse("admin:accounts_workspace_change", args=[workspace.pk]),
        reverse("admin:accounts_workspace_delete", args=[workspace.pk]),
        reverse("admin:accounts_membership_changelist"),
        reverse("admin:accounts_membership_changelist")
        + f"?role=viewer&workspace__id__exact={workspace.pk}",
        reverse("admin:accounts_membership_change", args=[membership.pk]),
        reverse("admin:accounts_invite_changelist"),
        reverse("admin:accounts_invite_changelist")
        + f"?role=admin&workspace__id__exact={workspace.pk}",
        reverse("admin:accounts_invite_change", args=[invite.pk]),
    ]
    secrets = [*raws, *Invite.objects.values_list("digest", flat=True)]

    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        page = response.content.decode()
        for secret in secrets:
            assert secret not in page, url
    detail = admin_client.get(pages[-1]).content.decode()
    assert f"{invite.hint}…" in detail and "a@example.com" in detail
    assert 'name="digest"' not in detail and 'name="email"' not in detail  # nothing editable
    filtered = admin_client.get(pages[7]).content.decode()
    assert invite.hint in filtered
    assert Invite.objects.get(accepted_at__isnull=False).hint not in filtered  # the viewer's


def test_it_offers_no_adding_and_no_editing_of_members_or_invites(admin_client, team):
    workspace, _, invite = team
    membership = workspace.memberships.get(role=Role.VIEWER)

    for name in ("workspace", "membership", "invite"):
        assert admin_client.get(reverse(f"admin:accounts_{name}_add")).status_code == 403
    admin_client.post(
        reverse("admin:accounts_membership_change", args=[membership.pk]), {"role": "owner"}
    )
    admin_client.post(
        reverse("admin:accounts_invite_change", args=[invite.pk]), {"role": "owner", "digest": "x"}
    )

    assert Membership.objects.get(pk=membership.pk).role == Role.VIEWER
    stored = Invite.objects.get(pk=invite.pk)
    assert (stored.role, len(stored.digest)) == (Role.ADMIN, 64)


def test_it_saves_a_workspace_through_the_service(admin_client, team):
    workspace, _, _ = team

    response = admin_client.post(
        reverse("admin:accounts_workspace_change", args=[workspace.pk]),
        {
            "name": "Team B",
            "time_zone": "Europe/Oslo",
            "memberships-TOTAL_FORMS": "2",
            "memberships-INITIAL_FORMS": "2",
            "memberships-MIN_NUM_FORMS": "0",
            "memberships-MAX_NUM_FORMS": "1000",
            **{
                f"memberships-{i}-id": str(pk)
                for i, pk in enumerate(
                    workspace.memberships.order_by("pk").values_list("pk", flat=True)
                )
            },
            **{f"memberships-{i}-workspace": str(workspace.pk) for i in range(2)},
        },
    )

    assert response.status_code == 302
    workspace.refresh_from_db()
    assert (workspace.name, workspace.time_zone) == ("Team B", "Europe/Oslo")
    event = AuditEvent.objects.get(object_type="workspace", action=AuditEvent.Action.UPDATED)
    assert (event.workspace, event.changes["name"]) == (workspace, ["Team", "Team B"])


def test_it_deletes_a_shared_workspace_through_the_service_and_never_a_personal_one(
    admin_client, team
):
    workspace, _, _ = team
    account = AccountFactory(workspace=workspace, provider=provider("groq"))
    manual_entry_create(account=account, day=date(2026, 8, 3), cost=Decimal("1.00"))
    personal = UserFactory().personal_workspace

    refused = admin_client.post(
        reverse("admin:accounts_workspace_delete", args=[personal.pk]), {"post": "yes"}
    )
    deleted = admin_client.post(
        reverse("admin:accounts_workspace_delete", args=[workspace.pk]), {"post": "yes"}
    )

    assert refused.status_code == 403
    assert deleted.status_code == 302
    assert list(Workspace.objects.filter(personal_for=None)) == []
    assert Workspace.objects.filter(pk=personal.pk).exists()
    assert not ProviderAccount.objects.exists() and not UsageRecord.objects.exists()
    assert AuditEvent.objects.filter(
        object_type="workspace", action=AuditEvent.Action.DELETED, workspace_label="Team"
    ).exists()
    changelist = admin_client.get(reverse("admin:accounts_workspace_changelist"))
    assert "delete_selected" not in changelist.content.decode()


def test_it_revokes_invites_from_the_admin(admin_client, team):
    workspace, _, invite = team
    accepted = Invite.objects.get(accepted_at__isnull=False)

    response = admin_client.post(
        reverse("admin:accounts_invite_changelist"),
        {"action": "revoke", "_selected_action": [invite.pk, accepted.pk]},
    )

    assert response.status_code == 302
    assert Invite.objects.get(pk=invite.pk).state == "revoked"
    assert Invite.objects.get(pk=accepted.pk).state == "accepted"
    assert AuditEvent.objects.filter(object_type="invite", action="revoked").count() == 1
