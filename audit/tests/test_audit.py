"""The audit log: every write path leaves exactly one event (actor, owner, changes), never a
secret; failed writes leave none; nobody reads another user's events; rows are append-only."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine
from django.contrib import admin
from django.contrib.messages.storage.fallback import FallbackStorage
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.test import RequestFactory

from accounts.tests.factories import UserFactory
from alerts.models import Budget, NotificationChannel
from alerts.services import budget_create
from audit.models import AuditError, AuditEvent
from audit.services import SYSTEM_ACTOR, audit_record
from providers.models import IngestKey, ProviderAccount
from providers.services import ingest_key_create
from providers.tests.factories import AccountFactory, provider
from usage.models import Price, UsageRecord
from usage.services.records import manual_entry_create

pytestmark = pytest.mark.django_db

RAW_KEY = "sk-audit-secret-Zq81-never-logged"
NEW_KEY = "sk-audit-second-Wx55-never-logged"
A = AuditEvent.Action


def _everything_logged() -> str:
    rows = AuditEvent.objects.values()
    return json.dumps(list(rows), default=str)


def _only_event(**filters) -> AuditEvent:
    events = list(AuditEvent.objects.filter(**filters))
    assert len(events) == 1, [(e.action, e.object_type, e.changes) for e in events]
    return events[0]


@pytest.fixture
def user():
    return UserFactory()


@pytest.fixture
def web(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def api(api_client, user):
    api_client.force_authenticate(user)
    return api_client


# --- provider accounts and keys ---------------------------------------------------------------


def test_it_logs_an_account_made_in_the_form_and_never_its_key(web, user):
    data = {"provider": provider("openai").pk, "name": "Prod", "is_active": "on"}
    response = web.post("/accounts/add/", {**data, "api_key": RAW_KEY})
    assert response.status_code == 302, response.context and response.context["form"].errors
    event = _only_event()
    assert (event.action, event.actor, event.workspace, event.actor_label) == (
        A.CREATED,
        user,
        user.personal_workspace,
        user.username,
    )
    assert event.object_type == "provider account" and event.changes["name"] == [None, "Prod"]
    assert event.changes["api_key"] == [None, "set"]
    account = ProviderAccount.objects.get()
    assert event.object_id == str(account.pk)

    # A new key through the form: "changed", never the key.
    web.post(f"/accounts/{account.pk}/", {**data, "api_key": NEW_KEY})
    changed = AuditEvent.objects.exclude(pk=event.pk).get()
    assert changed.action == A.KEY_CHANGED and changed.changes == {"api_key": ["set", "changed"]}

    bodies = [web.get("/audit/").content.decode(), web.get("/api/audit").content.decode()]
    for text in [_everything_logged(), *bodies]:
        assert RAW_KEY not in text and NEW_KEY not in text
        assert RAW_KEY[-4:] not in text  # not even the hint
        assert account.api_key.ciphertext not in text


def test_it_logs_each_account_change_through_the_api_without_the_key(api, user):
    created = api.post(
        "/api/accounts",
        {"provider": "openai", "name": "Prod", "api_key": RAW_KEY},
        format="json",
    )
    assert created.status_code == 201, created.content
    pk = created.json()["id"]
    assert _only_event().action == A.CREATED

    api.patch(f"/api/accounts/{pk}", {"api_key": NEW_KEY}, format="json")
    assert _only_event(action=A.KEY_CHANGED).changes == {"api_key": ["set", "changed"]}
    api.patch(f"/api/accounts/{pk}", {"api_key": None}, format="json")
    assert _only_event(action=A.KEY_CHANGED, changes__api_key=["set", "not set"])
    api.patch(f"/api/accounts/{pk}", {"name": "Prod 2"}, format="json")
    assert _only_event(action=A.UPDATED).changes == {"name": ["Prod", "Prod 2"]}
    api.patch(f"/api/accounts/{pk}", {"is_active": False}, format="json")
    assert _only_event(action=A.DEACTIVATED).changes == {"is_active": [True, False]}
    assert api.delete(f"/api/accounts/{pk}").status_code == 204
    deleted = _only_event(action=A.DELETED)
    assert (
        deleted.workspace == user.personal_workspace
        and deleted.actor == user
        and deleted.object_id == str(pk)
    )

    assert AuditEvent.objects.count() == 6
    listed = api.get("/api/audit").content.decode()
    for text in [_everything_logged(), listed]:
        assert RAW_KEY not in text and NEW_KEY not in text


def test_it_logs_nothing_for_a_refused_write(api, web, user):
    bad = api.post(
        "/api/accounts",
        {"provider": "openai", "name": "Prod", "api_key": RAW_KEY, "monthly_budget": "-5"},
        format="json",
    )
    assert bad.status_code == 400
    refused = api.post("/api/budgets", {"scope": "account", "amount": "10"}, format="json")
    assert refused.status_code == 400
    form = web.post("/usage/new/", {"date": "2026-11-10", "description": "x", "cost": "-5"})
    assert form.status_code in (200, 400)
    assert not AuditEvent.objects.exists()


def test_it_leaves_no_event_when_the_write_is_rolled_back(user):
    with pytest.raises(RuntimeError), transaction.atomic():
        budget_create(
            workspace=user.personal_workspace, scope=Budget.Scope.OVERALL, amount=Decimal(50)
        )
        assert AuditEvent.objects.count() == 1
        raise RuntimeError("the caller fails after the write")
    assert not Budget.objects.exists() and not AuditEvent.objects.exists()


def test_it_logs_ingest_keys_by_name_and_prefix_only(web, user):
    account = AccountFactory(workspace=user.personal_workspace)
    response = web.post(f"/accounts/{account.pk}/ingest-keys/", {"name": "billing-svc"})
    assert response.status_code in (200, 302)
    key = IngestKey.objects.get()
    event = _only_event()
    assert (event.action, event.actor, event.workspace) == (
        A.CREATED,
        user,
        user.personal_workspace,
    )
    assert event.changes["name"] == [None, "billing-svc"]
    assert event.changes["hint"] == [None, key.hint]
    assert "digest" not in event.changes and key.digest not in _everything_logged()

    web.post(f"/accounts/{account.pk}/ingest-keys/{key.pk}/revoke/")
    revoked = _only_event(action=A.REVOKED)
    assert revoked.changes["revoked_at"][0] is None and revoked.changes["revoked_at"][1]
    web.post(f"/accounts/{account.pk}/ingest-keys/{key.pk}/revoke/")  # again: nothing changes
    assert AuditEvent.objects.count() == 2


def test_it_never_logs_a_plaintext_ingest_key(user):
    raw, _ = ingest_key_create(
        account=AccountFactory(workspace=user.personal_workspace), name="svc"
    )
    event = _only_event()
    assert (
        event.actor is None
        and event.actor_label == SYSTEM_ACTOR
        and event.workspace == user.personal_workspace
    )
    assert raw not in _everything_logged()


# --- budgets and channels ---------------------------------------------------------------------


def test_it_logs_budget_create_update_delete(api, user):
    created = api.post("/api/budgets", {"scope": "overall", "amount": "100"}, format="json")
    assert created.status_code == 201, created.content
    pk = created.json()["id"]
    event = _only_event()
    assert (event.action, event.workspace, event.changes["amount"][0]) == (
        A.CREATED,
        user.personal_workspace,
        None,
    )
    assert Decimal(event.changes["amount"][1]) == Decimal(100)
    api.patch(f"/api/budgets/{pk}", {"amount": "150"}, format="json")
    # amount is stored with its field's places; the diff compares stored values
    updated = _only_event(action=A.UPDATED)
    assert list(updated.changes) == ["amount"]
    assert Decimal(updated.changes["amount"][1]) == Decimal(150)
    api.delete(f"/api/budgets/{pk}")
    assert _only_event(action=A.DELETED).object_id == str(pk)
    assert AuditEvent.objects.count() == 3


def test_it_logs_channels_without_a_webhook_token(web, api, user, settings):
    web.post("/alerts/channels/", {"kind": "email", "target": "ops@example.com"})
    channel = NotificationChannel.objects.get()
    event = _only_event()
    assert (event.action, event.workspace, event.object_id) == (
        A.CREATED,
        user.personal_workspace,
        str(channel.pk),
    )
    assert event.changes["target"] == [None, channel.target_display]
    api.delete(f"/api/notification-channels/{channel.pk}")
    assert _only_event(action=A.DELETED).workspace == user.personal_workspace


# --- manual entries and reconciliation --------------------------------------------------------


@time_machine.travel("2026-11-15 12:00:00Z", tick=False)
def test_it_logs_manual_entries_from_the_api_and_the_pages(api, web, user):
    account = AccountFactory(workspace=user.personal_workspace)
    created = api.post(
        "/api/usage/records",
        {"account": account.pk, "date": "2026-11-10", "description": "seats", "cost": "228"},
        format="json",
    )
    assert created.status_code == 201, created.content
    record = UsageRecord.objects.get()
    event = _only_event()
    assert (event.action, event.actor, event.workspace) == (
        A.CREATED,
        user,
        user.personal_workspace,
    )
    assert Decimal(event.changes["cost"][1]) == Decimal(228)
    # A creation lists what the entry holds, not its zero counters and empty fields.
    assert event.changes["description"] == [None, "seats"]
    assert "input_tokens" not in event.changes and "raw" not in event.changes
    assert "request_id" not in event.changes

    form = {"account": account.pk, "date": "2026-11-10", "description": "seats", "cost": "190"}
    assert web.post(f"/usage/{record.pk}/edit/", form).status_code == 302
    edited = _only_event(action=A.UPDATED)
    assert [Decimal(v) for v in edited.changes["cost"]] == [Decimal(228), Decimal(190)]
    assert web.post(f"/usage/{record.pk}/edit/", {**form, "cost": "-1"}).status_code == 200
    assert web.post(f"/usage/{record.pk}/delete/").status_code == 302
    assert _only_event(action=A.DELETED).object_id == str(record.pk)
    assert AuditEvent.objects.count() == 3


@time_machine.travel("2026-12-02 12:00:00Z", tick=False)
def test_it_logs_invoices_and_one_event_per_true_up(web, user):
    account = AccountFactory(workspace=user.personal_workspace, name="Prod")
    manual_entry_create(account=account, day=date(2026, 11, 10), cost=Decimal(100))
    start = AuditEvent.objects.count()
    web.post(
        "/reconciliation/invoice/", {"account": account.pk, "month": "2026-11", "invoice": "120"}
    )
    invoice = AuditEvent.objects.order_by("-id").first()
    assert (invoice.action, invoice.object_type, invoice.workspace) == (
        A.CREATED,
        "invoice",
        user.personal_workspace,
    )
    web.post("/reconciliation/true-up/", {"account": account.pk, "month": "2026-11"})
    web.post("/reconciliation/true-up/", {"account": account.pk, "month": "2026-11"})
    booked = list(AuditEvent.objects.filter(action=A.BOOKED).order_by("id"))
    assert AuditEvent.objects.count() == start + 3  # the invoice and two bookings, nothing else
    # 120 - 100 = 20; the second booking replaces the first
    assert booked[0].changes["true_up"][0] is None
    assert Decimal(booked[0].changes["true_up"][1]) == Decimal(20)
    assert [Decimal(v) for v in booked[1].changes["true_up"]] == [Decimal(20), Decimal(20)]
    assert all(e.actor == user and e.workspace == user.personal_workspace for e in booked)


# --- prices -----------------------------------------------------------------------------------


def _admin_request(user):
    request = RequestFactory().post("/admin/")
    request.user = user
    request.session = {}
    request._messages = FallbackStorage(request)
    return request


def test_it_logs_a_price_edited_in_the_admin():
    staff = UserFactory(is_staff=True, is_superuser=True)
    price = Price.objects.create(
        provider=provider("openai"),
        model="audit-model",
        valid_from=datetime(2026, 1, 1, tzinfo=UTC),
        origin=Price.Origin.IMPORTED,
        input_per_token=Decimal("0.000001"),
    )
    model_admin = admin.site._registry[Price]
    price.input_per_token = Decimal("0.000002")
    model_admin.save_model(_admin_request(staff), price, form=None, change=True)
    event = _only_event()
    assert (event.action, event.actor, event.workspace) == (A.UPDATED, staff, None)
    assert [Decimal(v) for v in event.changes["input_per_token"]] == [
        Decimal("0.000001"),
        Decimal("0.000002"),
    ]
    assert event.changes["origin"][1] == Price.Origin.ADMIN


def test_it_logs_an_admin_deleted_manual_entry():
    staff = UserFactory(is_staff=True, is_superuser=True)
    owner = UserFactory()
    record = manual_entry_create(
        account=AccountFactory(workspace=owner.personal_workspace),
        day=date(2026, 11, 10),
        cost=Decimal(5),
    )
    start = AuditEvent.objects.count()
    admin.site._registry[UsageRecord].delete_model(_admin_request(staff), record)
    event = AuditEvent.objects.order_by("-id").first()
    assert AuditEvent.objects.count() == start + 1
    assert (event.action, event.actor, event.workspace) == (
        A.DELETED,
        staff,
        owner.personal_workspace,
    )


def test_it_summarises_a_price_import_in_one_system_event(tmp_path):
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps(
            {
                "gpt-audit-a": {
                    "litellm_provider": "openai",
                    "input_cost_per_token": 1e-06,
                    "output_cost_per_token": 2e-06,
                },
                "gpt-audit-b": {
                    "litellm_provider": "openai",
                    "input_cost_per_token": 1e-06,
                    "output_cost_per_token": 2e-06,
                },
            }
        )
    )
    call_command("import_prices", str(path))
    event = _only_event()
    assert (event.action, event.actor, event.workspace, event.actor_label) == (
        A.IMPORTED,
        None,
        None,
        SYSTEM_ACTOR,
    )
    assert event.changes["added"] == [None, 2] and event.changes["changed"] == [None, 0]


# --- who may read -----------------------------------------------------------------------------


def test_it_shows_nobody_another_users_events(web, api, user):
    theirs = AccountFactory(name="Their secret project")
    audit_record(action=A.UPDATED, obj=theirs, changes={"name": ["a", "Their secret project"]})
    mine = AccountFactory(workspace=user.personal_workspace, name="Mine")
    audit_record(action=A.UPDATED, obj=mine, changes={})

    page = web.get("/audit/").content.decode()
    assert "Mine" in page and "Their secret project" not in page
    body = api.get("/api/audit").json()
    assert [e["object_label"] for e in body["results"]] == [str(mine)]
    assert body["count"] == 1
    filtered = api.get("/api/audit", {"object_type": "provider account", "action": "updated"})
    assert filtered.json()["count"] == 1
    assert api.get("/api/audit", {"action": "deleted"}).json()["count"] == 0


def test_it_shows_a_workspace_its_own_events_and_staff_the_shared_ones(client, api_client):
    audit_record(action=A.UPDATED, obj=AccountFactory(name="Somewhere"), changes={})
    audit_record(action=A.IMPORTED, object_type="price", object_label="prices", changes={})
    assert api_client.get("/api/audit").status_code in (401, 403)
    assert client.get("/audit/").status_code == 302  # to the login page
    api_client.force_authenticate(UserFactory())  # owns an empty workspace of their own
    assert api_client.get("/api/audit").json()["count"] == 0
    api_client.force_authenticate(UserFactory(is_staff=True))
    events = api_client.get("/api/audit").json()["results"]
    assert [e["object_type"] for e in events] == ["price"]  # never another workspace's


def test_it_links_the_page_and_documents_the_api(web):
    assert 'href="/audit/"' in web.get("/").content.decode()
    schema = web.get("/api/schema/").content.decode()
    assert "/api/audit" in schema


# --- append-only ------------------------------------------------------------------------------


def test_it_refuses_changes_and_deletes_in_the_app(user):
    event = audit_record(
        action=A.UPDATED, obj=AccountFactory(workspace=user.personal_workspace), changes={}
    )
    with pytest.raises(AuditError):
        event.save()
    with pytest.raises(AuditError):
        event.delete()
    with pytest.raises(AuditError):
        AuditEvent.objects.update(action=A.DELETED)
    with pytest.raises(AuditError):
        AuditEvent.objects.all().delete()
    model_admin = admin.site._registry[AuditEvent]
    request = _admin_request(UserFactory(is_staff=True, is_superuser=True))
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, event)
    assert not model_admin.has_delete_permission(request, event)


def test_it_refuses_an_update_in_the_database(user):
    event = audit_record(
        action=A.UPDATED, obj=AccountFactory(workspace=user.personal_workspace), changes={}
    )
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditevent SET action = 'deleted' WHERE id = %s", [event.pk])
    event.refresh_from_db()
    assert event.action == A.UPDATED


def test_it_refuses_a_delete_in_the_database_on_postgresql(user):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite's test flush empties tables with DELETE: only UPDATE is refused there")
    event = audit_record(
        action=A.UPDATED, obj=AccountFactory(workspace=user.personal_workspace), changes={}
    )
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE id = %s", [event.pk])
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_it_keeps_the_story_when_a_user_and_a_workspace_are_deleted():
    actor, owner = UserFactory(username="alice"), UserFactory(username="bob")
    event = audit_record(
        action=A.UPDATED, obj=AccountFactory(workspace=owner.personal_workspace), actor=actor
    )
    actor.delete()
    owner.delete()  # and with them their personal workspace
    event.refresh_from_db()
    assert (event.actor, event.workspace) == (None, None)
    assert (event.actor_label, event.workspace_label) == ("alice", "bob's workspace")


def test_it_lists_the_log_read_only_in_the_admin(client, user):
    audit_record(
        action=A.UPDATED,
        obj=AccountFactory(workspace=user.personal_workspace, name="Listed"),
        changes={},
    )
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    listed = client.get("/admin/audit/auditevent/")
    assert listed.status_code == 200 and "Listed" in listed.content.decode()
    assert client.get("/admin/audit/auditevent/add/").status_code == 403


def test_it_logs_a_key_set_in_the_admin_without_the_key(client, user):
    staff = UserFactory(is_staff=True, is_superuser=True)
    account = AccountFactory(
        workspace=user.personal_workspace, name="Prod", keys={"api_key": RAW_KEY}
    )
    client.force_login(staff)
    data = {
        "workspace": user.personal_workspace.pk,
        "provider": account.provider_id,
        "name": "Prod",
        "is_active": "on",
        "new_api_key": NEW_KEY,
        "_save": "Save",
    }
    response = client.post(f"/admin/providers/provideraccount/{account.pk}/change/", data)
    assert response.status_code == 302, (
        response.context and response.context["adminform"].form.errors
    )
    event = _only_event()
    assert (event.action, event.actor, event.workspace) == (
        A.KEY_CHANGED,
        staff,
        user.personal_workspace,
    )
    assert event.changes == {"api_key": ["set", "changed"]}
    page = client.get("/admin/audit/auditevent/").content.decode()
    for text in [_everything_logged(), page]:
        assert RAW_KEY not in text and NEW_KEY not in text
