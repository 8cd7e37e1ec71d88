"""django-q2 entry points: thin wrappers over services, safe to run more than once."""

from __future__ import annotations

import logging

from accounts.models import User
from alerts import services

logger = logging.getLogger(__name__)


def evaluate_all() -> int:
    """Evaluate every user with an account; one user's failure never stops the others."""
    created = 0
    users = User.objects.filter(is_active=True, provider_accounts__isnull=False).distinct()
    for user in users.iterator():
        try:
            created += len(services.alerts_evaluate_for_user(user=user))
        except Exception:
            logger.exception("evaluating alerts for user %s failed", user.pk)
    return created


def evaluate_due() -> int:
    """Evaluate every owner whose spend changed (EvaluationDue rows due by now)."""
    return len(services.alerts_evaluate_due())


def evaluate_account(account_id: int) -> int:
    """Kept for tasks queued before evaluate_due replaced the ingestion debounce."""
    return len(services.alerts_evaluate_for_account(account_id=account_id))


def deliver_notification(delivery_id: int) -> str:
    delivery = services.notification_deliver(delivery_id=delivery_id)
    return f"delivery {delivery_id}: {delivery.status if delivery else 'gone'}"
