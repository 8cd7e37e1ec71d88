"""Queueing a django-q2 task that reads what the caller's transaction writes.

With the ORM broker (one machine, no REDIS_URL) the task is a row in the same database: queued
inside the caller's transaction, it is committed with the rows it reads, or not at all. Redis
(REDIS_URL) is outside the transaction: a task pushed there at once could be taken by a worker
on any node before those rows are committed, and find nothing to do. So with any broker but the
ORM the task is pushed once the transaction has committed.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction


def task_enqueue_on_commit(func: str, *args, **kwargs) -> None:
    """`async_task(func, *args, **kwargs)`, in the transaction (ORM broker) or after it."""
    from django_q.tasks import async_task

    if settings.Q_CLUSTER.get("orm"):
        async_task(func, *args, **kwargs)
    else:
        transaction.on_commit(lambda: async_task(func, *args, **kwargs), robust=True)
