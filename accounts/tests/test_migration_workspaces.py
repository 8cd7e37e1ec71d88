"""The workspace migrations (issue 12 point 1): what each user owned moves into their personal
workspace, with nothing lost, and the audit log's append-only guard survives the move."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.db import DatabaseError, transaction

from costtracker.tests.migrating import (  # noqa: F401
    back_to_latest,
    migrate_to,
    migrate_to_latest,
)

# The nodes before the workspace migrations: accounts 0003 (Workspace) is what every later
# step depends on, so going back to these unapplies providers 0010-0011, alerts 0006-0007 and
# audit 0003-0004 too.
BEFORE = [
    ("accounts", "0002_uipages_api_token_name"),
    ("providers", "0009_attribution"),
    ("alerts", "0005_bounds_checks"),
    ("audit", "0002_append_only_guard"),
    ("usage", "0008_attribution"),  # unchanged; named so the state has its models
]
PERSONAL_MADE = [("accounts", "0004_personal_workspaces"), *BEFORE[1:]]

# Every owned model, by the app whose migration moves it.
OWNED = [
    ("providers", "ProviderAccount"),
    ("alerts", "Budget"),
    ("alerts", "Alert"),
    ("alerts", "NotificationChannel"),
    ("alerts", "EvaluationDue"),
    ("audit", "AuditEvent"),
]
# Models that hang off an account (or an alert) and must come through untouched.
CHILDREN = [
    ("providers", "IngestKey"),
    ("providers", "Invoice"),
    ("usage", "UsageRecord"),
    ("usage", "DailyUsage"),
    ("alerts", "NotificationDelivery"),
]
# Not compared: DailyAttribution, a roll-up that usage 0009 rebuilds from the records (which are
# compared) whenever the migrations pass through it, here on the way back and forward again.
# Columns the migrations change on purpose; everything else must be identical.
CHANGED = {"owner", "owner_id", "workspace", "workspace_id", "owner_label", "workspace_label"}
# Changed by a later migration on the way to the latest state (alerts 0008: a channel's
# slack_format became its format; alerts/tests/test_webhook_formats.py checks that mapping).
CHANGED |= {"slack_format", "format"}
# Added by later migrations, with defaults, on the way to the latest state (alerts 0009,
# 0011, providers 0012): absent before, so not compared.
ADDED_LATER = {
    "alerts.Budget": {
        "ingest_key_id",
        "tag",
        "tag_value",
        "period",
        "enforced",
        "refuse_unpriced",
    },
    "providers.IngestKey": {"requests_per_minute"},
    "alerts.NotificationDelivery": {"next_attempt_at"},
}


def _plain(value):
    ciphertext = getattr(value, "ciphertext", None)  # an encrypted key compares as stored
    return ciphertext if ciphertext is not None else value


def _snapshot(apps) -> dict[str, list[dict]]:
    """Every row of every owned and child model, without the columns that move."""
    snapshot = {}
    for app_label, name in OWNED + CHILDREN:
        model = apps.get_model(app_label, name)
        skipped = CHANGED | ADDED_LATER.get(f"{app_label}.{name}", set())
        fields = [f.attname for f in model._meta.concrete_fields if f.attname not in skipped]
        snapshot[f"{app_label}.{name}"] = [
            {k: _plain(v) for k, v in row.items()}
            for row in model.objects.order_by("pk").values(*fields)
        ]
    return snapshot


def _old_data(apps) -> dict:
    """Two users' worth of everything an owner had before workspaces, made with the old models."""
    User = apps.get_model("accounts", "User")
    Provider = apps.get_model("providers", "Provider")
    Account = apps.get_model("providers", "ProviderAccount")
    IngestKey = apps.get_model("providers", "IngestKey")
    Invoice = apps.get_model("providers", "Invoice")
    UsageRecord = apps.get_model("usage", "UsageRecord")
    DailyUsage = apps.get_model("usage", "DailyUsage")
    Budget = apps.get_model("alerts", "Budget")
    Alert = apps.get_model("alerts", "Alert")
    Channel = apps.get_model("alerts", "NotificationChannel")
    Delivery = apps.get_model("alerts", "NotificationDelivery")
    EvaluationDue = apps.get_model("alerts", "EvaluationDue")
    AuditEvent = apps.get_model("audit", "AuditEvent")

    openai = Provider.objects.get(slug="openai")
    anthropic = Provider.objects.get(slug="anthropic")
    users = {
        "tokyo": User.objects.create(
            username="tokyo", email="t@example.com", time_zone="Asia/Tokyo"
        ),
        "plain": User.objects.create(username="plain", email="p@example.com"),
    }
    for n, (label, user) in enumerate(users.items()):
        prov = openai if n == 0 else anthropic
        # Both name their account "Main": unique per owner before, per workspace after.
        account = Account.objects.create(
            owner=user,
            provider=prov,
            name="Main",
            api_key=f"sk-{label}-secret",
            api_key_last4="cret",
            monthly_budget=Decimal("123.45"),
            config={"organization": label},
        )
        key = IngestKey.objects.create(
            account=account, name="ci", digest=f"{n}" * 64, hint="cti_abcdef", created_by=user
        )
        for i, cost in enumerate([Decimal("0.0000012345"), Decimal("17.25"), None]):
            UsageRecord.objects.create(
                account=account,
                provider=prov,
                natural_key=f"{label}-{i}",
                model="gpt-4o",
                bucket_start=datetime(2026, 11, 3 + i, tzinfo=UTC),
                granularity="event",
                input_tokens=1000 + i,
                output_tokens=10 * i,
                cost=cost,
                source="estimated",
                tags={"project": "web"},
                ingest_key=key,
            )
        DailyUsage.objects.create(
            account=account,
            provider=prov,
            model="gpt-4o",
            day=date(2026, 11, 3),
            source="estimated",
            cost=Decimal("17.2500012345"),  # 0.0000012345 + 17.25
            record_count=3,
            unpriced_count=1,
            input_tokens=3003,
        )
        Invoice.objects.create(account=account, month=date(2026, 10, 1), amount=Decimal("190.01"))
        overall = Budget.objects.create(owner=user, scope="overall", amount=Decimal("500.00"))
        Budget.objects.create(owner=user, scope="provider", provider=prov, amount=Decimal("250.50"))
        Budget.objects.create(owner=user, scope="account", account=account, amount=Decimal("99.99"))
        alert = Alert.objects.create(
            owner=user,
            kind="threshold",
            threshold=80,
            period=date(2026, 11, 1),
            dedupe_key="threshold:overall:2026-11:80",
            message="80% of the budget",
            data={"spent": "400.00"},
            budget=overall,
            account=account,
        )
        channel = Channel.objects.create(owner=user, kind="email", target=user.email)
        Delivery.objects.create(alert=alert, channel=channel, status="sent", attempts=1)
        EvaluationDue.objects.create(owner=user, due_at=datetime(2026, 11, 4, tzinfo=UTC))
        AuditEvent.objects.create(
            actor=user,
            actor_label=user.username,
            owner=user,
            owner_label=user.username,
            action="created",
            object_type="provider account",
            object_id=str(account.pk),
            object_label="Main",
            changes={"name": [None, "Main"]},
        )
    # A shared (system) event: no owner before, no workspace after.
    AuditEvent.objects.create(
        actor_label="system",
        owner_label="",
        action="imported",
        object_type="price",
        object_label="price book",
        changes={"count": [None, 12]},
    )
    return {label: user.pk for label, user in users.items()}


def _assert_update_refused(AuditEvent, *, owner: str = "workspace") -> None:
    """The database refuses rewriting an event; it lets its owner (user, later workspace) be
    set to NULL, the one UPDATE Django makes when that owner is deleted."""
    event = AuditEvent.objects.exclude(**{owner: None}).order_by("pk").first()
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(object_label="rewritten")
    assert AuditEvent.objects.get(pk=event.pk).object_label == "Main"
    with transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(**{owner: None})


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("back_to_latest")
def test_it_moves_everything_each_user_owned_into_their_personal_workspace():
    apps = migrate_to(BEFORE)
    users = _old_data(apps)
    before = _snapshot(apps)
    owner_of = {
        f"{app_label}.{name}": dict(
            apps.get_model(app_label, name).objects.values_list("pk", "owner_id")
        )
        for app_label, name in OWNED
    }
    labels = dict(apps.get_model("audit", "AuditEvent").objects.values_list("pk", "owner_label"))

    apps = migrate_to_latest()

    Workspace = apps.get_model("accounts", "Workspace")
    Membership = apps.get_model("accounts", "Membership")
    personal = {}
    for label, user_pk in users.items():
        workspace = Workspace.objects.get(personal_for_id=user_pk)
        personal[user_pk] = workspace.pk
        assert workspace.name == f"{label}'s workspace"
        assert list(
            Membership.objects.filter(workspace=workspace).values_list("user_id", "role")
        ) == [(user_pk, "owner")]
    assert Workspace.objects.get(pk=personal[users["tokyo"]]).time_zone == "Asia/Tokyo"
    assert Workspace.objects.get(pk=personal[users["plain"]]).time_zone == "UTC"
    assert Workspace.objects.count() == 2 and Membership.objects.count() == 2

    for key, owners in owner_of.items():
        model = apps.get_model(*key.split("."))
        moved = dict(model.objects.values_list("pk", "workspace_id"))
        expected = {pk: personal.get(owner) for pk, owner in owners.items()}
        assert moved == expected, key
    # Counts, money (to its last decimal), keys, JSON and dates: all as they were.
    assert _snapshot(apps) == before
    assert before["providers.ProviderAccount"][0]["monthly_budget"] == Decimal("123.45")
    assert len(before["usage.UsageRecord"]) == 6 and len(before["alerts.Budget"]) == 6
    AuditEvent = apps.get_model("audit", "AuditEvent")
    assert dict(AuditEvent.objects.values_list("pk", "workspace_label")) == labels

    _assert_update_refused(AuditEvent)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("back_to_latest")
def test_it_gives_a_user_made_between_the_steps_a_personal_workspace_and_moves_their_data():
    # accounts 0004 has run (workspaces for the users of then), the apps' moves have not: a
    # user made now (old code still running, or a partial migrate) has none yet.
    apps = migrate_to(BEFORE)
    apps = migrate_to(PERSONAL_MADE)
    User = apps.get_model("accounts", "User")
    late = User.objects.create(username="late", time_zone="Europe/Berlin")
    # A username may be 150 characters, a workspace name 100 (PostgreSQL refused the insert).
    long = User.objects.create(username="y" * 150)
    assert not apps.get_model("accounts", "Workspace").objects.filter(personal_for=late).exists()
    account = apps.get_model("providers", "ProviderAccount").objects.create(
        owner=late,
        provider=apps.get_model("providers", "Provider").objects.get(slug="groq"),
        name="G",
    )
    budget = apps.get_model("alerts", "Budget").objects.create(
        owner=late, scope="overall", amount=Decimal("10.00")
    )

    apps = migrate_to_latest()

    workspace = apps.get_model("accounts", "Workspace").objects.get(personal_for_id=late.pk)
    assert (workspace.name, workspace.time_zone) == ("late's workspace", "Europe/Berlin")
    assert apps.get_model("accounts", "Membership").objects.get(workspace=workspace).role == "owner"
    long_named = apps.get_model("accounts", "Workspace").objects.get(personal_for_id=long.pk)
    assert long_named.name == "y" * 88 + "'s workspace"
    assert (
        apps.get_model("providers", "ProviderAccount").objects.get(pk=account.pk).workspace_id
        == workspace.pk
    )
    assert apps.get_model("alerts", "Budget").objects.get(pk=budget.pk).workspace_id == workspace.pk


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("back_to_latest")
def test_it_goes_back_to_owners_and_forward_again_with_nothing_lost():
    apps = migrate_to(BEFORE)
    _old_data(apps)
    before = _snapshot(apps)
    owner_of = {
        f"{app_label}.{name}": dict(
            apps.get_model(app_label, name).objects.values_list("pk", "owner_id")
        )
        for app_label, name in OWNED
    }
    migrate_to_latest()

    apps = migrate_to(BEFORE)
    assert _snapshot(apps) == before
    for key, owners in owner_of.items():
        model = apps.get_model(*key.split("."))
        assert dict(model.objects.values_list("pk", "owner_id")) == owners, key
    # The old guard is back (SQLite dropped it with the table it remade).
    old_events = apps.get_model("audit", "AuditEvent")
    with pytest.raises(DatabaseError), transaction.atomic():
        old_events.objects.filter(owner__isnull=False).update(object_label="rewritten")

    apps = migrate_to_latest()
    assert _snapshot(apps) == before
    assert apps.get_model("accounts", "Workspace").objects.count() == 2
    _assert_update_refused(apps.get_model("audit", "AuditEvent"))
