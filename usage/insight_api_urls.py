from django.urls import path

from usage import insight_apis

urlpatterns = [
    path("usage/forecast", insight_apis.ForecastApi.as_view(), name="api-usage-forecast"),
    path("reconciliation", insight_apis.ReconciliationApi.as_view(), name="api-reconciliation"),
    path("export", insight_apis.ExportApi.as_view(), name="api-export"),
]
