"""Create or update every periodic task. Safe to run repeatedly (`make run` runs it)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django_q.models import Schedule

SCHEDULES = [
    # name, function, minutes
    ("usage-sync-all", "usage.tasks.sync_all_accounts", lambda: settings.SYNC_INTERVAL_MINUTES),
    ("alerts-evaluate-all", "alerts.tasks.evaluate_all", lambda: 15),
    # A safety net: each change in spend schedules its own run of evaluate_due (alerts.services).
    ("alerts-evaluate-due", "alerts.tasks.evaluate_due", lambda: 1),
    # Next months' partitions (PostgreSQL) and RAW_RETENTION_DAYS (usage.services.history).
    ("usage-history", "usage.tasks.raw_history_maintain", lambda: 24 * 60),
    # /readyz's proof that a cluster runs tasks (costtracker.health).
    ("cluster-heartbeat", "costtracker.tasks.cluster_heartbeat", lambda: 1),
]


class Command(BaseCommand):
    help = "Create or update the django-q2 schedules (usage sync every SYNC_INTERVAL_MINUTES)."

    @transaction.atomic
    def handle(self, *args, **options):
        seconds = int(settings.SCHEDULE_SECONDS)
        if seconds < 0 or seconds > 59 or (seconds and 60 % seconds):
            raise CommandError(f"SCHEDULE_SECONDS must divide 60, not {seconds}")
        for name, func, minutes in SCHEDULES:
            every = int(minutes())
            if every < 1:
                raise CommandError(f"{name}: the interval must be at least 1 minute, not {every}")
            wanted = {
                "func": func,
                "schedule_type": Schedule.MINUTES,
                "minutes": every,
                "cron": None,
                "repeats": -1,
            }
            if seconds:
                # Tests and demos: a cron schedule (croniter's sixth field is the second).
                wanted.update(schedule_type=Schedule.CRON, cron=f"* * * * * */{seconds}")
            # Schedule.name is not unique in django-q2; keep exactly one row per name.
            rows = list(Schedule.objects.select_for_update().filter(name=name).order_by("pk"))
            if rows:
                schedule, extra = rows[0], rows[1:]
                Schedule.objects.filter(pk__in=[s.pk for s in extra]).delete()
                changed = any(getattr(schedule, k) != v for k, v in wanted.items())
                if changed:
                    for k, v in wanted.items():
                        setattr(schedule, k, v)
                    schedule.save()
                verb = "Updated" if changed or extra else "Unchanged"
            else:
                # next_run defaults to now: the first sync starts as soon as the cluster does.
                schedule = Schedule.objects.create(name=name, **wanted)
                verb = "Created"
            every_text = f"{seconds} s" if seconds else f"{schedule.minutes} min"
            self.stdout.write(f"{verb} schedule {name}: {func} every {every_text}")
