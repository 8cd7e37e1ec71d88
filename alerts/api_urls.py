from django.urls import path

from alerts import apis

urlpatterns = [
    path("alerts", apis.AlertListCreateApi.as_view(), name="api-alerts"),
    path("alerts/<int:pk>", apis.AlertDetailApi.as_view(), name="api-alert"),
    path(
        "alerts/<int:pk>/acknowledge",
        apis.AlertAcknowledgeApi.as_view(),
        name="api-alert-acknowledge",
    ),
    path("budgets", apis.BudgetListCreateApi.as_view(), name="api-budgets"),
    path("budgets/<int:pk>", apis.BudgetDetailApi.as_view(), name="api-budget"),
    path("notification-channels", apis.ChannelListCreateApi.as_view(), name="api-channels"),
    path("notification-channels/<int:pk>", apis.ChannelDetailApi.as_view(), name="api-channel"),
    path(
        "notification-channels/<int:pk>/test",
        apis.ChannelTestApi.as_view(),
        name="api-channel-test",
    ),
]
