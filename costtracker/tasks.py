"""django-q2 entry points of the project itself (thin: they call one service)."""

from costtracker.health import heartbeat_stamp


def cluster_heartbeat() -> None:
    """Scheduled every minute (manage.py setup_schedules); /readyz reads the stamp."""
    heartbeat_stamp()
