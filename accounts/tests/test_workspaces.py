"""Workspaces, members, roles and invites (issue 12 point 1): the services and the pages and
APIs that call them."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from accounts import services
from accounts.access import SESSION_KEY
from accounts.models import ApiToken, Invite, Membership, Role, User, Workspace
from accounts.tests.factories import PASSWORD, UserFactory
from alerts.models import Alert, Budget, EvaluationDue, NotificationChannel
from alerts.selectors import budget_statuses
from alerts.services import alert_manual_create, budget_create
from alerts.tests.factories import ChannelFactory
from audit.models import AuditEvent
from providers.models import ProviderAccount
from providers.tests.factories import AccountFactory, provider
from usage.models import DailyUsage, UsageRecord
from usage.services.records import manual_entry_create

pytestmark = pytest.mark.django_db

INVITE_URL = re.compile(r"/invites/(ctv_[A-Za-z0-9_-]+)/")


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _shared(owner: User, name: str = "Team", time_zone: str = "UTC") -> Workspace:
    return services.workspace_create(user=owner, name=name, time_zone=time_zone)


def _join(workspace: Workspace, user: User, role: str) -> Membership:
    owner = workspace.memberships.filter(role=Role.OWNER).first().user
    raw, _ = services.invite_create(workspace=workspace, role=role, created_by=owner)
    return services.invite_accept(raw=raw, user=user)


def _rows(model) -> list[tuple]:
    return list(model.objects.order_by("pk").values_list())


def _in_workspace(client: Client, workspace: Workspace) -> None:
    response = client.post(reverse("workspace-switch"), {"workspace": workspace.pk})
    assert response.status_code == 302


def _bearer(user: User) -> dict[str, str]:
    raw, _ = services.api_token_create(user=user)
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def _events_text() -> str:
    """Every audit event as text, to search for what must never be logged."""
    return json.dumps(list(AuditEvent.objects.values()), default=str)


# --- A personal workspace for every user -----------------------------------------------------


def test_it_gives_a_new_user_one_personal_workspace_as_its_owner():
    user = UserFactory(username="ada", time_zone="Europe/Berlin")

    workspace = user.personal_workspace
    assert (workspace.name, workspace.time_zone, workspace.is_personal) == (
        "ada's workspace",
        "Europe/Berlin",
        True,
    )
    assert list(user.memberships.values_list("workspace_id", "role")) == [
        (workspace.pk, Role.OWNER)
    ]
    # Run again (a second save, a retried signal): the same rows.
    before = (_rows(Workspace), _rows(Membership))
    assert services.workspace_personal_create(user=user) == workspace
    user.save()
    assert (_rows(Workspace), _rows(Membership)) == before


def test_it_gives_a_user_who_signs_up_a_personal_workspace(client):
    response = client.post(
        reverse("signup"),
        {
            "username": "grace",
            "email": "g@example.com",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )

    assert response.status_code == 302
    user = User.objects.get(username="grace")
    assert Membership.objects.filter(user=user).get().workspace == user.personal_workspace
    assert user.personal_workspace.memberships.get().role == Role.OWNER


def test_it_gives_createsuperuser_a_personal_workspace():
    call_command("createsuperuser", interactive=False, username="root", email="r@example.com")

    root = User.objects.get(username="root")
    assert root.personal_workspace.name == "root's workspace"
    assert root.memberships.get().role == Role.OWNER


def test_it_names_the_personal_workspace_of_a_long_username_within_the_name_column():
    # A username may be 150 characters; a workspace name 100 (PostgreSQL refused the insert,
    # so the sign-up failed).
    user = UserFactory(username="x" * 150)

    name = user.personal_workspace.name
    assert len(name) <= Workspace._meta.get_field("name").max_length
    assert name == "x" * 88 + "'s workspace"


# --- Creating a workspace ---------------------------------------------------------------------


def test_it_creates_a_shared_workspace_with_its_maker_as_owner_and_switches_to_it():
    owner = UserFactory()
    client = _client(owner)

    response = client.post(
        reverse("workspace-new"), {"name": "  Research  ", "time_zone": "asia/tokyo"}
    )

    assert response.status_code == 302
    workspace = Workspace.objects.get(name="Research")
    assert (workspace.time_zone, workspace.is_personal) == ("Asia/Tokyo", False)
    assert list(workspace.memberships.values_list("user_id", "role")) == [(owner.pk, Role.OWNER)]
    assert client.session[SESSION_KEY] == workspace.pk
    assert "Research" in client.get(reverse("workspace")).content.decode()
    event = AuditEvent.objects.get(object_type="workspace", action=AuditEvent.Action.CREATED)
    assert (event.workspace, event.actor, event.changes) == (
        workspace,
        owner,
        {"name": [None, "Research"], "time_zone": [None, "Asia/Tokyo"]},
    )


def test_it_refuses_a_workspace_without_a_name_or_with_an_unknown_zone():
    client = _client(UserFactory())

    blank = client.post(reverse("workspace-new"), {"name": "  ", "time_zone": "UTC"})
    unknown = client.post(reverse("workspace-new"), {"name": "X", "time_zone": "Mars/Olympus"})

    assert (blank.status_code, unknown.status_code) == (400, 400)
    assert not Workspace.objects.filter(personal_for=None).exists()


def test_it_updates_a_workspace_once_when_saved_twice():
    owner = UserFactory()
    workspace = _shared(owner)

    services.workspace_update(workspace=workspace, name="Team B", time_zone="Europe/Paris")
    before = _rows(Workspace), _rows(AuditEvent)
    services.workspace_update(workspace=workspace, name="Team B", time_zone="Europe/Paris")

    assert (_rows(Workspace), _rows(AuditEvent)) == before
    event = AuditEvent.objects.get(object_type="workspace", action=AuditEvent.Action.UPDATED)
    assert event.changes == {"name": ["Team", "Team B"], "time_zone": ["UTC", "Europe/Paris"]}


# --- Invites ----------------------------------------------------------------------------------


def test_it_shows_an_invite_link_once_and_stores_only_its_sha256():
    owner = UserFactory()
    workspace = _shared(owner)
    client = _client(owner)
    _in_workspace(client, workspace)

    response = client.post(reverse("invite-create"), {"role": Role.MEMBER}, follow=True)

    page = response.content.decode()
    raw = INVITE_URL.search(page).group(1)
    assert response["Cache-Control"] == "no-store"
    assert f"http://testserver/invites/{raw}/" in page
    invite = Invite.objects.get()
    assert invite.digest == hashlib.sha256(raw.encode()).hexdigest()
    assert (invite.workspace, invite.role, invite.created_by) == (workspace, Role.MEMBER, owner)
    assert raw not in json.dumps(list(Invite.objects.values()), default=str)
    assert invite.hint == raw[:10] and len(invite.hint) < len(raw)
    again = client.get(reverse("workspace")).content.decode()
    assert raw not in again and INVITE_URL.search(again) is None
    assert invite.hint in again  # listed by its first characters only


def test_it_joins_with_the_invites_role_and_refuses_a_second_use():
    owner, joiner, late = UserFactory(), UserFactory(), UserFactory()
    workspace = _shared(owner)
    raw, invite = services.invite_create(workspace=workspace, role=Role.ADMIN, created_by=owner)
    client = _client(joiner)

    shown = client.get(reverse("invite-accept", args=[raw]))
    joined = client.post(reverse("invite-accept", args=[raw]))

    assert shown.status_code == 200 and "Team" in shown.content.decode()
    assert shown["Referrer-Policy"] == "same-origin"  # the token never leaves for another site
    assert joined.status_code == 302 and joined["Location"] == reverse("dashboard")
    assert workspace.memberships.get(user=joiner).role == Role.ADMIN
    assert client.session[SESSION_KEY] == workspace.pk
    invite.refresh_from_db()
    assert (invite.state, invite.accepted_by) == ("accepted", joiner)

    second = _client(late).post(reverse("invite-accept", args=[raw]))
    assert second.status_code == 400
    assert "already been used" in second.content.decode()
    assert not workspace.memberships.filter(user=late).exists()
    with pytest.raises(services.InviteError, match="already been used"):
        services.invite_accept(raw=raw, user=late)
    assert _client(late).get(reverse("invite-accept", args=[raw])).status_code == 400


def test_it_refuses_an_unknown_invite_link():
    response = _client(UserFactory()).post(reverse("invite-accept", args=["ctv_nothing"]))

    assert response.status_code == 400
    assert "not valid" in response.content.decode()


def test_it_refuses_an_expired_invite():
    owner, joiner = UserFactory(), UserFactory()
    workspace = _shared(owner)
    made = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    with time_machine.travel(made, tick=False):
        raw, invite = services.invite_create(
            workspace=workspace, role=Role.VIEWER, created_by=owner
        )
    assert invite.expires_at == made + timedelta(days=7)

    with time_machine.travel(made + timedelta(days=7), tick=False):
        response = _client(joiner).post(reverse("invite-accept", args=[raw]))
        assert invite.state == "expired"

    assert response.status_code == 400
    assert "expired" in response.content.decode()
    assert not workspace.memberships.filter(user=joiner).exists()
    with time_machine.travel(made + timedelta(days=7) - timedelta(seconds=1), tick=False):
        assert services.invite_accept(raw=raw, user=joiner).role == Role.VIEWER


def test_it_refuses_a_revoked_invite_and_revokes_once():
    owner, joiner = UserFactory(), UserFactory()
    workspace = _shared(owner)
    raw, invite = services.invite_create(workspace=workspace, role=Role.MEMBER, created_by=owner)
    client = _client(owner)
    _in_workspace(client, workspace)

    assert client.post(reverse("invite-revoke", args=[invite.pk])).status_code == 302
    before = _rows(Invite), _rows(AuditEvent)
    services.invite_revoke(invite=Invite.objects.get(pk=invite.pk))
    assert (_rows(Invite), _rows(AuditEvent)) == before

    response = _client(joiner).post(reverse("invite-accept", args=[raw]))
    assert response.status_code == 400 and "revoked" in response.content.decode()
    assert not workspace.memberships.filter(user=joiner).exists()


def test_it_404s_revoking_another_workspaces_invite():
    owner, stranger = UserFactory(), UserFactory()
    _, invite = services.invite_create(workspace=_shared(owner), role=Role.MEMBER, created_by=owner)

    response = _client(stranger).post(reverse("invite-revoke", args=[invite.pk]))

    assert response.status_code == 404
    assert Invite.objects.get(pk=invite.pk).revoked_at is None


def test_it_emails_an_email_invite_and_lets_only_that_address_accept(
    django_capture_on_commit_callbacks,
):
    owner = UserFactory()
    workspace = _shared(owner)
    wrong = UserFactory(email="someone@example.com")
    right = UserFactory(email="Invited@Example.com")
    client = _client(owner)
    _in_workspace(client, workspace)

    with django_capture_on_commit_callbacks(execute=True):
        page = client.post(
            reverse("invite-create"),
            {"role": Role.VIEWER, "email": "invited@example.com"},
            follow=True,
        ).content.decode()

    raw = INVITE_URL.search(page).group(1)
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["invited@example.com"]
    assert f"http://testserver/invites/{raw}/" in message.body
    assert "Team" in message.subject

    refused = _client(wrong).post(reverse("invite-accept", args=[raw]))
    assert refused.status_code == 400 and "another email address" in refused.content.decode()
    assert not workspace.memberships.filter(user=wrong).exists()

    assert _client(right).post(reverse("invite-accept", args=[raw])).status_code == 302
    assert workspace.memberships.get(user=right).role == Role.VIEWER


def test_it_sends_no_email_for_a_link_invite(django_capture_on_commit_callbacks):
    owner = UserFactory()
    with django_capture_on_commit_callbacks(execute=True):
        services.invite_create(
            workspace=_shared(owner), role=Role.VIEWER, created_by=owner, accept_url=str
        )

    assert mail.outbox == []


def test_it_keeps_the_role_of_someone_already_a_member():
    owner, admin = UserFactory(), UserFactory()
    workspace = _shared(owner)
    _join(workspace, admin, Role.ADMIN)
    raw, invite = services.invite_create(workspace=workspace, role=Role.VIEWER, created_by=owner)

    membership = services.invite_accept(raw=raw, user=admin)

    assert membership.role == Role.ADMIN
    assert workspace.memberships.get(user=admin).role == Role.ADMIN
    invite.refresh_from_db()
    assert invite.state == "open"  # still there for whom it was meant


def test_it_refuses_an_invite_as_owner():
    owner = UserFactory()
    workspace = _shared(owner)

    with pytest.raises(ValidationError):
        services.invite_create(workspace=workspace, role=Role.OWNER, created_by=owner)
    response = _client(owner).post(reverse("invite-create"), {"role": Role.OWNER})

    assert response.status_code == 302
    assert not Invite.objects.exists()


def test_it_returns_to_the_invite_after_signing_up():
    owner = UserFactory()
    workspace = _shared(owner)
    raw, _ = services.invite_create(workspace=workspace, role=Role.MEMBER, created_by=owner)
    invite_path = reverse("invite-accept", args=[raw])
    client = Client()

    page = client.get(invite_path).content.decode()
    assert f"{reverse('signup')}?next={invite_path}" in page
    signed_up = client.post(
        f"{reverse('signup')}?next={invite_path}",
        {
            "username": "newbie",
            "email": "n@example.com",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )
    assert signed_up.status_code == 302 and signed_up["Location"] == invite_path
    assert client.post(invite_path).status_code == 302

    newbie = User.objects.get(username="newbie")
    assert sorted(newbie.memberships.values_list("workspace_id", "role")) == sorted(
        [(newbie.personal_workspace.pk, Role.OWNER), (workspace.pk, Role.MEMBER)]
    )


def test_it_ignores_a_next_to_another_site_after_signing_up():
    response = Client().post(
        f"{reverse('signup')}?next=https://evil.example/",
        {"username": "n2", "email": "n2@example.com", "password1": PASSWORD, "password2": PASSWORD},
    )

    assert response["Location"] == reverse("dashboard")


def test_it_lets_only_owners_invite():
    owner, admin = UserFactory(), UserFactory()
    workspace = _shared(owner)
    _join(workspace, admin, Role.ADMIN)
    client = _client(admin)
    _in_workspace(client, workspace)

    assert client.post(reverse("invite-create"), {"role": Role.VIEWER}).status_code == 403
    assert Invite.objects.filter(accepted_at=None).count() == 0


# --- Members and roles ------------------------------------------------------------------------


def test_it_never_leaves_a_workspace_without_an_owner():
    owner, other = UserFactory(), UserFactory()
    workspace = _shared(owner)
    mine = workspace.memberships.get(user=owner)

    with pytest.raises(ValidationError, match="without an owner"):
        services.membership_role_set(membership=mine, role=Role.ADMIN)
    with pytest.raises(ValidationError, match="without an owner"):
        services.membership_remove(membership=mine)
    client = _client(owner)
    _in_workspace(client, workspace)
    client.post(reverse("member-role", args=[mine.pk]), {"role": Role.VIEWER})
    client.post(reverse("member-remove", args=[mine.pk]))
    assert workspace.memberships.get(user=owner).role == Role.OWNER

    # With a second owner, the first may step down (and stepping down twice changes nothing).
    theirs = _join(workspace, other, Role.ADMIN)
    services.membership_role_set(membership=theirs, role=Role.OWNER)
    services.membership_role_set(membership=mine, role=Role.ADMIN)
    before = _rows(Membership), _rows(AuditEvent)
    services.membership_role_set(membership=mine, role=Role.ADMIN)
    assert (_rows(Membership), _rows(AuditEvent)) == before
    with pytest.raises(ValidationError):
        services.membership_remove(membership=theirs)


def test_it_keeps_the_owner_of_a_personal_workspace_in_it_as_owner():
    user, helper = UserFactory(), UserFactory()
    personal = user.personal_workspace
    mine = personal.memberships.get(user=user)
    theirs = _join(personal, helper, Role.ADMIN)
    services.membership_role_set(membership=theirs, role=Role.OWNER)  # a second owner

    with pytest.raises(ValidationError, match="personal workspace cannot leave"):
        services.membership_remove(membership=mine)
    with pytest.raises(ValidationError, match="without an owner"):
        services.membership_role_set(membership=mine, role=Role.MEMBER)
    response = _client(helper).post(
        reverse("member-remove", args=[mine.pk]), HTTP_X_WORKSPACE=str(personal.pk)
    )

    assert response.status_code == 302
    assert personal.memberships.get(user=user).role == Role.OWNER


def test_it_lets_a_member_leave_a_shared_workspace_back_to_their_personal_one():
    owner, member = UserFactory(), UserFactory()
    workspace = _shared(owner)
    membership = _join(workspace, member, Role.MEMBER)
    client = _client(member)
    _in_workspace(client, workspace)

    response = client.post(reverse("member-remove", args=[membership.pk]))

    assert response.status_code == 302 and response["Location"] == reverse("dashboard")
    assert not workspace.memberships.filter(user=member).exists()
    assert SESSION_KEY not in client.session
    page = client.get(reverse("workspace"))
    assert page.context["workspace"] == member.personal_workspace
    event = AuditEvent.objects.get(object_type="membership", action=AuditEvent.Action.DELETED)
    assert (event.workspace, event.actor) == (workspace, member)


def test_it_falls_back_to_the_personal_workspace_of_a_member_removed_by_someone_else():
    owner, member = UserFactory(), UserFactory()
    workspace = _shared(owner)
    membership = _join(workspace, member, Role.MEMBER)
    client = _client(member)
    _in_workspace(client, workspace)
    services.membership_remove(membership=membership)

    page = client.get(reverse("workspace"))

    assert page.status_code == 200
    assert page.context["workspace"] == member.personal_workspace
    assert SESSION_KEY not in client.session


def test_it_lets_owners_remove_and_change_members_but_no_one_below():
    owner, admin, viewer = UserFactory(), UserFactory(), UserFactory()
    workspace = _shared(owner)
    admin_membership = _join(workspace, admin, Role.ADMIN)
    viewer_membership = _join(workspace, viewer, Role.VIEWER)
    admin_client = _client(admin)
    _in_workspace(admin_client, workspace)

    assert (
        admin_client.post(reverse("member-remove", args=[viewer_membership.pk])).status_code == 403
    )
    assert (
        admin_client.post(
            reverse("member-role", args=[viewer_membership.pk]), {"role": Role.ADMIN}
        ).status_code
        == 403
    )
    assert workspace.memberships.get(user=viewer).role == Role.VIEWER

    owner_client = _client(owner)
    _in_workspace(owner_client, workspace)
    owner_client.post(reverse("member-role", args=[viewer_membership.pk]), {"role": Role.MEMBER})
    owner_client.post(reverse("member-remove", args=[admin_membership.pk]))
    assert sorted(workspace.memberships.values_list("user_id", "role")) == sorted(
        [(owner.pk, Role.OWNER), (viewer.pk, Role.MEMBER)]
    )


def test_it_404s_changing_a_member_of_another_workspace():
    owner, stranger = UserFactory(), UserFactory()
    theirs = stranger.personal_workspace.memberships.get()

    response = _client(owner).post(reverse("member-role", args=[theirs.pk]), {"role": "viewer"})

    assert response.status_code == 404
    assert Membership.objects.get(pk=theirs.pk).role == Role.OWNER


# --- Switching workspace ----------------------------------------------------------------------


@time_machine.travel(datetime(2026, 8, 10, 12, 0, tzinfo=UTC), tick=False)
def test_it_switches_what_the_dashboard_shows():
    owner = UserFactory()
    workspace = _shared(owner)
    for where, name in ((owner.personal_workspace, "Mine-Account"), (workspace, "Team-Account")):
        account = AccountFactory(workspace=where, name=name, provider=provider("groq"))
        manual_entry_create(account=account, day=date(2026, 8, 3), cost=Decimal("1.00"))
    client = _client(owner)

    personal = client.get(reverse("dashboard")).content.decode()
    _in_workspace(client, workspace)
    shared = client.get(reverse("dashboard")).content.decode()

    assert "Mine-Account" in personal and "Team-Account" not in personal
    assert "Team-Account" in shared and "Mine-Account" not in shared


def test_it_404s_a_switch_to_a_workspace_one_is_not_in():
    owner, stranger = UserFactory(), UserFactory()
    client = _client(stranger)

    for value in (_shared(owner).pk, owner.personal_workspace.pk, "abc", ""):
        response = client.post(reverse("workspace-switch"), {"workspace": value})
        assert response.status_code == 404, value
    assert SESSION_KEY not in client.session


# --- The API's X-Workspace --------------------------------------------------------------------


def test_it_lists_ones_workspaces_with_ones_role_in_each(api_client):
    owner, viewer = UserFactory(username="owner"), UserFactory()
    workspace = _shared(owner, name="A team")
    _join(workspace, viewer, Role.VIEWER)

    body = api_client.get(reverse("api-workspaces"), **_bearer(viewer)).json()

    assert [(w["workspace"], w["role"], w["personal"]) for w in body] == [
        (workspace.pk, "viewer", False),
        (viewer.personal_workspace.pk, "owner", True),
    ]


def test_it_acts_in_the_workspace_named_by_x_workspace(api_client):
    owner = UserFactory()
    workspace = _shared(owner)
    AccountFactory(workspace=owner.personal_workspace, name="Mine-Account")
    AccountFactory(workspace=workspace, name="Team-Account")
    auth = _bearer(owner)

    default = api_client.get(reverse("api-accounts"), **auth).json()
    named = api_client.get(
        reverse("api-accounts"), HTTP_X_WORKSPACE=str(workspace.pk), **auth
    ).json()

    assert [a["name"] for a in default["results"]] == ["Mine-Account"]
    assert [a["name"] for a in named["results"]] == ["Team-Account"]


def test_it_404s_an_x_workspace_that_is_no_number_or_not_ones_own(api_client):
    owner, stranger = UserFactory(), UserFactory()
    workspace = _shared(owner)
    AccountFactory(workspace=workspace, name="Team-Account")
    auth = _bearer(stranger)

    for value in ("abc", "1.5", "", str(workspace.pk), str(owner.personal_workspace.pk)):
        response = api_client.get(reverse("api-accounts"), HTTP_X_WORKSPACE=value, **auth)
        assert response.status_code == 404, value
        assert response.json() == {"detail": "No such workspace."}
        assert "Team-Account" not in response.content.decode()


def test_it_403s_a_viewers_post_with_a_json_message(api_client):
    owner, viewer = UserFactory(), UserFactory()
    workspace = _shared(owner)
    _join(workspace, viewer, Role.VIEWER)

    response = api_client.post(
        reverse("api-budgets"),
        {"scope": "overall", "amount": "10.00"},
        format="json",
        HTTP_X_WORKSPACE=str(workspace.pk),
        **_bearer(viewer),
    )

    assert response.status_code == 403
    assert response.json() == {"detail": "This needs the admin role in this workspace (or above)."}
    assert not Budget.objects.exists()
    # In their own workspace the same call is theirs to make.
    own = api_client.post(
        reverse("api-budgets"),
        {"scope": "overall", "amount": "10.00"},
        format="json",
        **_bearer(viewer),
    )
    assert own.status_code == 201
    assert Budget.objects.get().workspace == viewer.personal_workspace


def test_it_makes_an_invite_through_the_api_for_owners_only(api_client):
    owner, admin = UserFactory(), UserFactory()
    workspace = _shared(owner)
    _join(workspace, admin, Role.ADMIN)
    header = {"HTTP_X_WORKSPACE": str(workspace.pk)}

    made = api_client.post(
        reverse("api-invites"), {"role": "member"}, format="json", **header, **_bearer(owner)
    )
    refused = api_client.post(
        reverse("api-invites"), {"role": "member"}, format="json", **header, **_bearer(admin)
    )

    assert made.status_code == 201 and made["Cache-Control"] == "no-store"
    raw = INVITE_URL.search(made.json()["url"]).group(1)
    assert Invite.objects.get(accepted_at=None).digest == hashlib.sha256(raw.encode()).hexdigest()
    assert refused.status_code == 403
    assert Invite.objects.filter(accepted_at=None).count() == 1


# --- Time zones -------------------------------------------------------------------------------


# 2026-08-31 13:00 UTC is 2026-09-01 01:00 in Auckland (NZST, UTC+12): September there, still
# August in UTC.
@time_machine.travel(datetime(2026, 8, 31, 13, 0, tzinfo=UTC), tick=False)
def test_it_draws_a_shared_workspaces_budget_month_in_its_own_zone():
    member = UserFactory(time_zone="UTC")
    auckland = _shared(member, name="Kiwis", time_zone="Pacific/Auckland")
    for workspace in (auckland, member.personal_workspace):
        account = AccountFactory(workspace=workspace, provider=provider("groq"))
        manual_entry_create(account=account, day=date(2026, 8, 31), cost=Decimal("5.00"))
        budget_create(workspace=workspace, scope=Budget.Scope.OVERALL, amount=Decimal("100"))

    (there,) = budget_statuses(workspace=auckland)
    (own,) = budget_statuses(workspace=member.personal_workspace)

    # Auckland's September has no spend yet: the 31 August UTC day is August's.
    assert (there.period, there.spent) == (date(2026, 9, 1), Decimal("0"))
    # The member's own (UTC) month is August: $5.00 of $100 spent.
    assert (own.period, own.spent) == (date(2026, 8, 1), Decimal("5.00"))


def test_it_moves_the_personal_workspaces_zone_with_the_profile_but_not_a_shared_ones():
    user = UserFactory(time_zone="UTC")
    shared = _shared(user, time_zone="UTC")
    client = _client(user)

    response = client.post(reverse("profile"), {"email": user.email, "time_zone": "Asia/Tokyo"})

    assert response.status_code == 302
    assert Workspace.objects.get(pk=user.personal_workspace.pk).time_zone == "Asia/Tokyo"
    assert Workspace.objects.get(pk=shared.pk).time_zone == "UTC"
    before = _rows(User), _rows(Workspace), _rows(AuditEvent)
    services.user_time_zone_set(user=User.objects.get(pk=user.pk), time_zone="Asia/Tokyo")
    assert (_rows(User), _rows(Workspace), _rows(AuditEvent)) == before
    event = AuditEvent.objects.get(object_type="workspace", action=AuditEvent.Action.UPDATED)
    assert (event.workspace_id, event.changes) == (
        user.personal_workspace.pk,
        {"time_zone": ["UTC", "Asia/Tokyo"]},
    )


# --- Deleting a workspace ---------------------------------------------------------------------


def test_it_deletes_a_shared_workspace_with_its_data_and_keeps_its_audit_events():
    owner, member = UserFactory(), UserFactory()
    workspace = _shared(owner, name="Doomed")
    _join(workspace, member, Role.MEMBER)
    account = AccountFactory(workspace=workspace, provider=provider("groq"))
    manual_entry_create(account=account, day=date(2026, 8, 3), cost=Decimal("2.50"))
    budget_create(workspace=workspace, scope=Budget.Scope.OVERALL, amount=Decimal("10"))
    alert_manual_create(workspace=workspace, message="note")
    ChannelFactory(workspace=workspace, target="team@example.com")
    services.invite_create(workspace=workspace, role=Role.VIEWER, created_by=owner)
    kept = AccountFactory(workspace=owner.personal_workspace, provider=provider("groq"))
    manual_entry_create(account=kept, day=date(2026, 8, 3), cost=Decimal("1.00"))
    events = set(AuditEvent.objects.filter(workspace=workspace).values_list("pk", flat=True))
    client = _client(owner)
    _in_workspace(client, workspace)

    assert client.get(reverse("workspace-delete")).status_code == 200
    response = client.post(reverse("workspace-delete"))

    assert response.status_code == 302
    assert not Workspace.objects.filter(pk=workspace.pk).exists()
    assert list(ProviderAccount.objects.all()) == [kept]
    assert set(UsageRecord.objects.values_list("account_id", flat=True)) == {kept.pk}
    assert set(DailyUsage.objects.values_list("account_id", flat=True)) == {kept.pk}
    for model in (Budget, Alert, NotificationChannel, EvaluationDue, Invite):
        assert not model.objects.exclude(workspace=owner.personal_workspace).exists(), model
    assert (
        not Membership.objects.filter(user=member)
        .exclude(workspace=member.personal_workspace)
        .exists()
    )
    # Every event stays, by name; one more says the workspace went.
    remaining = AuditEvent.objects.filter(workspace_label="Doomed")
    assert events < set(remaining.values_list("pk", flat=True))
    assert not remaining.exclude(workspace=None).exists()
    assert remaining.filter(object_type="workspace", action=AuditEvent.Action.DELETED).count() == 1
    assert SESSION_KEY not in client.session
    assert client.get(reverse("dashboard")).status_code == 200


def test_it_refuses_deleting_a_personal_workspace():
    user = UserFactory()
    AccountFactory(workspace=user.personal_workspace)

    with pytest.raises(ValidationError, match="personal workspace cannot be deleted"):
        services.workspace_delete(workspace=user.personal_workspace)
    response = _client(user).post(reverse("workspace-delete"))

    assert response.status_code == 302
    assert Workspace.objects.filter(pk=user.personal_workspace.pk).exists()
    assert ProviderAccount.objects.count() == 1


def test_it_lets_only_owners_delete_a_workspace():
    owner, admin = UserFactory(), UserFactory()
    workspace = _shared(owner)
    _join(workspace, admin, Role.ADMIN)
    client = _client(admin)
    _in_workspace(client, workspace)

    assert client.post(reverse("workspace-delete")).status_code == 403
    assert Workspace.objects.filter(pk=workspace.pk).exists()


# --- The audit log ----------------------------------------------------------------------------


def test_it_audits_workspace_invite_and_member_changes_and_never_the_token():
    owner, joiner = UserFactory(), UserFactory()
    workspace = _shared(owner, name="Logged")
    services.workspace_update(workspace=workspace, name="Logged", time_zone="Europe/Oslo")
    raw_used, _ = services.invite_create(workspace=workspace, role=Role.MEMBER, created_by=owner)
    raw_revoked, revoked = services.invite_create(
        workspace=workspace, role=Role.VIEWER, created_by=owner, email="x@example.com"
    )
    services.invite_revoke(invite=revoked)
    membership = services.invite_accept(raw=raw_used, user=joiner)
    services.membership_role_set(membership=membership, role=Role.ADMIN)
    services.membership_remove(membership=membership)
    services.workspace_delete(workspace=workspace)

    logged = list(
        AuditEvent.objects.filter(workspace_label="Logged")
        .order_by("pk")
        .values_list("object_type", "action")
    )
    assert logged == [
        ("workspace", "created"),
        ("workspace", "updated"),
        ("invite", "created"),
        ("invite", "created"),
        ("invite", "revoked"),
        ("membership", "created"),
        ("membership", "updated"),
        ("membership", "deleted"),
        ("workspace", "deleted"),
    ]
    joined = AuditEvent.objects.get(object_type="membership", action="created")
    assert joined.actor == joiner
    assert joined.changes["role"] == [None, "member"]
    changed = AuditEvent.objects.get(object_type="membership", action="updated")
    assert changed.changes == {"role": ["member", "admin"]}
    text = _events_text()
    for raw in (raw_used, raw_revoked):
        assert raw not in text
        assert hashlib.sha256(raw.encode()).hexdigest() not in text


def test_it_leaves_api_tokens_alone_when_a_workspace_goes():
    owner = UserFactory()
    workspace = _shared(owner)
    services.api_token_create(user=owner)

    services.workspace_delete(workspace=workspace)

    assert ApiToken.objects.filter(user=owner).count() == 1


def test_it_removes_a_member_once_when_asked_twice():
    owner, member = UserFactory(), UserFactory()
    workspace = _shared(owner)
    membership = _join(workspace, member, Role.MEMBER)
    pk = membership.pk
    services.membership_remove(membership=membership)
    before = _rows(Membership), _rows(AuditEvent)

    with pytest.raises(ValueError):  # a removed row (its pk is gone) is not removed again
        services.membership_remove(membership=membership)
    owner_client = _client(owner)
    _in_workspace(owner_client, workspace)
    again = owner_client.post(reverse("member-remove", args=[pk]))

    assert again.status_code == 404
    assert (_rows(Membership), _rows(AuditEvent)) == before


@pytest.mark.skipif(
    __import__("django.db").db.connection.vendor != "postgresql",
    reason="SQLite runs one writing transaction at a time: no race to lose",
)
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_owners_demoting_each_other_at_once_leave_one_owner():
    import threading

    from django.db import connection, transaction

    first, second = UserFactory(), UserFactory()
    workspace = services.workspace_create(user=first, name="Pair")
    Membership.objects.create(workspace=workspace, user=second, role=Role.OWNER)
    demote_second = Membership.objects.get(workspace=workspace, user=second)
    demote_first = Membership.objects.get(workspace=workspace, user=first)
    outcome: dict[str, object] = {}
    second_started = threading.Event()

    def demote_first_meanwhile():
        try:
            second_started.set()
            services.membership_role_set(membership=demote_first, role=Role.ADMIN)
            outcome["other"] = "demoted"
        except ValidationError as exc:
            outcome["other"] = exc.messages
        finally:
            connection.close()

    with transaction.atomic():
        services.membership_role_set(membership=demote_second, role=Role.ADMIN)
        other = threading.Thread(target=demote_first_meanwhile)
        other.start()
        second_started.wait()
        other.join(timeout=1)  # it waits on the workspace row this transaction holds
        assert other.is_alive()
    other.join(timeout=10)
    assert outcome["other"] == ["The workspace would be left without an owner."]
    owners = Membership.objects.filter(workspace=workspace, role=Role.OWNER)
    assert list(owners.values_list("user", flat=True)) == [first.pk]


def test_the_schema_documents_x_workspace_on_every_user_operation_and_not_on_ingestion(client):
    import yaml

    schema = yaml.safe_load(client.get("/api/schema/").content)
    with_header, without = [], []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            names = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "header"}
            (with_header if "X-Workspace" in names else without).append(f"{method} {path}")
    assert "get /api/usage" in with_header and "post /api/workspace/invites" in with_header
    assert "get /api/usage/breakdown" in with_header
    # Ingestion acts with an ingest key (its account's workspace); login and sign-up with none.
    assert {"post /api/usage/events", "post /api/auth/login"} <= set(without)


def test_deleting_a_teams_only_owner_hands_the_workspace_to_its_senior_member():
    owner, admin, viewer, loner = UserFactory(), UserFactory(), UserFactory(), UserFactory()
    team = services.workspace_create(user=owner, name="Team")
    Membership.objects.create(workspace=team, user=viewer, role=Role.VIEWER)
    Membership.objects.create(workspace=team, user=admin, role=Role.ADMIN)
    alone = services.workspace_create(user=loner, name="Solo")
    services.workspace_create(user=owner, name="Only mine")

    owner.delete()  # e.g. in the admin
    loner.delete()

    # The admin outranks the viewer who joined before them.
    assert Membership.objects.get(workspace=team, user=admin).role == Role.OWNER
    assert Membership.objects.get(workspace=team, user=viewer).role == Role.VIEWER
    event = AuditEvent.objects.get(object_type="membership", action=AuditEvent.Action.UPDATED)
    assert event.changes["role"] == ["admin", "owner"] and event.workspace == team
    # A workspace nobody else is in has no one to hand it to: left as it is.
    assert Workspace.objects.filter(pk=alone.pk).exists()
    assert not Membership.objects.filter(workspace=alone).exists()
