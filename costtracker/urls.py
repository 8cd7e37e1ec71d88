from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from accounts.api_urls import workspace_urlpatterns
from costtracker import ops_views
from costtracker.favicon import favicon
from usage.otlp.views import traces as otlp_traces

# Pages get the app's layout; /api/ gets JSON and /proxy/ a provider-shaped error.
handler400 = "costtracker.errors.bad_request"
handler403 = "costtracker.errors.permission_denied"
handler404 = "costtracker.errors.page_not_found"
handler500 = "costtracker.errors.server_error"

urlpatterns = [
    # First: Django tries patterns in order, and every proxied call pays for those before it.
    path("proxy/", include("providers.proxy_urls")),  # OpenAI/Anthropic-compatible proxy
    path("v1/traces", otlp_traces, name="otlp-traces"),  # OTLP/HTTP, where exporters post
    path("admin/", admin.site.urls),
    path("favicon.ico", favicon, name="favicon"),
    # Health and metrics (README "Health and metrics").
    path("healthz", ops_views.healthz, name="healthz"),
    path("readyz", ops_views.readyz, name="readyz"),
    path("metrics", ops_views.metrics_view, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's start-up script as its own file (?script), and our
    # template drops the page's inline <style>: the Content-Security-Policy allows neither.
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(
            url_name="api-schema", template_name="api/swagger_ui.html"
        ),
        name="api-docs",
    ),
    path("api/auth/", include("accounts.api_urls")),
    path("api/", include(workspace_urlpatterns)),  # workspaces, members, invites
    path("api/", include("providers.api_urls")),
    path("api/", include("usage.api_urls")),
    path("api/", include("usage.ingest_api_urls")),  # ingestion (per-request events)
    path("api/", include("usage.insight_api_urls")),  # forecast, export, reconciliation
    path("api/", include("alerts.api_urls")),  # budgets and alerts
    path("api/", include("audit.api_urls")),  # audit log
    path("", include("accounts.urls")),
    path("", include("providers.urls")),
    path("", include("providers.ingest_urls")),  # ingest keys pages
    path("", include("usage.urls")),
    path("", include("usage.sync_urls")),  # sync now, sync history
    path("", include("usage.insight_urls")),  # export, reconciliation pages
    path("", include("alerts.urls")),  # budgets and alerts pages
    path("", include("audit.urls")),  # audit log page
]
