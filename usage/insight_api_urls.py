from django.urls import path

from usage import insight_apis

urlpatterns = [
    path("usage/forecast", insight_apis.ForecastApi.as_view(), name="api-usage-forecast"),
    path("reconciliation", insight_apis.ReconciliationApi.as_view(), name="api-reconciliation"),
    path(
        "accounts/<int:pk>/invoices",
        insight_apis.AccountInvoiceListApi.as_view(),
        name="api-account-invoices",
    ),
    path(
        "accounts/<int:pk>/invoices/<str:month>",
        insight_apis.AccountInvoiceApi.as_view(),
        name="api-account-invoice",
    ),
    path("export", insight_apis.ExportApi.as_view(), name="api-export"),
]
