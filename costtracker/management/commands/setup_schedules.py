"""Create or update every periodic task. Safe to run repeatedly (`make run` runs it)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand
from django_q.models import Schedule

SCHEDULES = [
    # name, function, minutes
    ("usage-sync-all", "usage.tasks.sync_all_accounts", lambda: settings.SYNC_INTERVAL_MINUTES),
]


class Command(BaseCommand):
    help = "Create or update the django-q2 schedules (usage sync every SYNC_INTERVAL_MINUTES)."

    def handle(self, *args, **options):
        for name, func, minutes in SCHEDULES:
            schedule, created = Schedule.objects.update_or_create(
                name=name,
                defaults={
                    "func": func,
                    "schedule_type": Schedule.MINUTES,
                    "minutes": minutes(),
                    "repeats": -1,
                },
            )
            verb = "Created" if created else "Updated"
            self.stdout.write(f"{verb} schedule {name}: {func} every {schedule.minutes} min")
