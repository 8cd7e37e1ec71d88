"""OpenAPI description of our token authentication (drf-spectacular finds it on import)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.BearerTokenAuthentication"
    name = "bearerToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal API token (ctk_…) from POST /api/auth/login.",
        }


class IngestKeyScheme(OpenApiAuthenticationExtension):
    target_class = "usage.ingest_apis.IngestKeyAuthentication"
    name = "ingestKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An account's ingest key (cti_…): writes usage, reads nothing.",
        }
