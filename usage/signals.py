"""Keeping usage records consistent with their accounts."""

from __future__ import annotations

from django.db import connection
from django.db.models.signals import post_delete, post_save, pre_delete
from django.dispatch import receiver

from providers.models import ProviderAccount
from usage.models import ModelAlias, Price


@receiver(pre_delete, sender=ProviderAccount)
def _hold_the_account_while_it_is_deleted(sender, instance, **kwargs) -> None:
    """Lock the account row before its records are deleted, in the deleting transaction.

    Usage records have no FK constraint in the database; what refuses records for a missing
    account is their roll-up row's constraint (see UsageRecord). Django deletes the records,
    then the roll-up rows, then the account: a batch committed between the first two would
    lose its roll-up rows and leave its records behind. With the row locked first, that
    batch's constraint check waits for the delete and then fails, writing nothing. SQLite
    admits one writer at a time, so there the race cannot happen.
    """
    if connection.vendor == "postgresql":
        list(ProviderAccount.objects.select_for_update().filter(pk=instance.pk).values("pk"))


@receiver(pre_delete, sender=ProviderAccount)
def _evaluate_alerts_once_the_account_is_gone(sender, instance, **kwargs) -> None:
    """Deleting an account removes its spend without touching the roll-up writers."""
    from usage.services.rollup import spend_changed

    spend_changed(workspace_id=instance.workspace_id)


@receiver(post_save, sender=Price)
@receiver(post_delete, sender=Price)
@receiver(post_save, sender=ModelAlias)
@receiver(post_delete, sender=ModelAlias)
def _renew_price_books(sender, **kwargs) -> None:
    """A price or an alias edited one at a time (the admin): every node renews its price book
    (prices_import, which writes in bulk, says so itself)."""
    from usage.services.prices import price_book_changed

    price_book_changed()
