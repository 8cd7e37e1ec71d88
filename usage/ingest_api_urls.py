from django.urls import path

from providers import ingest_apis as key_apis
from usage import ingest_apis

urlpatterns = [
    path("usage/events", ingest_apis.UsageEventsApi.as_view(), name="api-usage-events"),
    path(
        "accounts/<int:pk>/ingest-keys",
        key_apis.IngestKeyListCreateApi.as_view(),
        name="api-ingest-keys",
    ),
    path(
        "accounts/<int:pk>/ingest-keys/<int:key_id>",
        key_apis.IngestKeyDetailApi.as_view(),
        name="api-ingest-key",
    ),
    path(
        "accounts/<int:pk>/ingest-keys/<int:key_id>/revoke",
        key_apis.IngestKeyRevokeApi.as_view(),
        name="api-ingest-key-revoke",
    ),
]
