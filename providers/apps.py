from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _catalogue_after_migrate(sender, *, apps=None, **kwargs) -> None:
    """The catalogue follows the registered adapters on every `migrate` (and after a test's
    flush, which sends the same signal without `apps`: then the current models apply)."""
    from providers.catalogue import catalogue_sync

    if apps is None:
        from django.apps import apps
    try:
        provider_model = apps.get_model("providers", "Provider")
    except LookupError:  # migrated to before the catalogue existed
        return
    catalogue_sync(provider_model)


class ProvidersConfig(AppConfig):
    name = "providers"
    verbose_name = "Providers and accounts"

    def ready(self) -> None:
        from providers import key_memory

        key_memory.connect_signals()  # a change made in this process is forgotten at once
        post_migrate.connect(_catalogue_after_migrate, sender=self)
