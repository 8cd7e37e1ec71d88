from django.apps import AppConfig


class ProvidersConfig(AppConfig):
    name = "providers"
    verbose_name = "Providers and accounts"

    def ready(self) -> None:
        from providers import key_memory

        key_memory.connect_signals()  # a change made in this process is forgotten at once
