"""Every user has a personal workspace, however the user was made (sign-up, createsuperuser,
the admin, a test); and no shared workspace loses its last owner when a user is deleted,
however they are deleted."""

from __future__ import annotations

from django.db.models.signals import post_save, pre_delete
from django.dispatch import receiver

from accounts.models import User


@receiver(post_save, sender=User, dispatch_uid="accounts.personal_workspace")
def _personal_workspace(sender, instance: User, created: bool, raw: bool = False, **kwargs):
    if created and not raw:
        from accounts.services import workspace_personal_create

        workspace_personal_create(user=instance)


@receiver(pre_delete, sender=User, dispatch_uid="accounts.hand_over_workspaces")
def _hand_over_workspaces(sender, instance: User, **kwargs):
    from accounts.services import workspaces_hand_over

    workspaces_hand_over(user=instance)
