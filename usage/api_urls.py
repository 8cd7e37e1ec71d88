from django.urls import path

from usage import apis, breakdown_apis, sync_apis

urlpatterns = [
    path("usage", apis.UsageSummaryApi.as_view(), name="api-usage"),
    path("usage/history", apis.UsageHistoryApi.as_view(), name="api-usage-history"),
    path("usage/by-service", apis.UsageByServiceApi.as_view(), name="api-usage-by-service"),
    path("usage/daily", apis.UsageDailyApi.as_view(), name="api-usage-daily"),
    path("usage/breakdown", breakdown_apis.BreakdownApi.as_view(), name="api-usage-breakdown"),
    path("usage/records", apis.ManualEntryApi.as_view(), name="api-usage-records"),
    path(
        "usage/records/<int:pk>/explanation",
        apis.UsageRecordExplanationApi.as_view(),
        name="api-usage-record-explanation",
    ),
    path("accounts/<int:pk>/sync-runs", sync_apis.SyncRunListApi.as_view(), name="api-sync-runs"),
]
