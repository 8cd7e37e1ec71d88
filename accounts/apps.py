from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Users, workspaces and API tokens"

    def ready(self) -> None:
        from accounts import schema, signals  # noqa: F401 - the OpenAPI extension; signals
