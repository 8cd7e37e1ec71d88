from django.urls import path

from providers import ingest_views

urlpatterns = [
    path("accounts/<int:pk>/ingest-keys/", ingest_views.ingest_key_list, name="ingest-key-list"),
    path(
        "accounts/<int:pk>/ingest-keys/<int:key_id>/revoke/",
        ingest_views.ingest_key_revoke,
        name="ingest-key-revoke",
    ),
    path(
        "accounts/<int:pk>/ingest-keys/<int:key_id>/limit/",
        ingest_views.ingest_key_limit,
        name="ingest-key-limit",
    ),
]
