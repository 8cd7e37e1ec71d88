from django.apps import AppConfig


class CostTrackerConfig(AppConfig):
    name = "costtracker"
    verbose_name = "AI Cost Tracker"
