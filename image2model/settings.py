"""Settings for image2model, read from the environment (django-environ, optional .env file).

Two run modes are chosen by configuration alone:

* embedded (no ``REDIS_URL``): SQLite, Dramatiq workers inside the serving process, in-memory
  channel layer, local-memory cache. What ``make run`` serves.
* services (``REDIS_URL`` and ``DATABASE_URL`` set): PostgreSQL, Redis broker with separate
  ``rundramatiq`` processes, channels_redis, Redis cache. What production and the tests use.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from image2model import worker_metrics

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env")

DJANGO_ENV = env.str("DJANGO_ENV", default="development")
if DJANGO_ENV not in {"development", "production", "test"}:
    raise ImproperlyConfigured(
        f"DJANGO_ENV must be development, production or test, not {DJANGO_ENV!r}."
    )
PRODUCTION = DJANGO_ENV == "production"

DEBUG = env.bool("DEBUG", default=DJANGO_ENV == "development")
SECRET_KEY = env.str("SECRET_KEY", default="")
ALLOWED_HOSTS = env.list(
    "ALLOWED_HOSTS", default=[] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"]
)

if PRODUCTION:
    # Refuse to start rather than serve with a configuration that is unsafe on the internet.
    if not SECRET_KEY or SECRET_KEY.startswith("django-insecure") or len(SECRET_KEY) < 50:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set to a random value of at least 50 characters in production."
        )
    if DEBUG:
        raise ImproperlyConfigured("DEBUG must be off (DEBUG=false) in production.")
    if not ALLOWED_HOSTS or "*" in ALLOWED_HOSTS:
        raise ImproperlyConfigured(
            "ALLOWED_HOSTS must list this site's host names in production (no '*')."
        )
elif not SECRET_KEY:
    SECRET_KEY = "django-insecure-development-only-key-do-not-use-in-production"  # noqa: S105

DATA_DIR = Path(env.str("DATA_DIR", default=str(BASE_DIR / "var")))
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(DATA_DIR / "media")))
MEDIA_URL = "/media/"
if not env.str("DATABASE_URL", default=""):
    DATA_DIR.mkdir(parents=True, exist_ok=True)  # the SQLite file of the embedded mode lives here
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(DATA_DIR / "static")))
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = not PRODUCTION
if not PRODUCTION:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on a missing folder

REDIS_URL = env.str("REDIS_URL", default="")
SERVICES_MODE = bool(REDIS_URL)
# Keys of the broker, channel layer and cache never collide: each has its own prefix, and each
# may point at its own Redis (or database number) through its own variable.
REDIS_PREFIX = env.str("REDIS_PREFIX", default="image2model")
BROKER_REDIS_URL = env.str("BROKER_REDIS_URL", default=REDIS_URL)
CHANNELS_REDIS_URL = env.str("CHANNELS_REDIS_URL", default=REDIS_URL)
CACHE_REDIS_URL = env.str("CACHE_REDIS_URL", default=REDIS_URL)
# Connect and read timeouts of the cache and the broker connection (and health checks), so a
# dead Redis fails fast instead of hanging a request.
REDIS_TIMEOUT_SECONDS = env.float("REDIS_TIMEOUT_SECONDS", default=2.0)

INSTALLED_APPS = [
    "daphne",
    "apps.console.apps.ConsoleAdminConfig",  # django.contrib.admin with the console site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "corsheaders",
    "csp",
    "channels",
    "django_dramatiq",
    "django_prometheus",
    "ninja",
    "apps.core",
    "apps.accounts",
    "apps.uploads",
    "apps.jobs",
    "apps.downloads",
    "apps.logs",
    "apps.console",
    # Deletes the stored file of an Artifact or SourceImage once its row is deleted (models
    # marked with @cleanup.select); last, as django-cleanup asks.
    "django_cleanup.apps.CleanupSelectedConfig",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "apps.core.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "apps.core.middleware.ApiTrailingSlashMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "apps.core.middleware.ApiErrorEnvelopeMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "image2model.urls"
WSGI_APPLICATION = "image2model.wsgi.application"
ASGI_APPLICATION = "image2model.asgi.application"

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
            ],
        },
    },
]

# Database: SQLite in the embedded mode, PostgreSQL (psycopg 3) through DATABASE_URL otherwise.
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The in-process workers write from their own threads: WAL lets readers go on while one
    # writer works, and IMMEDIATE transactions queue writers instead of failing with "locked".
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", 3)
    # Django advises against persistent connections under ASGI. A process-wide psycopg pool is
    # reused by every request thread, job thread and stream instead: "closing" a connection
    # hands it back (decision 0015). The pool and CONN_MAX_AGE > 0 exclude each other.
    DATABASE_CONN_MAX_AGE = env.int("DATABASE_CONN_MAX_AGE", default=0)
    DATABASE_POOL = env.bool("DATABASE_POOL", default=True)
    if DATABASE_POOL and DATABASE_CONN_MAX_AGE:
        raise ImproperlyConfigured(
            "DATABASE_CONN_MAX_AGE must be 0 while DATABASE_POOL is on (the pool keeps the "
            "connections); set DATABASE_POOL=false to use persistent connections instead."
        )
    DATABASES["default"]["CONN_MAX_AGE"] = DATABASE_CONN_MAX_AGE
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # Django's backend, checking pooled connections as it takes them without a round trip.
        DATABASES["default"]["ENGINE"] = "apps.core.db.postgresql"
    # With the pool, this would be the pool's check on hand-out: an empty query, one more round
    # trip per request and job step. Our backend's check replaces it (decision 0019). Without the
    # pool, it is Django's check of a persistent connection at the start of each request.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = not (
        DATABASE_POOL and DATABASES["default"]["ENGINE"] == "apps.core.db.postgresql"
    )
    if DATABASE_POOL:
        DATABASES["default"]["OPTIONS"]["pool"] = {
            "min_size": env.int("DATABASE_POOL_MIN_SIZE", default=2),
            "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=20),
            # Waiting longer than this for a connection fails that query. Short, because with
            # the database down every query waits this long before it fails.
            "timeout": env.float("DATABASE_POOL_TIMEOUT", default=1.0),
        }
    # Parameters sent apart from the SQL, and a statement run 5 times on a connection prepared
    # there (planned once): less CPU in PostgreSQL and in the process (decision 0024). Off for
    # PgBouncer in transaction mode, which cannot keep a connection's prepared statements.
    DATABASE_PREPARED_STATEMENTS = env.bool("DATABASE_PREPARED_STATEMENTS", default=True)
    if DATABASE_PREPARED_STATEMENTS:
        DATABASES["default"]["OPTIONS"]["server_side_binding"] = True
        DATABASES["default"]["OPTIONS"]["prepare_threshold"] = 5
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if SERVICES_MODE:
    CACHES = {
        "default": {
            "BACKEND": "apps.core.cache.SharedPoolRedisCache",
            "LOCATION": CACHE_REDIS_URL,
            "KEY_PREFIX": f"{REDIS_PREFIX}:cache",
            "OPTIONS": {
                "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
                "socket_timeout": REDIS_TIMEOUT_SECONDS,
            },
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            # channels_redis's layer with group_send_many for the event pushes (decision 0026)
            "BACKEND": "apps.core.channel_layer.BatchingRedisChannelLayer",
            "CONFIG": {
                # Receives block on the server for up to 5 s (BZPOPMIN); redis-py's own
                # default read timeout is also 5 s, which would race it and drop streams.
                "hosts": [
                    {
                        "address": CHANNELS_REDIS_URL,
                        "socket_timeout": 30,
                        "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
                    }
                ],
                "prefix": f"{REDIS_PREFIX}:channels",
                "capacity": 1000,
                "expiry": 60,
            },
        }
    }
    DRAMATIQ_BROKER = {
        "BROKER": "dramatiq.brokers.redis.RedisBroker",
        "OPTIONS": {
            "url": BROKER_REDIS_URL,
            "namespace": f"{REDIS_PREFIX}:dramatiq",
            # A worker that stops beating for this long is dead: its messages are redelivered.
            "heartbeat_timeout": env.int("WORKER_HEARTBEAT_TIMEOUT_MS", default=60_000),
            # Broker commands out of a million that also requeue dead workers' messages.
            "maintenance_chance": env.int("BROKER_MAINTENANCE_CHANCE", default=1000),
            "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
        },
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    DRAMATIQ_BROKER = {"BROKER": "dramatiq.brokers.stub.StubBroker", "OPTIONS": {}}

DRAMATIQ_BROKER["MIDDLEWARE"] = [
    "dramatiq.middleware.AgeLimit",
    "dramatiq.middleware.TimeLimit",
    "dramatiq.middleware.Callbacks",
    "dramatiq.middleware.Retries",
    "dramatiq.middleware.ShutdownNotifications",
    "django_dramatiq.middleware.DbConnectionsMiddleware",
    "apps.jobs.worker_heartbeat.WorkerHeartbeatMiddleware",
]
# Worker metrics (services mode): each `rundramatiq` serves its worker processes' metrics on
# this port through Dramatiq's Prometheus middleware (0 turns it off). See worker_metrics.py.
WORKER_METRICS_PORT = env.int("WORKER_METRICS_PORT", default=9191)
WORKER_METRICS_HOST = env.str("WORKER_METRICS_HOST", default="127.0.0.1")
WORKER_METRICS_DIR = Path(env.str("WORKER_METRICS_DIR", default=str(DATA_DIR / "worker-metrics")))
if REDIS_URL and WORKER_METRICS_PORT and sys.argv[1:2] == ["rundramatiq"]:
    worker_metrics.prepare(WORKER_METRICS_DIR, WORKER_METRICS_HOST, WORKER_METRICS_PORT)
# An idle worker polls Redis for messages, backing off up to Dramatiq's worker timeout (1 s by
# default): a job sent to an idle worker waited 0.5-0.8 s before it started. The worker
# processes rundramatiq starts read it from their environment (dramatiq.worker).
WORKER_IDLE_POLL_MS = env.int("WORKER_IDLE_POLL_MS", default=100)
if WORKER_IDLE_POLL_MS < 10:
    raise ImproperlyConfigured(
        f"WORKER_IDLE_POLL_MS must be at least 10 (milliseconds), not {WORKER_IDLE_POLL_MS}: "
        "lower values keep the worker's threads spinning."
    )
if sys.argv[1:2] == ["rundramatiq"]:
    os.environ.setdefault("dramatiq_worker_timeout", str(WORKER_IDLE_POLL_MS))
if worker_metrics.enabled():
    DRAMATIQ_BROKER["MIDDLEWARE"].append(worker_metrics.MIDDLEWARE)
DRAMATIQ_AUTODISCOVER_MODULES = ["actors"]
# Threads per worker process in the embedded mode (services mode: rundramatiq --threads).
EMBEDDED_WORKER_THREADS = env.int("EMBEDDED_WORKER_THREADS", default=2)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}
    if PRODUCTION
    else {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Uploads: files bigger than this go to a temporary file, so a batch never sits in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 256 * 1024
FILE_UPLOAD_HANDLERS = [
    "apps.uploads.handlers.SizeLimitedUploadHandler",  # counts and refuses; stores nothing
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
UPLOAD_MAX_FILES = env.int("UPLOAD_MAX_FILES", default=25)
UPLOAD_MAX_FILE_SIZE = env.int("UPLOAD_MAX_FILE_SIZE", default=20 * 1024 * 1024)
UPLOAD_MAX_PIXELS = env.int("UPLOAD_MAX_PIXELS", default=40_000_000)
DATA_UPLOAD_MAX_NUMBER_FILES = UPLOAD_MAX_FILES + 25  # refuse absurd counts before parsing them

# Jobs
JOB_HEARTBEAT_SECONDS = env.int("JOB_HEARTBEAT_SECONDS", default=10)
# A running job whose heartbeat is older than this is taken to have lost its worker.
JOB_STALE_AFTER_SECONDS = env.int("JOB_STALE_AFTER_SECONDS", default=90)
# A job queued this long gets its message sent again (in case the broker lost it).
JOB_QUEUED_RESEND_SECONDS = env.int("JOB_QUEUED_RESEND_SECONDS", default=1800)
JOB_TIME_LIMIT_SECONDS = env.int("JOB_TIME_LIMIT_SECONDS", default=30 * 60)
JOB_MAX_RETRIES = env.int("JOB_MAX_RETRIES", default=3)
FAL_KEY = env.str("FAL_KEY", default="")

# Signed download links
DOWNLOAD_LINK_MAX_AGE_SECONDS = env.int("DOWNLOAD_LINK_MAX_AGE_SECONDS", default=3600)

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_DIR = Path(env.str("LOG_DIR", default=str(DATA_DIR / "logs")))
LOG_DIR.mkdir(parents=True, exist_ok=True)
LOG_FILE_NAME = "image2model.log"
# json (default) or plain: what the console gets; the file is always JSON lines.
LOG_CONSOLE_FORMAT = env.str("LOG_CONSOLE_FORMAT", default="json")
# Warnings and errors are also stored for the admin. The test suite turns it off (records of
# one test would land in another's database state); its own tests attach the handler.
LOG_TO_DATABASE = env.bool("LOG_TO_DATABASE", default=DJANGO_ENV != "test")
_LOG_HANDLERS = ["console", "file", *(["database"] if LOG_TO_DATABASE else [])]
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "apps.core.request_id.RequestIdFilter"}},
    "formatters": {
        "json": {"()": "apps.logs.handlers.JsonLineFormatter"},
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain" if LOG_CONSOLE_FORMAT == "plain" else "json",
            "filters": ["request_id"],
        },
        # Rotated by `manage.py rotate_logs`; WatchedFileHandler reopens the file after that.
        "file": {
            "class": "logging.handlers.WatchedFileHandler",
            "filename": str(LOG_DIR / LOG_FILE_NAME),
            "formatter": "json",
            "filters": ["request_id"],
            "delay": True,
        },
        "database": {"()": "apps.logs.handlers.DatabaseHandler", "filters": ["request_id"]},
    },
    "root": {"handlers": _LOG_HANDLERS, "level": "WARNING"},
    "loggers": {
        "image2model": {
            "handlers": _LOG_HANDLERS,
            "level": LOG_LEVEL,
            "propagate": False,
        },
        "django": {
            "handlers": _LOG_HANDLERS,
            "level": "INFO",
            "propagate": False,
        },
        # Every request is logged once by image2model.requests; Django's own copy is noise.
        "django.request": {
            "handlers": ["database"] if LOG_TO_DATABASE else [],
            "level": "ERROR",
            "propagate": False,
        },
        "django.server": {"handlers": [], "level": "INFO", "propagate": False},
    },
}

PROMETHEUS_EXPORT_MIGRATIONS = False
SERVICE_NAME = "image2model-backend"
SERVICE_VERSION = "1.0.0"

# Live streams (SSE and WebSocket)
SSE_HEARTBEAT_SECONDS = env.float("SSE_HEARTBEAT_SECONDS", default=15)
STREAM_POLL_SECONDS = env.float("STREAM_POLL_SECONDS", default=5)
STREAM_DEFAULT_TIMEOUT_SECONDS = env.int("STREAM_DEFAULT_TIMEOUT_SECONDS", default=3600)
STREAM_TOKEN_MAX_AGE_SECONDS = env.int("STREAM_TOKEN_MAX_AGE_SECONDS", default=3600)

# FAL.AI generators (available only when FAL_KEY is set)
FAL_HTTP_TIMEOUT_SECONDS = env.float("FAL_HTTP_TIMEOUT_SECONDS", default=30)
FAL_POLL_INTERVAL_SECONDS = env.float("FAL_POLL_INTERVAL_SECONDS", default=1.0)
FAL_JOB_DEADLINE_SECONDS = env.int("FAL_JOB_DEADLINE_SECONDS", default=15 * 60)
FAL_MAX_DOWNLOAD_BYTES = env.int("FAL_MAX_DOWNLOAD_BYTES", default=200 * 1024 * 1024)
# Transient faults while polling or downloading are retried this many times in a row.
FAL_POLL_RETRIES = env.int("FAL_POLL_RETRIES", default=5)
FAL_RETRY_BASE_SECONDS = env.float("FAL_RETRY_BASE_SECONDS", default=0.5)  # doubles per retry
# Where fal-client sends requests; only for a local fake FAL server in tests and demos.
FAL_BASE_URL_OVERRIDE = env.str("FAL_BASE_URL_OVERRIDE", default="")
# Fallback chain: "tripo3d=trellis,trellis=hunyuan3d" runs the right-hand generator when the
# left-hand one is unavailable (its circuit is open).
GENERATOR_FALLBACKS = env.dict("GENERATOR_FALLBACKS", default={})
BREAKER_FAILURE_THRESHOLD = env.int("BREAKER_FAILURE_THRESHOLD", default=5)
BREAKER_COOLDOWN_SECONDS = env.float("BREAKER_COOLDOWN_SECONDS", default=60)

# Batch status reads answered from each web process's memory while the batch does not change,
# checked against a version in Redis on every read (decision 0025). False reads PostgreSQL on
# every status request. Writers keep the versions either way.
STATUS_CACHE = env.bool("STATUS_CACHE", default=True)

# Rate limits (django-ratelimit on the shared cache: they hold across web processes).
# "N/m" (or /s, /h, /d). A key's own rate_limit_per_minute replaces the upload limit.
RATELIMIT_ENABLE = env.bool("RATELIMIT_ENABLE", default=True)
RATE_LIMIT_UPLOADS = env.str("RATE_LIMIT_UPLOADS", default="60/m")
RATE_LIMIT_READS = env.str("RATE_LIMIT_READS", default="600/m")
RATE_LIMIT_ANONYMOUS = env.str("RATE_LIMIT_ANONYMOUS", default="120/m")
# Sign-in attempts (pages and admin): per client IP, and per user name from anywhere.
RATE_LIMIT_LOGIN_IP = env.str("RATE_LIMIT_LOGIN_IP", default="20/m")
RATE_LIMIT_LOGIN_USER = env.str("RATE_LIMIT_LOGIN_USER", default="10/10m")
# Working (not revoked, not expired) API keys one user may hold.
API_KEYS_PER_USER = env.int("API_KEYS_PER_USER", default=20)
# Anonymous limits count per client address: REMOTE_ADDR, or this META key when a proxy you
# run sets it (e.g. HTTP_X_REAL_IP). Note daphne --proxy-headers already puts the first
# X-Forwarded-For address in REMOTE_ADDR; only use that behind a proxy that overwrites it.
RATELIMIT_IP_META_KEY = env.str("RATELIMIT_IP_META_KEY", default="") or None

# CORS: an explicit allow-list. Development also allows any localhost port.
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_ALLOWED_ORIGIN_REGEXES = [] if PRODUCTION else [r"^https?://(localhost|127\.0\.0\.1)(:\d+)?$"]
CORS_URLS_REGEX = r"^/api/.*$"
CORS_ALLOW_HEADERS = [
    "authorization",
    "content-type",
    "last-event-id",
    "idempotency-key",
    "x-request-id",
]
CORS_EXPOSE_HEADERS = [
    "x-request-id",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "retry-after",
    "content-disposition",
]

# Security headers. CSP: no inline scripts anywhere; the 3D viewer needs blob: and data: images
# and workers for its textures.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:", "blob:"],
        "connect-src": ["'self'", "blob:", "data:"],
        "worker-src": ["'self'", "blob:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_HTTPONLY = True
# Honour X-Forwarded-Proto only from a proxy you run (TRUST_X_FORWARDED_PROTO=true).
if env.bool("TRUST_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
if PRODUCTION:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    # Probes call plain HTTP inside the cluster.
    SECURE_REDIRECT_EXEMPT = [r"^health$", r"^metrics$", r"^api/v1/health/"]
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
    if not SECURE_HSTS_PRELOAD:
        # Preloading is hard to undo and is each site's own decision, so it is off unless
        # asked for; the check that nags about it is silenced on purpose.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Housekeeping (manage.py housekeeping, the scheduler process)
RETENTION_HOURS = env.int("RETENTION_HOURS", default=7 * 24)  # stored files of finished jobs
LOG_ROTATE_MAX_BYTES = env.int("LOG_ROTATE_MAX_BYTES", default=50 * 1024 * 1024)
LOG_ROTATE_MAX_AGE_HOURS = env.int("LOG_ROTATE_MAX_AGE_HOURS", default=24)
LOG_ROTATE_KEEP = env.int("LOG_ROTATE_KEEP", default=10)
LOG_RETENTION_DAYS = env.int("LOG_RETENTION_DAYS", default=30)
