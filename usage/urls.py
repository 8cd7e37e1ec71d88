from django.urls import path

from usage import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("usage/new/", views.manual_entry, name="manual-entry"),
    path("usage/<int:pk>/edit/", views.manual_entry_edit, name="manual-entry-edit"),
    path("usage/<int:pk>/delete/", views.manual_entry_delete_view, name="manual-entry-delete"),
    path("usage/history/", views.history, name="history"),
    path("usage/records/<int:pk>/", views.record_detail, name="usage-record"),
]
