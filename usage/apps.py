from django.apps import AppConfig


class UsageConfig(AppConfig):
    name = "usage"
    verbose_name = "Usage and prices"

    def ready(self) -> None:
        import costtracker.db  # noqa: F401 - plans hot PostgreSQL statements once
        from usage import (
            db,  # noqa: F401 - registers the exact SQLite money functions
            signals,  # noqa: F401 - holds an account while it is deleted
        )
