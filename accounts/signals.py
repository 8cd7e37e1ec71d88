"""Every user has a personal workspace, however the user was made (sign-up, createsuperuser,
the admin, a test)."""

from __future__ import annotations

from django.db.models.signals import post_save
from django.dispatch import receiver

from accounts.models import User


@receiver(post_save, sender=User, dispatch_uid="accounts.personal_workspace")
def _personal_workspace(sender, instance: User, created: bool, raw: bool = False, **kwargs):
    if created and not raw:
        from accounts.services import workspace_personal_create

        workspace_personal_create(user=instance)
