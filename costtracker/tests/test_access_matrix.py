"""The role × route access matrix (issue 12): every route of the project, every role.

One shared workspace with an owner, an admin, a member and a viewer, one of each object the
routes act on, and an outsider with a workspace of their own. Each route declares the least
role it needs (accounts.access); this test holds that declaration in a table (ROUTES) and calls
every row as each role and as the outsider, each case in a fresh database:

- a role at or above the row's role gets the row's success status (the write done: the shared
  workspace's rows changed; a read changed nothing);
- a role below it gets a 403 naming none of the workspace's data, and nothing changed;
- the outsider gets a 404 naming none of it, and nothing changed: the API with the shared
  workspace in X-Workspace (and, for an object route, acting in their own workspace with the
  shared object's id); a page acting in their own workspace (they cannot switch to the shared
  one: test_it_keeps_an_outsider_from_switching_to_the_workspace) with the shared object's id.
  A page without an object in its path acts on the outsider's own workspace: whatever it
  answers, it shows and changes nothing of the shared one.

Every URL pattern of the project must be a row of ROUTES or listed in NOT_WORKSPACE_SCOPED
(test_it_classifies_every_route): a new route without a row fails the suite.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django_q.models import OrmQ

from accounts import services as account_services
from accounts.models import Invite, Membership, Role, Workspace
from accounts.tests.factories import UserFactory
from alerts import services as alert_services
from alerts.models import Alert, Budget, NotificationChannel, NotificationDelivery
from audit.models import AuditEvent
from providers import services as provider_services
from providers.models import IngestKey, Invoice, ProviderAccount
from providers.ratelimits.readings import RateLimitReading, Window
from providers.ratelimits.services import Observation, ratelimit_states_upsert
from providers.tests.factories import AccountFactory, provider
from usage.extraction import RequestUsage
from usage.models import SyncRun, UsageRecord
from usage.services.reconciliation import invoice_set
from usage.services.records import manual_entry_create
from usage.services.requests import RequestEvent, request_events_record

pytestmark = pytest.mark.django_db

NOW = "2026-11-15 12:00:00Z"
ROLES = (Role.OWNER, Role.ADMIN, Role.MEMBER, Role.VIEWER)
OUTSIDER = "outsider"
ACTORS = (*ROLES, OUTSIDER)

# What the shared workspace's objects are called: none of it may appear in a 403 or a 404.
WORKSPACE_NAME = "Wombat Team"
ACCOUNT_NAME = "Quokka Labs OpenAI"
MEMBER_KEY_NAME = "ibex-member-key"
ADMIN_KEY_NAME = "lynx-admin-key"
MANUAL_DESCRIPTION = "Narwhal seat licence"
REQUEST_ID = "req-pangolin-41"
INVOICE_AMOUNT = Decimal("8765.43")
BUDGET_AMOUNT = Decimal("4321.98")
ALERT_MESSAGE = "Capybara overspend note"
CHANNEL_TARGET = "capybara-alerts@example.test"
INVITE_EMAIL = "okapi-invitee@example.test"
SYNC_ERROR = "Wallaby upstream timed out"
# Named on a member's own pages (the switcher lists their workspaces), never an outsider's.
USERNAMES = {role: f"wombat-{role}" for role in ROLES}

SECRETS = [
    ACCOUNT_NAME,
    MEMBER_KEY_NAME,
    ADMIN_KEY_NAME,
    MANUAL_DESCRIPTION,
    REQUEST_ID,
    f"{INVOICE_AMOUNT}",
    f"{INVOICE_AMOUNT:,}",
    f"{BUDGET_AMOUNT}",
    f"{BUDGET_AMOUNT:,}",
    ALERT_MESSAGE,
    CHANNEL_TARGET,
    INVITE_EMAIL,
    SYNC_ERROR,
]
OUTSIDER_SECRETS = [*SECRETS, WORKSPACE_NAME, *USERNAMES.values()]


@dataclass
class World:
    workspace: Workspace
    users: dict
    memberships: dict
    account: ProviderAccount
    member_key: IngestKey
    admin_key: IngestKey
    manual: UsageRecord
    request_record: UsageRecord
    invoice: Invoice
    budget: Budget
    alert: Alert
    channel: NotificationChannel
    invite: Invite
    run: SyncRun


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def world(db, settings) -> World:
    # "Sync now" queues for the cluster; it must not run a sync inside the request.
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    users = {role: UserFactory(username=name, password=None) for role, name in USERNAMES.items()}
    users[OUTSIDER] = UserFactory(username="outsider-emu", password=None)
    workspace = account_services.workspace_create(user=users[Role.OWNER], name=WORKSPACE_NAME)
    for role in (Role.ADMIN, Role.MEMBER, Role.VIEWER):
        Membership.objects.create(workspace=workspace, user=users[role], role=role)
    memberships = {m.user_id: m for m in workspace.memberships.all()}
    memberships = {actor: memberships.get(user.pk) for actor, user in users.items()}
    account = AccountFactory(
        workspace=workspace,
        provider=provider("openai"),
        name=ACCOUNT_NAME,
        keys={"admin_key": "sk-admin-quokka-0000000000001"},
    )
    _, member_key = provider_services.ingest_key_create(
        account=account, name=MEMBER_KEY_NAME, created_by=users[Role.MEMBER]
    )
    _, admin_key = provider_services.ingest_key_create(
        account=account, name=ADMIN_KEY_NAME, created_by=users[Role.ADMIN]
    )
    manual = manual_entry_create(
        account=account,
        day=date(2026, 11, 10),
        description=MANUAL_DESCRIPTION,
        cost=Decimal("12.50"),
    )
    event = RequestEvent(
        REQUEST_ID,
        RequestUsage(model="gpt-4o-mini", input_tokens=1000, output_tokens=200),
        datetime(2026, 11, 12, 9, tzinfo=UTC),
    )
    request_events_record(account=account, events=[event])
    ratelimit_states_upsert(  # what GET /api/ratelimits shows of the account
        observations=[
            Observation(
                account.pk,
                "gpt-4o-mini",
                datetime(2026, 11, 15, 11, 59, tzinfo=UTC),
                RateLimitReading(requests=Window(500, 400, None)),
            )
        ]
    )
    run = SyncRun.objects.create(
        account=account,
        window_start=date(2026, 10, 15),
        window_end=date(2026, 11, 15),
        status=SyncRun.Status.FAILED,
        trigger="manual",
        error_class="timeout",
        error_message=SYNC_ERROR,
    )
    _, invite = account_services.invite_create(
        workspace=workspace, role=Role.VIEWER, created_by=users[Role.OWNER], email=INVITE_EMAIL
    )
    return World(
        workspace=workspace,
        users=users,
        memberships=memberships,
        account=account,
        member_key=member_key,
        admin_key=admin_key,
        manual=manual,
        request_record=UsageRecord.objects.get(account=account, request_id=REQUEST_ID),
        invoice=invoice_set(account=account, month_start=date(2026, 10, 1), amount=INVOICE_AMOUNT),
        budget=alert_services.budget_create(
            workspace=workspace, scope=Budget.Scope.OVERALL, amount=BUDGET_AMOUNT
        ),
        alert=alert_services.alert_manual_create(workspace=workspace, message=ALERT_MESSAGE),
        channel=alert_services.channel_create(
            workspace=workspace, kind=NotificationChannel.Kind.EMAIL, target=CHANNEL_TARGET
        ),
        invite=invite,
        run=run,
    )


# --- the table -------------------------------------------------------------------------------

Kwargs = Callable[[World, str], dict]
NO_KWARGS: Kwargs = lambda w, actor: {}  # noqa: E731
ACCOUNT: Kwargs = lambda w, actor: {"pk": w.account.pk}  # noqa: E731
BUDGET: Kwargs = lambda w, actor: {"pk": w.budget.pk}  # noqa: E731
ALERT: Kwargs = lambda w, actor: {"pk": w.alert.pk}  # noqa: E731
CHANNEL: Kwargs = lambda w, actor: {"pk": w.channel.pk}  # noqa: E731
MANUAL: Kwargs = lambda w, actor: {"pk": w.manual.pk}  # noqa: E731
INVOICE: Kwargs = lambda w, actor: {"pk": w.account.pk, "month": "2026-10"}  # noqa: E731
REQUEST_RECORD: Kwargs = lambda w, actor: {"pk": w.request_record.pk}  # noqa: E731
# A filter naming the shared account: another workspace's id must find nothing.
BY_ACCOUNT = lambda w: f"?account={w.account.pk}"  # noqa: E731


def own_membership(w: World, actor: str) -> dict:
    # The outsider has none in the shared workspace: they name the owner's.
    return {"pk": (w.memberships[actor] or w.memberships[Role.OWNER]).pk}


def other_membership(w: World, actor: str) -> dict:
    return {"pk": w.memberships[Role.MEMBER if actor == Role.ADMIN else Role.ADMIN].pk}


def viewer_membership(w: World, actor: str) -> dict:
    return {"pk": w.memberships[Role.VIEWER].pk}


def member_key(w: World, actor: str) -> dict:
    return {"pk": w.account.pk, "key_id": w.member_key.pk}


def admin_key(w: World, actor: str) -> dict:
    return {"pk": w.account.pk, "key_id": w.admin_key.pk}


@dataclass(frozen=True)
class Route:
    """One route and method: the least role, its path arguments and a valid body.

    ``ok``: the status a role at or above ``role`` gets (default: a page's GET 200, its POST a
    302 after the write; the API's GET and PUT/PATCH 200, POST 201, DELETE 204).
    ``writes``: whether success changes the shared workspace (default: all but GET); None when
    it depends on who asks (see ``note``).
    ``shows``: what a role at or above ``role`` reads in the answer (so a 403 or 404 that
    leaves it out has really withheld it).
    ``query``: a query string, or a function of the world making one.
    """

    name: str
    method: str
    role: Role
    kwargs: Kwargs = NO_KWARGS
    body: Callable[[World], dict] | None = None
    query: str | Callable[[World], str] = ""
    ok: int | None = None
    writes: bool | None = None
    variant: str = ""
    note: str = ""
    shows: tuple[str, ...] = ()

    @property
    def api(self) -> bool:
        return self.name.startswith("api-")

    @property
    def has_object(self) -> bool:
        return self.kwargs is not NO_KWARGS

    @property
    def success(self) -> int:
        if self.ok is not None:
            return self.ok
        if not self.api:
            return 200 if self.method == "GET" else 302
        return {"GET": 200, "PUT": 200, "PATCH": 200, "POST": 201, "DELETE": 204}[self.method]

    @property
    def id(self) -> str:
        return f"{self.method} {self.name}" + (f"[{self.variant}]" if self.variant else "")


_UNSAID = object()


def R(name, method, role, kwargs=NO_KWARGS, body=None, *, writes=_UNSAID, **options) -> Route:  # noqa: N802
    """A row; ``writes`` defaults to whether the method is not GET."""
    if writes is _UNSAID:
        writes = method != "GET"
    return Route(name, method, role, kwargs, body, writes=writes, **options)


VIEWER, MEMBER, ADMIN, OWNER = Role.VIEWER, Role.MEMBER, Role.ADMIN, Role.OWNER
ROUTES = [
    # --- workspace pages (accounts/urls.py)
    R("workspace", "GET", VIEWER),
    R("workspace", "POST", ADMIN, body=lambda w: {"name": "Renamed", "time_zone": "Europe/Paris"}),
    R("workspace-delete", "GET", OWNER),
    R("workspace-delete", "POST", OWNER),
    R("invite-create", "POST", OWNER, body=lambda w: {"role": "member", "email": ""}),
    R("invite-revoke", "POST", OWNER, lambda w, a: {"pk": w.invite.pk}),
    R("member-role", "POST", OWNER, viewer_membership, lambda w: {"role": "member"}),
    R(
        "member-remove",
        "POST",
        VIEWER,
        own_membership,
        writes=None,
        variant="self",
        note="Every member may leave; the owner, the last one, is refused (a message, no change).",
    ),
    R("member-remove", "POST", OWNER, other_membership, variant="other"),
    # --- provider accounts (providers/urls.py)
    R("account-list", "GET", VIEWER, shows=(ACCOUNT_NAME,)),
    R("account-add", "GET", ADMIN),
    R(
        "account-add",
        "POST",
        ADMIN,
        body=lambda w: {"provider": provider("groq").pk, "name": "New", "is_active": "on"},
    ),
    R("account-edit", "GET", ADMIN, ACCOUNT, shows=(ACCOUNT_NAME,)),
    R(
        "account-edit",
        "POST",
        ADMIN,
        ACCOUNT,
        lambda w: {"provider": w.account.provider_id, "name": "Renamed", "is_active": "on"},
    ),
    R("account-detail", "GET", VIEWER, ACCOUNT, shows=(ACCOUNT_NAME, MEMBER_KEY_NAME)),
    R("account-delete", "GET", ADMIN, ACCOUNT, shows=(ACCOUNT_NAME,)),
    R("account-delete", "POST", ADMIN, ACCOUNT),
    R("account-test", "POST", ADMIN, ACCOUNT, ok=200, writes=False),
    # --- ingest keys (providers/ingest_urls.py)
    R("ingest-key-list", "GET", VIEWER, ACCOUNT, shows=(MEMBER_KEY_NAME, ADMIN_KEY_NAME)),
    R("ingest-key-list", "POST", MEMBER, ACCOUNT, lambda w: {"name": "new key"}, ok=200),
    R("ingest-key-revoke", "POST", MEMBER, member_key, variant="member's key"),
    R("ingest-key-revoke", "POST", ADMIN, admin_key, variant="admin's key"),
    # Who may revoke a key may change its request limit.
    R(
        "ingest-key-limit",
        "POST",
        MEMBER,
        member_key,
        lambda w: {"requests_per_minute": "60"},
        variant="member's key",
    ),
    R(
        "ingest-key-limit",
        "POST",
        ADMIN,
        admin_key,
        lambda w: {"requests_per_minute": "60"},
        variant="admin's key",
    ),
    # --- usage (usage/urls.py)
    R("dashboard", "GET", VIEWER, shows=(ACCOUNT_NAME,)),
    R("manual-entry", "GET", MEMBER),
    R(
        "manual-entry",
        "POST",
        MEMBER,
        body=lambda w: {
            "account": w.account.pk,
            "date": "2026-11-14",
            "description": "new",
            "cost": "3.50",
        },
    ),
    R("manual-entry-edit", "GET", MEMBER, MANUAL, shows=(MANUAL_DESCRIPTION,)),
    R(
        "manual-entry-edit",
        "POST",
        MEMBER,
        MANUAL,
        lambda w: {
            "account": w.account.pk,
            "date": "2026-11-10",
            "description": "edited",
            "cost": "13.00",
        },
    ),
    R("manual-entry-delete", "GET", MEMBER, MANUAL, shows=(MANUAL_DESCRIPTION,)),
    R("manual-entry-delete", "POST", MEMBER, MANUAL),
    R("history", "GET", VIEWER, query=BY_ACCOUNT, shows=(MANUAL_DESCRIPTION,)),
    R("usage-record", "GET", VIEWER, REQUEST_RECORD, shows=(REQUEST_ID,)),
    # --- syncs (usage/sync_urls.py)
    R("account-sync", "POST", ADMIN, ACCOUNT),
    R("account-sync-status", "GET", VIEWER, ACCOUNT),
    R("account-sync-history", "GET", VIEWER, ACCOUNT, shows=(ACCOUNT_NAME, SYNC_ERROR)),
    # --- export and reconciliation (usage/insight_urls.py)
    R(
        "export",
        "GET",
        VIEWER,
        query=lambda w: f"?download=1&format=csv&start=2026-11-01&account={w.account.pk}",
        shows=(MANUAL_DESCRIPTION, REQUEST_ID),
    ),
    R(
        "export",
        "GET",
        VIEWER,
        query=lambda w: f"?download=1&format=focus&start=2026-11-01&account={w.account.pk}",
        variant="focus",
        # The request is unpriced: FOCUS data leaves it out (usage/focus.py).
        shows=(MANUAL_DESCRIPTION,),
    ),
    R("reconciliation", "GET", VIEWER, query="?month=2026-10", shows=(f"{INVOICE_AMOUNT:,}",)),
    R(
        "reconciliation-invoice",
        "POST",
        ADMIN,
        body=lambda w: {"account": w.account.pk, "month": "2026-10", "invoice": "100.00"},
    ),
    R(
        "reconciliation-true-up",
        "POST",
        ADMIN,
        body=lambda w: {"account": w.account.pk, "month": "2026-10"},
    ),
    # --- budgets and alerts (alerts/urls.py)
    R("alert-list", "GET", VIEWER, shows=(ALERT_MESSAGE,)),
    R("alerts-acknowledge", "POST", MEMBER, body=lambda w: {"selected": [w.alert.pk]}),
    R("alert-detail", "GET", VIEWER, ALERT, shows=(ALERT_MESSAGE,)),
    R("alert-acknowledge", "POST", MEMBER, ALERT),
    R(
        "alert-unacknowledge",
        "POST",
        MEMBER,
        ALERT,
        writes=False,
        note="The alert is open already.",
    ),
    R("alert-delete", "POST", ADMIN, ALERT),
    R("channel-list", "GET", VIEWER, shows=(CHANNEL_TARGET,)),
    R(
        "channel-list",
        "POST",
        ADMIN,
        body=lambda w: {"kind": "email", "target": "new@example.test"},
    ),
    R("channel-test", "POST", ADMIN, CHANNEL),
    R("channel-delete", "POST", ADMIN, CHANNEL),
    R("budget-list", "GET", VIEWER, shows=(f"{BUDGET_AMOUNT:,}",)),
    R("budget-add", "GET", ADMIN),
    R(
        "budget-add",
        "POST",
        ADMIN,
        # The workspace has its overall budget already: a provider's is new.
        body=lambda w: {
            "scope": "provider",
            "provider": provider("anthropic").pk,
            "amount": "50",
            "thresholds": "80, 100",
        },
    ),
    R("budget-edit", "GET", ADMIN, BUDGET, shows=(f"{BUDGET_AMOUNT}",)),
    R(
        "budget-edit",
        "POST",
        ADMIN,
        BUDGET,
        lambda w: {"scope": "overall", "amount": "60", "thresholds": "80, 100"},
    ),
    R("budget-delete", "GET", ADMIN, BUDGET, shows=(f"{BUDGET_AMOUNT}",)),
    R("budget-delete", "POST", ADMIN, BUDGET),
    # --- audit log (audit/urls.py)
    R("audit-log", "GET", ADMIN, shows=(ACCOUNT_NAME, INVITE_EMAIL)),
    # --- API: workspace (accounts/api_urls.py)
    R("api-members", "GET", VIEWER, shows=(USERNAMES[Role.VIEWER],)),
    R("api-invites", "POST", OWNER, body=lambda w: {"role": "member"}),
    # --- API: provider accounts (providers/api_urls.py)
    R("api-accounts", "GET", VIEWER, shows=(ACCOUNT_NAME,)),
    R("api-accounts", "POST", ADMIN, body=lambda w: {"provider": "groq", "name": "New"}),
    R("api-account", "GET", VIEWER, ACCOUNT, shows=(ACCOUNT_NAME,)),
    R("api-account", "PUT", ADMIN, ACCOUNT, lambda w: {"provider": "openai", "name": "Renamed"}),
    R("api-account", "PATCH", ADMIN, ACCOUNT, lambda w: {"name": "Renamed"}),
    R("api-account", "DELETE", ADMIN, ACCOUNT),
    R("api-account-test", "POST", ADMIN, ACCOUNT, ok=200, writes=False),
    R("api-ratelimits", "GET", VIEWER, query=BY_ACCOUNT, shows=(ACCOUNT_NAME,)),
    # --- API: usage (usage/api_urls.py)
    R("api-usage", "GET", VIEWER, shows=(ACCOUNT_NAME,)),
    R("api-usage-history", "GET", VIEWER, query=BY_ACCOUNT, shows=(MANUAL_DESCRIPTION, REQUEST_ID)),
    R("api-usage-by-service", "GET", VIEWER),
    R("api-usage-daily", "GET", VIEWER),
    R(
        "api-usage-breakdown",
        "GET",
        VIEWER,
        query="?group_by=account&start=2026-11-01&end=2026-11-15",
        shows=(ACCOUNT_NAME,),
    ),
    R(
        "api-usage-records",
        "POST",
        MEMBER,
        body=lambda w: {
            "account": w.account.pk,
            "date": "2026-11-14",
            "description": "new",
            "cost": "3.50",
        },
    ),
    R("api-usage-record-explanation", "GET", VIEWER, REQUEST_RECORD, shows=(REQUEST_ID,)),
    R("api-sync-runs", "GET", VIEWER, ACCOUNT, shows=(SYNC_ERROR,)),
    # --- API: ingest keys (usage/ingest_api_urls.py)
    R("api-ingest-keys", "GET", VIEWER, ACCOUNT, shows=(MEMBER_KEY_NAME, ADMIN_KEY_NAME)),
    R("api-ingest-keys", "POST", MEMBER, ACCOUNT, lambda w: {"name": "new key"}),
    R("api-ingest-key-revoke", "POST", MEMBER, member_key, ok=200, variant="member's key"),
    R("api-ingest-key-revoke", "POST", ADMIN, admin_key, ok=200, variant="admin's key"),
    R(
        "api-ingest-key",
        "PATCH",
        MEMBER,
        member_key,
        lambda w: {"requests_per_minute": 60},
        variant="member's key",
    ),
    R(
        "api-ingest-key",
        "PATCH",
        ADMIN,
        admin_key,
        lambda w: {"requests_per_minute": 60},
        variant="admin's key",
    ),
    # --- API: forecast, reconciliation, invoices, export (usage/insight_api_urls.py)
    R("api-usage-forecast", "GET", VIEWER),
    R("api-reconciliation", "GET", VIEWER, query="?month=2026-10", shows=(f"{INVOICE_AMOUNT}",)),
    R("api-account-invoices", "GET", VIEWER, ACCOUNT, shows=(f"{INVOICE_AMOUNT}",)),
    R("api-account-invoice", "GET", VIEWER, INVOICE, shows=(f"{INVOICE_AMOUNT}",)),
    R("api-account-invoice", "PUT", ADMIN, INVOICE, lambda w: {"amount": "100.00"}),
    R("api-account-invoice", "DELETE", ADMIN, INVOICE),
    R(
        "api-export",
        "GET",
        VIEWER,
        query=lambda w: f"?format=csv&start=2026-11-01&account={w.account.pk}",
        shows=(MANUAL_DESCRIPTION, REQUEST_ID),
    ),
    R(
        "api-export",
        "GET",
        VIEWER,
        query=lambda w: f"?format=focus&start=2026-11-01&account={w.account.pk}",
        variant="focus",
        # The request is unpriced: FOCUS data leaves it out (usage/focus.py).
        shows=(MANUAL_DESCRIPTION,),
    ),
    # --- API: budgets, alerts, channels (alerts/api_urls.py)
    R("api-alerts", "GET", VIEWER, shows=(ALERT_MESSAGE,)),
    R("api-alerts", "POST", MEMBER, body=lambda w: {"message": "new note"}),
    R("api-alert", "GET", VIEWER, ALERT, shows=(ALERT_MESSAGE,)),
    R("api-alert", "PUT", MEMBER, ALERT, lambda w: {"acknowledged": True}),
    R("api-alert", "PATCH", MEMBER, ALERT, lambda w: {"acknowledged": True}),
    R("api-alert", "DELETE", ADMIN, ALERT),
    R("api-alert-acknowledge", "POST", MEMBER, ALERT, ok=200),
    R("api-budgets", "GET", VIEWER, shows=(f"{BUDGET_AMOUNT}",)),
    R(
        "api-budgets",
        "POST",
        ADMIN,
        body=lambda w: {"scope": "provider", "provider": "anthropic", "amount": "50"},
    ),
    R("api-budget", "GET", VIEWER, BUDGET, shows=(f"{BUDGET_AMOUNT}",)),
    R("api-budget", "PUT", ADMIN, BUDGET, lambda w: {"amount": "60"}),
    R("api-budget", "PATCH", ADMIN, BUDGET, lambda w: {"amount": "60"}),
    R("api-budget", "DELETE", ADMIN, BUDGET),
    R("api-channels", "GET", VIEWER, shows=(CHANNEL_TARGET,)),
    R(
        "api-channels",
        "POST",
        ADMIN,
        body=lambda w: {"kind": "email", "target": "new@example.test"},
    ),
    R("api-channel", "GET", VIEWER, CHANNEL, shows=(CHANNEL_TARGET,)),
    R("api-channel", "DELETE", ADMIN, CHANNEL),
    R("api-channel-test", "POST", ADMIN, CHANNEL, ok=200),
    # --- API: audit log (audit/api_urls.py)
    R("api-audit", "GET", ADMIN, shows=(ACCOUNT_NAME, INVITE_EMAIL)),
]

# Routes that act in no workspace, with why. A route here is not in the matrix.
NOT_WORKSPACE_SCOPED = {
    # Signed out, or signing in or up.
    "signup": "sign-up",
    "login": "sign-in",
    "api-register": "sign-up (API)",
    "api-login": "sign-in (API)",
    "invite-accept": "anyone with the link; joining is the invite's own check",
    # The signed-in user's own things, whichever workspace they act in.
    "logout": "the user's session",
    "api-logout": "the user's token",
    "api-me": "the user",
    "password_change": "the user's password",
    "password_change_done": "the user's password",
    "profile": "the user's profile",
    "api-tokens": "the user's API tokens",
    "api-token-revoke": "the user's API tokens (404 for another user's)",
    "api-workspaces": "the user's memberships",
    "workspace-new": "makes a workspace of the user's own",
    "workspace-switch": "404 for a workspace the user is not in (tested below)",
    # Global, the same for everyone.
    "api-services": "the provider catalogue",
    "api-service": "the provider catalogue; writes are for staff",
    "favicon": "static",
    "api-schema": "the OpenAPI schema",
    "api-docs": "Swagger UI",
    # Operations: no workspace data (costtracker/ops_views.py, tested in test_health.py and
    # test_metrics.py). /metrics: off unless METRICS_ENABLED, then a Bearer METRICS_TOKEN or
    # loopback; aggregate figures across workspaces, labelled by provider and source only.
    "healthz": "liveness probe, public, answers without the database",
    "readyz": "readiness probe, public, names the failed check only",
    "metrics": "METRICS_ENABLED + Bearer METRICS_TOKEN (or loopback); no workspace data",
    # An ingest key is the credential, and it names its account.
    "proxy": "authenticated by an ingest key",
    "api-usage-events": "authenticated by an ingest key",
    "otlp-traces": "authenticated by an ingest key",
}
NOT_WORKSPACE_SCOPED_NAMESPACES = {"admin": "Django's admin: staff only, by its own permissions"}


# --- completeness ----------------------------------------------------------------------------


def _patterns(resolver: URLResolver, prefix: str = "", namespace: str = ""):
    """(route, name, pattern) of every URL pattern, through every include."""
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            inner = entry.namespace or namespace
            yield from _patterns(entry, route, inner)
        elif isinstance(entry, URLPattern):
            yield route, entry.name, namespace, entry


def test_it_classifies_every_route():
    """A route without a row here (or one the table names that no longer exists) fails."""
    unclassified, names = [], set()
    for route, name, namespace, _ in _patterns(get_resolver()):
        if namespace in NOT_WORKSPACE_SCOPED_NAMESPACES:
            continue
        if name is None:
            unclassified.append(f"{route} (unnamed)")
            continue
        names.add(name)
        if name not in NOT_WORKSPACE_SCOPED and name not in {r.name for r in ROUTES}:
            unclassified.append(f"{route} ({name})")
    assert not unclassified, (
        "Routes without a row in ROUTES or NOT_WORKSPACE_SCOPED (give each its least role): "
        + ", ".join(unclassified)
    )
    stale = ({r.name for r in ROUTES} | set(NOT_WORKSPACE_SCOPED)) - names
    assert not stale, f"Rows for routes that no longer exist: {sorted(stale)}"


def test_it_has_a_row_for_every_method_of_every_api_view():
    """A method added to an API view (a new PUT, a DELETE) needs its own row and role."""
    missing = []
    for route, name, namespace, pattern in _patterns(get_resolver()):
        view_class = getattr(pattern.callback, "view_class", None)
        if namespace in NOT_WORKSPACE_SCOPED_NAMESPACES or name in NOT_WORKSPACE_SCOPED:
            continue
        if view_class is None or not name.startswith("api-"):
            continue
        methods = {
            m.upper()
            for m in view_class.http_method_names
            if m not in ("options", "head") and hasattr(view_class, m)
        }
        covered = {r.method for r in ROUTES if r.name == name}
        missing += [f"{m} {route}" for m in sorted(methods - covered)]
    assert not missing, f"API methods without a row in ROUTES: {missing}"


# --- the matrix ------------------------------------------------------------------------------


def fingerprint(w: World) -> dict:
    """Everything of the shared workspace a route might change (audit events as a count)."""
    ws = w.workspace.pk
    by_account = {"account__workspace_id": ws}
    tables = {
        "workspace": Workspace.objects.filter(pk=ws),
        "members": Membership.objects.filter(workspace_id=ws),
        "invites": Invite.objects.filter(workspace_id=ws),
        "accounts": ProviderAccount.objects.filter(workspace_id=ws),
        "keys": IngestKey.objects.filter(**by_account),
        "records": UsageRecord.objects.filter(**by_account),
        "invoices": Invoice.objects.filter(**by_account),
        "runs": SyncRun.objects.filter(**by_account),
        "budgets": Budget.objects.filter(workspace_id=ws),
        "alerts": Alert.objects.filter(workspace_id=ws),
        "channels": NotificationChannel.objects.filter(workspace_id=ws),
        "deliveries": NotificationDelivery.objects.filter(channel__workspace_id=ws),
    }
    state = {key: list(qs.order_by("pk").values()) for key, qs in tables.items()}
    state["audit events"] = AuditEvent.objects.filter(workspace_id=ws).count()
    state["queued tasks"] = OrmQ.objects.count()
    return state


def content(response) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode()
    return response.content.decode()


def call(route: Route, actor: str, w: World, client, api_client, *, in_own_workspace=False):
    query = route.query(w) if callable(route.query) else route.query
    url = reverse(route.name, kwargs=route.kwargs(w, actor)) + query
    user = w.users[actor]
    body = route.body(w) if route.body else None
    method = route.method.lower()
    if route.api:
        api_client.force_authenticate(user)
        headers = {} if in_own_workspace else {"HTTP_X_WORKSPACE": str(w.workspace.pk)}
        return getattr(api_client, method)(url, body, format="json", **headers)
    client.force_login(user)
    if actor != OUTSIDER:
        switched = client.post(reverse("workspace-switch"), {"workspace": w.workspace.pk})
        assert switched.status_code == 302
    return getattr(client, method)(url, body or {})


def _leaks(response, secrets) -> list[str]:
    text = content(response)
    return [s for s in secrets if s in text]


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.id)
def test_it_gives_each_role_what_its_route_allows(route, actor, world, client, api_client, request):
    if route.name in ("account-test", "api-account-test"):
        upstream = request.getfixturevalue("httpserver")
        # Test connection calls OpenAI's costs endpoint: a loopback server answers instead.
        upstream.expect_request(re.compile(".*")).respond_with_json({"object": "page", "data": []})
        settings = request.getfixturevalue("settings")
        settings.OPENAI_BASE_URL = upstream.url_for("/").rstrip("/")
    before = fingerprint(world)
    response = call(route, actor, world, client, api_client)
    what = f"{route.id} as {actor}: {response.status_code}"

    if actor == OUTSIDER:
        if route.api or route.has_object:
            assert response.status_code == 404, what
        else:
            # A page without an object acts in the outsider's own workspace.
            assert response.status_code < 500, what
        assert not _leaks(response, OUTSIDER_SECRETS), what
        if route.api:
            # And acting in their own workspace, naming the shared object (path or body).
            own = call(route, actor, world, client, api_client, in_own_workspace=True)
            if route.has_object:
                assert own.status_code == 404, f"{what}, in their own workspace {own.status_code}"
            assert own.status_code < 500, f"{what}, in their own workspace {own.status_code}"
            assert not _leaks(own, OUTSIDER_SECRETS), what
        assert fingerprint(world) == before, f"{what} changed the workspace"
    elif Role(actor).rank < route.role.rank:
        assert response.status_code == 403, what
        assert not _leaks(response, SECRETS), what
        assert fingerprint(world) == before, f"{what} changed the workspace"
    else:
        text = content(response)
        assert response.status_code == route.success, f"{what}\n{text[:2000]}"
        assert [s for s in route.shows if s not in text] == [], what
        if route.writes is True:
            assert fingerprint(world) != before, f"{what} changed nothing"
        elif route.writes is False:
            assert fingerprint(world) == before, f"{what} changed the workspace"


# --- the rest of the rules -------------------------------------------------------------------


def test_it_keeps_an_outsider_from_switching_to_the_workspace(world, client):
    client.force_login(world.users[OUTSIDER])
    response = client.post(reverse("workspace-switch"), {"workspace": world.workspace.pk})
    assert response.status_code == 404
    assert not _leaks(response, OUTSIDER_SECRETS)
    # Still in their own: the dashboard names their workspace, not the shared one.
    assert WORKSPACE_NAME not in client.get(reverse("dashboard")).content.decode()


@pytest.mark.parametrize("api", [False, True], ids=["page", "api"])
def test_it_lets_a_member_revoke_only_their_own_ingest_key(world, client, api_client, api):
    member = world.users[Role.MEMBER]
    name = "api-ingest-key-revoke" if api else "ingest-key-revoke"
    route = Route(name, "POST", Role.MEMBER, member_key)
    assert call(route, Role.MEMBER, world, client, api_client).status_code in (200, 302)
    refused = call(
        Route(name, "POST", Role.MEMBER, admin_key), Role.MEMBER, world, client, api_client
    )
    assert refused.status_code == 403
    world.member_key.refresh_from_db()
    world.admin_key.refresh_from_db()
    assert world.member_key.revoked_at is not None
    assert world.admin_key.revoked_at is None
    assert world.member_key.created_by == member


@pytest.mark.parametrize("api", [False, True], ids=["page", "api"])
def test_it_lets_an_admin_revoke_any_ingest_key(world, client, api_client, api):
    name = "api-ingest-key-revoke" if api else "ingest-key-revoke"
    for key in (member_key, admin_key):
        response = call(Route(name, "POST", Role.ADMIN, key), Role.ADMIN, world, client, api_client)
        assert response.status_code in (200, 302)
    assert not IngestKey.objects.filter(account=world.account, revoked_at=None).exists()


READ_ONLY_PAGES = sorted(
    {r.name for r in ROUTES if not r.api}
    - {r.name for r in ROUTES if not r.api and r.method != "GET"}
)


@pytest.mark.parametrize("name", READ_ONLY_PAGES)
def test_it_lets_a_post_to_a_read_only_page_change_nothing(name, world, client, api_client):
    """A page the table reads only (its least role checks GET) must not write on a POST: the
    viewer, whom every such page lets in, changes nothing by posting to it."""
    row = next(r for r in ROUTES if r.name == name)  # its first row (variants: other queries)
    before = fingerprint(world)
    posted = Route(name, "POST", row.role, row.kwargs, query=row.query)
    response = call(posted, Role.VIEWER, world, client, api_client)
    assert response.status_code in (200, 403, 405), response.status_code
    assert fingerprint(world) == before


@pytest.mark.parametrize("role", [Role.ADMIN, Role.MEMBER, Role.VIEWER])
def test_it_shows_open_invites_to_owners_only(world, client, api_client, role):
    # Invites are the owner's (Role's docstring): the workspace page every member reads lists
    # the members, and only an owner's lists the open invite links and whom they were sent to.
    page = Route("workspace", "GET", Role.VIEWER)
    assert INVITE_EMAIL in content(call(page, Role.OWNER, world, client, api_client))
    text = content(call(page, role, world, client, api_client))
    assert USERNAMES[Role.MEMBER] in text
    assert INVITE_EMAIL not in text
    assert world.invite.hint not in text
