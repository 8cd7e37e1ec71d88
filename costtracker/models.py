from django.db import models


class Heartbeat(models.Model):
    """When a django-q2 cluster last ran a task: stamped each minute by the scheduled
    `cluster-heartbeat` task (costtracker.tasks), read by /readyz (costtracker.health).

    One row for all clusters: the ORM broker hands a scheduled task to whichever cluster's
    worker takes it first, so a fresh stamp says "some cluster schedules and runs tasks",
    which is what the tracker needs, however many nodes run one.
    """

    name = models.CharField(max_length=32, primary_key=True)
    seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} {self.seen_at:%Y-%m-%d %H:%M:%S}"
