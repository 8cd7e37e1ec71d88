from django.urls import path

from usage import sync_views

urlpatterns = [
    path("accounts/<int:pk>/sync/", sync_views.sync_now, name="account-sync"),
    path("accounts/<int:pk>/sync/status/", sync_views.sync_status, name="account-sync-status"),
    path("accounts/<int:pk>/syncs/", sync_views.sync_history, name="account-sync-history"),
]
