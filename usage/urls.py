from django.urls import path

from usage import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("usage/new/", views.manual_entry, name="manual-entry"),
    path("usage/history/", views.history, name="history"),
]
