"""Settings for the AI Cost Tracker.

Everything an operator may change comes from the environment (or a `.env` file beside
manage.py), read with django-environ. The README lists every variable.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import environ
from csp import constants as csp
from django.core.exceptions import ImproperlyConfigured

from providers.registry import base_url_settings

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)

SECRET_KEY = env.str("SECRET_KEY", default="")
# Comma-separated Fernet keys: the first encrypts, all decrypt (see providers/crypto.py).
ENCRYPTION_KEYS = env.list("ENCRYPTION_KEYS", default=[])

if not DEBUG and (not SECRET_KEY or not ENCRYPTION_KEYS):
    missing = [
        n for n, v in (("SECRET_KEY", SECRET_KEY), ("ENCRYPTION_KEYS", ENCRYPTION_KEYS)) if not v
    ]
    raise ImproperlyConfigured(
        f"{' and '.join(missing)} must be set when DEBUG is off. "
        "Run `make run` once to generate a .env for local use, or see README.md."
    )
if DEBUG and not SECRET_KEY:
    SECRET_KEY = "insecure-development-only-key"  # noqa: S105 - only reachable with DEBUG on

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
# Where people reach the app: links in alert emails and webhooks point here.
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
ALLOW_SIGNUP = env.bool("ALLOW_SIGNUP", default=True)
SYNC_INTERVAL_MINUTES = env.int("SYNC_INTERVAL_MINUTES", default=60)
SYNC_BACKFILL_DAYS = env.int("SYNC_BACKFILL_DAYS", default=30)
# One sync may use this much provider time in total (every request's timeout is bounded by
# what is left); a temporary failure is retried by a later task, never by sleeping in a worker:
# after SYNC_RETRY_BASE_SECONDS, doubling, at most SYNC_MAX_ATTEMPTS tries in all.
SYNC_TIME_BUDGET_SECONDS = env.float("SYNC_TIME_BUDGET_SECONDS", default=60.0)
SYNC_MAX_ATTEMPTS = env.int("SYNC_MAX_ATTEMPTS", default=4)
SYNC_RETRY_BASE_SECONDS = env.int("SYNC_RETRY_BASE_SECONDS", default=60)
# A running sync renews its lease (heartbeat) as it works; one silent for this long lost its
# worker and is marked stale, so "Sync now" can start again.
SYNC_LEASE_SECONDS = env.int("SYNC_LEASE_SECONDS", default=120)
# Proxy: upstream timeouts (seconds) and connection pool size.
PROXY_CONNECT_TIMEOUT = env.float("PROXY_CONNECT_TIMEOUT", default=5.0)
PROXY_READ_TIMEOUT = env.float("PROXY_READ_TIMEOUT", default=300.0)
PROXY_POOL_SIZE = env.int("PROXY_POOL_SIZE", default=64)
# A proxied call's record is committed before its response ends. On PostgreSQL that commit
# does not wait for the disk unless this is true (~0.5 ms a call here): the record is visible
# at once, but a crash of the database server in the next ~0.6 s could lose it, as calls made
# while the database is down are lost (the proxy never fails a call for its bookkeeping).
PROXY_DURABLE_COMMIT = env.bool("PROXY_DURABLE_COMMIT", default=False)
INGEST_MAX_BODY_BYTES = env.int("INGEST_MAX_BODY_BYTES", default=20 * 1024 * 1024)

# Raw per-request records older than this many days are removed a whole calendar month at a
# time (usage/services/history.py; on PostgreSQL by dropping the month's partition). The
# daily roll-ups, official and manual rows stay, so totals and charts are unchanged. Unset:
# keep them forever. At least RAW_RETENTION_MIN_DAYS: budget periods and the sync backfill
# read the recent records.
RAW_RETENTION_DAYS = env.int("RAW_RETENTION_DAYS", default=None)
RAW_RETENTION_MIN_DAYS = 35
if RAW_RETENTION_DAYS is not None and RAW_RETENTION_DAYS < RAW_RETENTION_MIN_DAYS:
    raise ImproperlyConfigured(
        f"RAW_RETENTION_DAYS must be at least {RAW_RETENTION_MIN_DAYS} (or unset: keep forever), "
        f"not {RAW_RETENTION_DAYS}"
    )
# Monthly partitions are created this many months ahead by the daily `usage-history` task.
RAW_PARTITIONS_AHEAD = 3

# Alerts: anomaly sensitivity (median + k·MAD) and notification delivery.
ANOMALY_K = env.int("ANOMALY_K", default=3)
WEBHOOK_ALLOW_PRIVATE = env.bool("WEBHOOK_ALLOW_PRIVATE", default=False)
NOTIFY_MAX_ATTEMPTS = env.int("NOTIFY_MAX_ATTEMPTS", default=3)
NOTIFY_RETRY_BACKOFF_SECONDS = env.int("NOTIFY_RETRY_BACKOFF_SECONDS", default=60)
# Rate limits (providers/ratelimits, alerts/ratelimits.py): alert when a limit's remaining
# share drops below this percentage, or on BURST_COUNT 429s within BURST_MINUTES; a state not
# refreshed for STALE_MINUTES is shown as stale and no longer alerts.
RATELIMIT_HEADROOM_PERCENT = env.int("RATELIMIT_HEADROOM_PERCENT", default=10)
RATELIMIT_BURST_COUNT = env.int("RATELIMIT_BURST_COUNT", default=5)
RATELIMIT_BURST_MINUTES = env.int("RATELIMIT_BURST_MINUTES", default=10)
RATELIMIT_STALE_MINUTES = env.int("RATELIMIT_STALE_MINUTES", default=15)
# /metrics (costtracker/metrics.py): off (404) unless enabled; with METRICS_TOKEN set it wants
# "Authorization: Bearer <token>", without one it answers direct loopback requests only.
METRICS_ENABLED = env.bool("METRICS_ENABLED", default=False)
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")

# Upstream endpoints. Operator settings only: no user input ever chooses the host we call.
# Each provider's adapter declares its setting (OPENAI_BASE_URL, ...) and default.
for _name, _default in base_url_settings().items():
    globals()[_name] = env.str(_name, default=_default)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    # Before django_q: its `qcluster` command is replaced by one that stops on SIGTERM.
    "costtracker",
    "django_q",
    "axes",
    "accounts",
    "providers",
    "usage",
    "alerts",
    "audit",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "costtracker.metrics.MetricsMiddleware",  # only with METRICS_ENABLED
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.middleware.WorkspaceMiddleware",  # request.membership; pages in its zone
    "audit.context.AuditActorMiddleware",  # the acting user of audit events
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "costtracker.urls"
WSGI_APPLICATION = "costtracker.wsgi.application"
ASGI_APPLICATION = "costtracker.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.site",
                "accounts.context_processors.workspace",
            ],
            "builtins": [
                "usage.templatetags.money",
                "usage.templatetags.errors",  # error_message: one-line summary + details
                "usage.templatetags.times",  # when (user's zone), utc_day
                "django.contrib.humanize.templatetags.humanize",
                "template_partials.templatetags.partials",
            ],
        },
    }
]

# The embedded default is a SQLite file; the web server and the django-q2 cluster write it
# at once, so WAL + a busy timeout + IMMEDIATE transactions keep "database is locked" away.
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
# Reuse connections across requests (opening one per request costs milliseconds on the
# proxy's hot path).
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
# The ingestion and proxy statements are prepared once per PostgreSQL connection
# (costtracker/db.py). Turn off behind a transaction-mode pooler older than PgBouncer 1.21.
DATABASE_PREPARED_STATEMENTS = env.bool("DATABASE_PREPARED_STATEMENTS", default=True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and (
    DATABASE_PREPARED_STATEMENTS
):
    # Django sets psycopg's threshold to None, which refuses even an explicit prepare=True.
    # Its own cursors bind on the client and never prepare whatever the threshold, and this
    # one is never reached by count: only fetch_prepared's explicit request prepares.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("prepare_threshold", 2**31 - 1)

# Each process listens for key changes on PostgreSQL so it can remember ingest keys between
# requests (providers/key_memory.py). LISTEN needs a session of its own: turn this off behind a
# transaction-mode pooler (PgBouncer), as DATABASE_PREPARED_STATEMENTS above.
DATABASE_LISTEN = env.bool("DATABASE_LISTEN", default=True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# Login throttle: 5 failures per username + IP, then a 15-minute cool-off.
AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "accounts.lockout.lockout_response"
AXES_VERBOSE = False
AXES_SENSITIVE_PARAMETERS = ["password", "api_key", "admin_key", "token"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")  # default display zone; storage is always UTC
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEBUG

EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="AI Cost Tracker <noreply@localhost>")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.access.RoleRequired"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "COERCE_DECIMAL_TO_STRING": True,
    "EXCEPTION_HANDLER": "costtracker.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "AI Cost Tracker API",
    "DESCRIPTION": "Usage, cost, budgets and ingestion for AI providers.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Served from our own static files: self-hosted installs may be offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "ProviderKindEnum": "providers.registry.adapter_choices",
        "WorkspaceRoleEnum": "accounts.models.Role",
        "InvitableRoleEnum": "accounts.models.INVITABLE_ROLES",
    },
    # Every operation documents the JSON errors it can answer (costtracker/api.py).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "costtracker.api.postprocess_error_responses",
    ],
}
API_TOKEN_TTL = timedelta(days=env.int("API_TOKEN_TTL_DAYS", default=30))

# Several nodes (README "Scaling out"). Without REDIS_URL nothing changes: each process has its
# own memory cache and django-q2 queues its tasks in the database. With it, Redis is django-q2's
# broker and Django's cache, which every node shares (the price book's version lives there).
REDIS_URL = env.str("REDIS_URL", default="")
CACHE_SHARED = bool(REDIS_URL)
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "ct",
        }
    }

Q_CLUSTER = {
    "name": "costtracker",
    "workers": env.int("Q_WORKERS", default=2),
    # A task may run for `timeout` seconds; `retry` must be longer or a slow task is
    # handed to a second worker while the first still runs.
    "timeout": 300,
    "retry": 360,
    "max_attempts": 3,
    "catch_up": False,
    "ack_failures": True,
    "save_limit": 500,
    "poll": 1,
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
# django-q2's scheduler looks for due schedules every 30 s. Set, the cluster also looks every
# this many seconds (tests and demos with SCHEDULE_SECONDS; see the qcluster command).
Q_SCHEDULER_SECONDS = env.float("Q_SCHEDULER_SECONDS", default=0.0)
# Set, `setup_schedules` makes every periodic task run every this many seconds instead of its
# minutes (tests and demos only: a sync every few seconds hammers the providers).
SCHEDULE_SECONDS = env.int("SCHEDULE_SECONDS", default=0)

# HTTPS=true turns on everything a deployment behind TLS needs.
HTTPS = env.bool("HTTPS", default=False)
if HTTPS:
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]  # probes speak plain HTTP
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = 31536000
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# Content-Security-Policy (django-csp 4 format). Every page — ours, the admin, the Swagger UI
# at /api/docs/ — loads scripts and styles from our own static files only: no inline <script>,
# no on…="" handlers, no <style> blocks or style="" attributes, no eval, no CDN. Behaviour lives
# in static/js/, looks in static/css/; scripts may still set element.style (CSSOM), which CSP
# does not restrict — Chart.js and the admin's widgets do. Images may be data: URIs (the
# admin's and Swagger UI's stylesheets embed their icons that way). htmx is configured in
# base.html not to inject its indicator <style> nor to eval anything.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [csp.SELF],
        "script-src": [csp.SELF],
        "style-src": [csp.SELF],
        "img-src": [csp.SELF, "data:"],
        "font-src": [csp.SELF],
        "connect-src": [csp.SELF],
        "object-src": [csp.NONE],
        "base-uri": [csp.NONE],
        "form-action": [csp.SELF],
        "frame-ancestors": [csp.NONE],
    }
}
SESSION_COOKIE_HTTPONLY = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
