from django.urls import path

from usage import insight_views

urlpatterns = [
    path("export/", insight_views.export, name="export"),
    path("reconciliation/", insight_views.reconciliation, name="reconciliation"),
    path(
        "reconciliation/invoice/",
        insight_views.reconciliation_invoice,
        name="reconciliation-invoice",
    ),
    path(
        "reconciliation/true-up/",
        insight_views.reconciliation_true_up,
        name="reconciliation-true-up",
    ),
]
