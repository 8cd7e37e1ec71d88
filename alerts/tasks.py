"""django-q2 entry points: thin wrappers over services, safe to run more than once."""

from __future__ import annotations

import logging

from accounts.models import Workspace
from alerts import services

logger = logging.getLogger(__name__)


def evaluate_all() -> int:
    """Evaluate every workspace with an account; one's failure never stops the others. Then
    queue again any notification whose task was lost."""
    created = 0
    workspaces = Workspace.objects.filter(provider_accounts__isnull=False).distinct()
    for workspace in workspaces.iterator():
        try:
            created += len(services.alerts_evaluate_for_workspace(workspace=workspace))
        except Exception:
            logger.exception("evaluating alerts for workspace %s failed", workspace.pk)
    services.notifications_resume()
    return created


def evaluate_due() -> int:
    """Evaluate every workspace whose spend changed (EvaluationDue rows due by now)."""
    return len(services.alerts_evaluate_due())


def evaluate_account(account_id: int) -> int:
    """Kept for tasks queued before evaluate_due replaced the ingestion debounce."""
    return len(services.alerts_evaluate_for_account(account_id=account_id))


def deliver_notification(delivery_id: int) -> str:
    delivery = services.notification_deliver(delivery_id=delivery_id)
    return f"delivery {delivery_id}: {delivery.status if delivery else 'gone'}"
