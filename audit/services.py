"""Writes to the audit log. Every service that changes a workspace's data calls
``audit_record`` once, inside its own transaction: a rolled-back write leaves no event, and no
event exists without its write.

Secrets never reach the log. A snapshot replaces each write-only field by whether it is set
(``"set"`` / ``"not set"``), so a change reads "api key: set → changed"; hints and digests are
left out, and a channel's target (a webhook URL often carries a token) is shown as its display
form.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django.db import models

from audit.context import current_user
from audit.models import AuditEvent

SYSTEM_ACTOR = "system"

# Per model label: fields that are secret (logged as set / not set) and fields left out.
_SECRET_FIELDS = {"providers.provideraccount": ("api_key", "admin_key")}
_OMITTED_FIELDS = {
    "providers.provideraccount": (
        "api_key_last4",
        "admin_key_last4",
        "last_sync_at",
        "last_sync_status",
        "last_sync_error",
        "created_at",
        "updated_at",
    ),
    "providers.ingestkey": ("digest", "last_used_at", "created_at"),
    "alerts.notificationchannel": ("target",),
    "usage.usagerecord": ("natural_key", "created_at", "updated_at"),
    "usage.price": ("created_at",),
    "providers.invoice": ("created_at", "updated_at"),
    "alerts.budget": ("created_at",),
}
KEY_PRESENT, KEY_ABSENT = "set", "not set"
_SECRET_NAMES = {name for names in _SECRET_FIELDS.values() for name in names}


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, dict | list | str | int | float | bool) or value is None:
        return value
    return str(value)


def audit_snapshot(obj: models.Model) -> dict[str, Any]:
    """The object's loggable fields as JSON values; secrets only as set / not set."""
    label = obj._meta.label_lower
    secret, omitted = _SECRET_FIELDS.get(label, ()), _OMITTED_FIELDS.get(label, ())
    data: dict[str, Any] = {}
    for field in obj._meta.concrete_fields:
        if field.primary_key or field.name in omitted:
            continue
        if field.name in secret:
            data[field.name] = KEY_PRESENT if getattr(obj, field.attname) else KEY_ABSENT
        else:
            data[field.name] = _json_value(getattr(obj, field.attname))
    if label == "alerts.notificationchannel":
        data["target"] = obj.target_display
    return data


def _blank(value: Any) -> bool:
    """Nothing to tell: empty, null or a zero count/amount (a boolean is always told)."""
    if isinstance(value, bool):
        return False
    if value in (None, "", {}, []):
        return True
    try:
        return Decimal(str(value)) == 0
    except ArithmeticError:
        return False


def audit_diff(before: dict | None, after: dict | None) -> dict[str, list]:
    """{field: [old, new]} for every field that differs (one side may be missing). A created
    or deleted object lists only the fields it had a value in: a new usage record's twenty
    zero counters say nothing."""
    one_sided = before is None or after is None
    before, after = before or {}, after or {}
    return {
        name: [before.get(name), after.get(name)]
        for name in sorted(set(before) | set(after))
        if before.get(name) != after.get(name)
        and not (one_sided and _blank(before.get(name)) and _blank(after.get(name)))
    }


def _workspace_of(obj: models.Model):
    for path in ("workspace", "account.workspace"):
        target = obj
        for part in path.split("."):
            target = getattr(target, part, None)
            if target is None:
                break
        if target is not None:
            return target
    return None


def audit_record(
    *,
    action: str,
    obj: models.Model | None = None,
    before: dict | None = None,
    after: dict | None = None,
    changes: dict | None = None,
    workspace=None,
    object_type: str | None = None,
    object_id: Any = None,
    object_label: str | None = None,
    actor=None,
) -> AuditEvent:
    """Append one event. ``changes`` defaults to the diff of the two snapshots; the workspace,
    type, id and label default to the object's. The actor is the request's user, else the
    system."""
    actor = actor if actor is not None else current_user()
    if obj is not None:
        workspace = workspace if workspace is not None else _workspace_of(obj)
        object_type = object_type or obj._meta.verbose_name
        object_id = object_id if object_id is not None else obj.pk
        object_label = object_label if object_label is not None else str(obj)
    return AuditEvent.objects.create(
        actor=actor,
        actor_label=actor.get_username() if actor is not None else SYSTEM_ACTOR,
        workspace=workspace,
        workspace_label=workspace.name if workspace is not None else "",
        action=action,
        object_type=(object_type or "")[:40],
        object_id="" if object_id is None else str(object_id),
        object_label=(object_label or "")[:255],
        changes=changes if changes is not None else audit_diff(before, after),
    )


def audit_state(obj: models.Model) -> tuple[dict[str, Any], dict[str, Any]]:
    """(snapshot, secrets) before a change. The secrets' stored (encrypted) values stay in
    memory only, to tell "changed" from "unchanged" afterwards; they are never written."""
    secret = _SECRET_FIELDS.get(obj._meta.label_lower, ())
    return audit_snapshot(obj), {name: getattr(obj, name) for name in secret}


def audit_changes(before: tuple[dict, dict] | None, obj: models.Model) -> dict[str, list]:
    """The diff from a state taken with ``audit_state`` to the object as it is now; a secret
    replaced by another reads ``["set", "changed"]``."""
    snapshot, secrets = before if before is not None else (None, {})
    changes = audit_diff(snapshot, audit_snapshot(obj))
    for name, old in secrets.items():
        new = getattr(obj, name)
        if old and new and old != new:
            changes[name] = [KEY_PRESENT, "changed"]
    return changes


def audit_update_action(changes: dict[str, list]) -> str:
    """What to call an update: switching off or on first, then a key change, else "updated"."""
    if "is_active" in changes:
        was, now = changes["is_active"]
        return AuditEvent.Action.DEACTIVATED if was and not now else AuditEvent.Action.REACTIVATED
    if changes and set(changes) <= _SECRET_NAMES:
        return AuditEvent.Action.KEY_CHANGED
    return AuditEvent.Action.UPDATED
