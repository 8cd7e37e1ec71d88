from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from providers import crypto
from providers.fields import SealedSecret
from providers.models import ProviderAccount


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret with the first key in ENCRYPTION_KEYS. Put the new key "
        "first, keep the old ones after it, run this, then drop the old keys."
    )

    def handle(self, *args, **options):
        rotated = 0
        try:
            with transaction.atomic():
                for account in ProviderAccount.objects.select_for_update().all():
                    changed = []
                    for field in ("api_key", "admin_key"):
                        sealed = getattr(account, field)
                        if sealed:
                            setattr(account, field, SealedSecret(crypto.rotate(sealed.ciphertext)))
                            changed.append(field)
                    if changed:
                        account.save(update_fields=changed)
                        rotated += len(changed)
        except crypto.SecretUnreadable as exc:
            raise CommandError(
                f"{exc}. Nothing was changed: keep every old key in ENCRYPTION_KEYS until "
                "the rotation has run."
            ) from exc
        self.stdout.write(
            self.style.SUCCESS(f"Re-encrypted {rotated} secret(s) with the first key.")
        )
