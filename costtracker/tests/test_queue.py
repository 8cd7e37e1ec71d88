"""costtracker/queue.py: a task that reads its caller's rows is queued with them (ORM broker)
or once they are committed (Redis), never before."""

from __future__ import annotations

import pytest
from django.db import transaction

from costtracker.queue import task_enqueue_on_commit

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(monkeypatch) -> list[tuple]:
    calls: list[tuple] = []
    monkeypatch.setattr(
        "django_q.tasks.async_task", lambda func, *args, **kwargs: calls.append((func, args))
    )
    return calls


def test_it_queues_inside_the_transaction_with_the_orm_broker(settings, queued):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "orm": "default"}
    with transaction.atomic():
        task_enqueue_on_commit("alerts.tasks.deliver_notification", 7)
        assert queued == [("alerts.tasks.deliver_notification", (7,))]


def test_it_queues_only_after_the_commit_with_redis(
    settings, queued, django_capture_on_commit_callbacks
):
    settings.Q_CLUSTER = {
        k: v for k, v in {**settings.Q_CLUSTER, "redis": "redis://x"}.items() if k != "orm"
    }
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            task_enqueue_on_commit("alerts.tasks.deliver_notification", 7)
            assert queued == []  # a worker on any node could take it before the row exists
    assert queued == [("alerts.tasks.deliver_notification", (7,))]


def test_nothing_is_queued_when_the_transaction_rolls_back_with_redis(
    settings, queued, django_capture_on_commit_callbacks
):
    settings.Q_CLUSTER = {k: v for k, v in settings.Q_CLUSTER.items() if k != "orm"}
    with django_capture_on_commit_callbacks(execute=True):
        try:
            with transaction.atomic():
                task_enqueue_on_commit("alerts.tasks.deliver_notification", 7)
                raise RuntimeError("the caller fails")
        except RuntimeError:
            pass
    assert queued == []
