"""What the data-migration tests share: move the test database to a migration state and back.

Use `migrate_to` inside a `django_db(transaction=True, serialized_rollback=True)` test, with the
`back_to_latest` fixture (import it into the test module) so later tests find every migration
applied again.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor


def _executor() -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    return executor


def migrate_to(targets: list[tuple[str, str]]):
    """Migrate to `targets` (app, migration name) and return that state's historical apps."""
    _executor().migrate(targets)
    return _executor().loader.project_state(targets).apps


def migrate_to_latest():
    """Apply every migration of every app; return the latest state's historical apps."""
    return migrate_to(_executor().loader.graph.leaf_nodes())


@pytest.fixture
def back_to_latest():
    # Going back unapplies later migrations of every app; apply them all again after.
    yield
    migrate_to_latest()
