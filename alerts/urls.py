from django.urls import path

from alerts import views

urlpatterns = [
    path("alerts/", views.alert_list, name="alert-list"),
    path("alerts/acknowledge/", views.alerts_acknowledge, name="alerts-acknowledge"),
    path("alerts/<int:pk>/", views.alert_detail, name="alert-detail"),
    path("alerts/<int:pk>/acknowledge/", views.alert_acknowledge, name="alert-acknowledge"),
    path("alerts/<int:pk>/unacknowledge/", views.alert_unacknowledge, name="alert-unacknowledge"),
    path("alerts/<int:pk>/delete/", views.alert_delete, name="alert-delete"),
    path("alerts/channels/", views.channel_list, name="channel-list"),
    path("alerts/channels/<int:pk>/test/", views.channel_test, name="channel-test"),
    path("alerts/channels/<int:pk>/delete/", views.channel_delete, name="channel-delete"),
    path("budgets/", views.budget_list, name="budget-list"),
    path("budgets/add/", views.budget_add, name="budget-add"),
    path("budgets/<int:pk>/", views.budget_edit, name="budget-edit"),
    path("budgets/<int:pk>/delete/", views.budget_delete, name="budget-delete"),
]
