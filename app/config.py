"""Configuration read from the environment.

Every variable is documented in docs/operations.md (Configuration reference;
tests/test_operations_doc.py holds the two together). With nothing set the
app runs on an SQLite file under ``instance/``, sends push to the log and runs
the scheduler inside the development server.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta

NINGBO_DISTRICTS = (
    "haishu",  # 海曙区
    "jiangbei",  # 江北区
    "beilun",  # 北仑区
    "zhenhai",  # 镇海区
    "yinzhou",  # 鄞州区
    "fenghua",  # 奉化区
    "yuyao",  # 余姚市
    "cixi",  # 慈溪市
    "ninghai",  # 宁海县
    "xiangshan",  # 象山县
)


def is_development(app) -> bool:
    """Whether ``app`` runs as a development or test instance (keys filled in, the
    production checks of app.secrets not applied)."""
    return app.config.get("APP_ENV") == "development" or app.debug or app.testing


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def env_list(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = os.environ.get(name)
    if not value:
        return default
    return tuple(item.strip() for item in value.split(",") if item.strip())


# Where development (APP_ENV=development, `make run`) starts from other defaults
# than production; an environment variable still overrides either. Only the
# rate limits differ: an app developer replaying sign-up and login journeys
# against a laptop must not wait out per-minute budgets meant for the internet.
DEVELOPMENT_DEFAULTS = {
    "RATELIMIT_AUTH_IP": "600/minute",
    "RATELIMIT_AUTH_PHONE": "120/minute",
    "RATELIMIT_USER_WRITES": "600/minute;20000/day",
    "RATELIMIT_PASSWORD": "60/minute;1000/day",
}


def env_default(name: str, production: str) -> str:
    """``name`` from the environment; unset: the development default under
    APP_ENV=development (DEVELOPMENT_DEFAULTS), else the production one."""
    value = os.environ.get(name)
    if value:
        return value
    if os.environ.get("APP_ENV", "production") == "development" and name in DEVELOPMENT_DEFAULTS:
        return DEVELOPMENT_DEFAULTS[name]
    return production


def database_url(url: str | None) -> str | None:
    """Route ``postgresql://`` URLs through psycopg 3 rather than psycopg2."""
    if url and url.startswith(("postgres://", "postgresql://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


class Config:
    # production (the default): the keys below are required and checked at start-up;
    # development (`make run`): missing keys are generated into instance/dev-keys.json.
    APP_ENV = os.environ.get("APP_ENV", "production")
    # Each key on its own, at least 32 bytes (app/secrets.py says why and checks).
    SECRET_KEY = os.environ.get("SECRET_KEY")
    JWT_SECRET_KEY = os.environ.get("JWT_SECRET_KEY")
    # Keyed hash of ID-card numbers; changing it breaks de-duplication.
    ID_HASH_KEY = os.environ.get("ID_HASH_KEY")

    SQLALCHEMY_DATABASE_URI = database_url(os.environ.get("DATABASE_URL"))
    SQLALCHEMY_ENGINE_OPTIONS: dict = {}
    # How long a web request may wait on PostgreSQL (app/database.py): to connect,
    # for a pooled connection, for a statement (server-side), and for any answer at
    # all (client-side, for a server that hangs). Jobs get JOB_STATEMENT_TIMEOUT_MS.
    DB_CONNECT_TIMEOUT_SECONDS = env_int("DB_CONNECT_TIMEOUT_SECONDS", 3)
    DB_POOL_TIMEOUT_SECONDS = float(os.environ.get("DB_POOL_TIMEOUT_SECONDS") or 3)
    DB_STATEMENT_TIMEOUT_MS = env_int("DB_STATEMENT_TIMEOUT_MS", 5000)
    DB_CLIENT_TIMEOUT_SECONDS = float(os.environ.get("DB_CLIENT_TIMEOUT_SECONDS") or 8)
    JOB_STATEMENT_TIMEOUT_MS = env_int("JOB_STATEMENT_TIMEOUT_MS", 60000)
    # A PostgreSQL streaming replica (optional) for the heavy public reads (app/replica.py):
    # skipped while down or lagging more than REPLICA_MAX_LAG_S behind the primary.
    DATABASE_REPLICA_URL = database_url(os.environ.get("DATABASE_REPLICA_URL"))
    REPLICA_MAX_LAG_S = float(os.environ.get("REPLICA_MAX_LAG_S") or 5)

    JWT_ACCESS_TOKEN_EXPIRES = timedelta(minutes=env_int("JWT_ACCESS_MINUTES", 15))
    JWT_REFRESH_TOKEN_EXPIRES = timedelta(days=env_int("JWT_REFRESH_DAYS", 30))
    JWT_TOKEN_LOCATION = ("headers",)
    JWT_ERROR_MESSAGE_KEY = "message"

    MAX_CONTENT_LENGTH = 1024 * 1024

    RATELIMIT_ENABLED = env_bool("RATELIMIT_ENABLED", True)
    RATELIMIT_STORAGE_URI = os.environ.get("RATELIMIT_STORAGE_URI", "memory://")
    RATELIMIT_HEADERS_ENABLED = True
    RATELIMIT_AUTH_IP = env_default("RATELIMIT_AUTH_IP", "30/minute")
    RATELIMIT_AUTH_PHONE = env_default("RATELIMIT_AUTH_PHONE", "10/minute")
    # Writes (POST/PUT/PATCH/DELETE) of one signed-in user, all resources together;
    # a password change has its own, tighter budget.
    RATELIMIT_USER_WRITES = env_default("RATELIMIT_USER_WRITES", "60/minute;1000/day")
    RATELIMIT_PASSWORD = env_default("RATELIMIT_PASSWORD", "5/minute;20/day")
    # Redis down or hung: count in this process's memory meanwhile (and say so in
    # the log) instead of failing requests; give up on Redis after this long.
    RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True
    RATELIMIT_SWALLOW_ERRORS = True
    RATELIMIT_STORAGE_OPTIONS = {
        "socket_timeout": float(os.environ.get("RATELIMIT_STORAGE_TIMEOUT_SECONDS") or 0.5),
        "socket_connect_timeout": float(os.environ.get("RATELIMIT_STORAGE_TIMEOUT_SECONDS") or 0.5),
    }
    # Public certificate checks (/verify/{code} and its JSON twin), per client IP.
    RATELIMIT_VERIFY_IP = os.environ.get("RATELIMIT_VERIFY_IP", "60/minute")
    # Certificates one user may issue.
    RATELIMIT_CERTIFICATE_ISSUE = os.environ.get("RATELIMIT_CERTIFICATE_ISSUE", "20/day")
    # Calendar feed fetches per feed URL, and unknown feed URLs per client IP (only
    # misses count: many users' calendar apps share a few fetching IPs).
    RATELIMIT_CALENDAR_FEED = os.environ.get("RATELIMIT_CALENDAR_FEED", "60/hour")
    RATELIMIT_CALENDAR_MISS_IP = os.environ.get("RATELIMIT_CALENDAR_MISS_IP", "120/minute")
    # Reverse proxies (load balancer, nginx) in front of the app: their
    # X-Forwarded-For/-Proto are believed this many hops deep. 0 trusts none.
    TRUSTED_PROXIES = env_int("TRUSTED_PROXIES", 0)

    ARGON2_TIME_COST = env_int("ARGON2_TIME_COST", 3)
    ARGON2_MEMORY_COST = env_int("ARGON2_MEMORY_COST", 65536)

    # Ed25519 key that signs certificates: a PEM private key or the base64 of a
    # 32-byte seed (`flask certificates keygen`). Required outside TESTING/DEBUG.
    CERTIFICATE_SIGNING_KEY = os.environ.get("CERTIFICATE_SIGNING_KEY") or None
    # Earlier signing keys' public halves (PEM or base64 of 32 bytes), comma-separated:
    # certificates they signed keep verifying after a rotation.
    CERTIFICATE_VERIFY_KEYS = os.environ.get("CERTIFICATE_VERIFY_KEYS") or None
    # The TrueType font (.ttf, or the first face of a .ttc) certificates are set in and
    # embed; unset: WenQuanYi Micro Hei from Debian's fonts-wqy-microhei.
    CERTIFICATE_FONT = os.environ.get("CERTIFICATE_FONT") or None
    # Where the public reaches this app (https://zhiyuan.example.cn): verify URLs
    # printed on certificates and calendar URLs are built on it. Unset: the request's host.
    PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL") or None

    # SMS codes (app/sms/, app/services/sms_codes.py): the provider that delivers them
    # (log: development, the code goes to the log; aliyun: the official Dysmsapi client).
    SMS_BACKEND = os.environ.get("SMS_BACKEND", "log")
    # Any server speaking the Dysmsapi SendSms call (scheme, host and port).
    SMS_ENDPOINT = os.environ.get("SMS_ENDPOINT", "https://dysmsapi.aliyuncs.com")
    ALIYUN_ACCESS_KEY_ID = os.environ.get("ALIYUN_ACCESS_KEY_ID") or None
    ALIYUN_ACCESS_KEY_SECRET = os.environ.get("ALIYUN_ACCESS_KEY_SECRET") or None
    SMS_SIGN_NAME = os.environ.get("SMS_SIGN_NAME") or None
    # An approved template with one variable, ${code}.
    SMS_TEMPLATE_CODE = os.environ.get("SMS_TEMPLATE_CODE") or None
    # One SendSms call's connect + read timeout.
    SMS_TIMEOUT_SECONDS = float(os.environ.get("SMS_TIMEOUT_SECONDS") or 5)
    # Codes the whole service sends in one day (Asia/Shanghai); past it 503 sms_unavailable.
    SMS_DAILY_BUDGET = env_int("SMS_DAILY_BUDGET", 10000)

    # The privacy policy and terms a user accepts (GET /api/v1/legal). A new
    # PRIVACY_VERSION makes every user accept it again before writing (428).
    PRIVACY_VERSION = os.environ.get("PRIVACY_VERSION") or "1"
    TERMS_VERSION = os.environ.get("TERMS_VERSION") or "1"
    PRIVACY_URL = os.environ.get("PRIVACY_URL") or None
    TERMS_URL = os.environ.get("TERMS_URL") or None
    # The cooling-off period of DELETE /me: the account is erased this many days later.
    ACCOUNT_DELETION_DAYS = env_int("ACCOUNT_DELETION_DAYS", 15)
    # Photos (app/storage/): where the phones' uploads go. local (files under
    # STORAGE_LOCAL_PATH, default <instance>/photos, served by the app) is the
    # embedded default; production refuses it unless STORAGE_LOCAL_OK=1 and runs s3.
    STORAGE_BACKEND = os.environ.get("STORAGE_BACKEND", "local")
    STORAGE_LOCAL_OK = env_bool("STORAGE_LOCAL_OK", False)
    STORAGE_LOCAL_PATH = os.environ.get("STORAGE_LOCAL_PATH") or None
    # Any S3-compatible service (Aliyun OSS, MinIO, AWS) through boto3 (app/storage/s3.py).
    S3_BUCKET = os.environ.get("S3_BUCKET") or None
    S3_ENDPOINT_URL = os.environ.get("S3_ENDPOINT_URL") or None
    S3_PUBLIC_ENDPOINT_URL = os.environ.get("S3_PUBLIC_ENDPOINT_URL") or None
    S3_REGION = os.environ.get("S3_REGION", "us-east-1")
    S3_ACCESS_KEY_ID = os.environ.get("S3_ACCESS_KEY_ID") or None
    S3_SECRET_ACCESS_KEY = os.environ.get("S3_SECRET_ACCESS_KEY") or None
    S3_ADDRESSING_STYLE = os.environ.get("S3_ADDRESSING_STYLE", "auto")

    # The districts (app/districts.py): unset = Ningbo's ten; else comma-separated codes
    # app/districts.py names, or a JSON array of {"code", "name_zh", "name_en"}
    # (inline or the path of a file). Parsed in create_app; the config then holds the codes.
    DISTRICTS = os.environ.get("DISTRICTS") or NINGBO_DISTRICTS
    # The skills vocabulary (app/skills.py): unset = the default list; else a JSON
    # array of {"code", "name_zh", "name_en"}, inline or the path of a file.
    SKILLS = os.environ.get("SKILLS")
    DEFAULT_TIMEZONE = os.environ.get("DEFAULT_TIMEZONE", "Asia/Shanghai")
    # Tests only: the app's clock (app/clock.py) runs this many days ahead of the
    # wall clock, in this process and every one it starts. Production refuses it.
    CLOCK_SHIFT_DAYS = env_int("CLOCK_SHIFT_DAYS", 0)

    # The push providers enabled, comma-separated (notifications/senders): fcm,jpush in
    # production; log (development) or memory (tests) stand in for every device.
    PUSH_BACKEND = os.environ.get("PUSH_BACKEND", "log")
    FCM_ENDPOINT = os.environ.get("FCM_ENDPOINT", "https://fcm.googleapis.com")
    FIREBASE_CREDENTIALS = os.environ.get("FIREBASE_CREDENTIALS")
    # One FCM request's timeout, and firebase-admin's own retries of 5xx answers.
    FCM_TIMEOUT_SECONDS = float(os.environ.get("FCM_TIMEOUT_SECONDS") or 10)
    FCM_SDK_RETRIES = env_int("FCM_SDK_RETRIES", 4)
    FCM_SDK_BACKOFF_SECONDS = float(os.environ.get("FCM_SDK_BACKOFF_SECONDS") or 0.5)
    # FCM requests in flight at once.
    FCM_CONCURRENCY = env_int("FCM_CONCURRENCY", 500)
    # JPush (极光推送), for phones in mainland China: the app's key and master secret,
    # the APNs environment of the iOS app (true: App Store/TestFlight builds), the
    # v3 push API's base URL, the phone makers' channel options (JSON; unset: the
    # service/system-message defaults in notifications/senders/jpush.py), one call's
    # timeout and the calls in flight at once.
    JPUSH_APP_KEY = os.environ.get("JPUSH_APP_KEY")
    JPUSH_MASTER_SECRET = os.environ.get("JPUSH_MASTER_SECRET")
    JPUSH_APNS_PRODUCTION = env_bool("JPUSH_APNS_PRODUCTION", True)
    JPUSH_ENDPOINT = os.environ.get("JPUSH_ENDPOINT", "https://api.jpush.cn")
    JPUSH_THIRD_PARTY_CHANNEL = os.environ.get("JPUSH_THIRD_PARTY_CHANNEL") or None
    JPUSH_TIMEOUT_SECONDS = float(os.environ.get("JPUSH_TIMEOUT_SECONDS") or 10)
    JPUSH_CONCURRENCY = env_int("JPUSH_CONCURRENCY", 100)
    # How long a dispatcher owns the rows it claimed before another may take them.
    PUSH_LEASE_SECONDS = env_int("PUSH_LEASE_SECONDS", 300)
    # A push that meets only transient errors is retried this long after it was written.
    PUSH_RETRY_HOURS = float(os.environ.get("PUSH_RETRY_HOURS") or 24)

    # Log lines (app/logs.py): json or text; unset, text in development and json otherwise.
    LOG_FORMAT = os.environ.get("LOG_FORMAT") or None
    LOG_LEVEL = os.environ.get("LOG_LEVEL") or "INFO"

    SCHEDULER_EMBEDDED = env_bool("SCHEDULER_EMBEDDED", False)
    # `flask scheduler run` serves its own Prometheus metrics here (0: not served).
    # Where the web app's Prometheus metrics are served (app/metrics.py): never the
    # API's own port; empty: not served.
    METRICS_ADDRESS = os.environ.get("METRICS_ADDRESS", "127.0.0.1:9100").strip()
    SCHEDULER_METRICS_PORT = env_int("SCHEDULER_METRICS_PORT", 0)
    SCHEDULER_METRICS_ADDR = os.environ.get("SCHEDULER_METRICS_ADDR", "127.0.0.1")
    # Seconds between runs of each scheduler job (app/scheduler.py has the table),
    # and the most rows one batch (one transaction) of a job moves.
    JOB_EXPIRE_POSTINGS_SECONDS = env_int("JOB_EXPIRE_POSTINGS_SECONDS", 60)
    JOB_RELEASE_OVERDUE_CLAIMS_SECONDS = env_int("JOB_RELEASE_OVERDUE_CLAIMS_SECONDS", 60)
    JOB_REMIND_UPCOMING_SECONDS = env_int("JOB_REMIND_UPCOMING_SECONDS", 60)
    JOB_ALERT_NEARBY_SECONDS = env_int("JOB_ALERT_NEARBY_SECONDS", 5)
    JOB_DISPATCH_PUSH_SECONDS = env_int("JOB_DISPATCH_PUSH_SECONDS", 2)
    JOB_PURGE_SECONDS = env_int("JOB_PURGE_SECONDS", 86400)
    JOB_ERASE_ACCOUNTS_SECONDS = env_int("JOB_ERASE_ACCOUNTS_SECONDS", 600)
    JOB_PURGE_PHOTOS_SECONDS = env_int("JOB_PURGE_PHOTOS_SECONDS", 300)
    JOB_BATCH_SIZE = env_int("JOB_BATCH_SIZE", 1000)

    # Open wish claims (status active) one volunteer may hold at once.
    ACTIVE_WISH_CLAIM_LIMIT = env_int("ACTIVE_WISH_CLAIM_LIMIT", 3)
    # A fulfilled claim nobody confirms is confirmed by the scheduler after this many days.
    AUTO_CONFIRM_DAYS = env_int("AUTO_CONFIRM_DAYS", 7)
    # A wish's nearby alert goes to party members first; everyone else in range hears of
    # it this many minutes later if it is still unclaimed.
    PARTY_FIRST_MINUTES = env_int("PARTY_FIRST_MINUTES", 30)
    # An event's claims are settled this many hours after its end (checked out, no-show).
    EVENT_SETTLE_HOURS = env_int("EVENT_SETTLE_HOURS", 24)

    # ASCII, so generated client packages get a name pip accepts.
    API_TITLE = "Yong Volunteer API"
    API_VERSION = "v1"
    API_SPEC_OPTIONS = {
        "info": {
            "description": (
                "甬·志愿 (Yong Volunteer): the JSON API of a volunteer and wish-matching app for Ningbo — "
                "micro-wishes, projects, charity activities, services and energy rewards (五微). "
                "Sign in with `POST /api/v1/auth/login` and send `Authorization: Bearer <access_token>`; "
                "errors are one envelope (`Error`) whose `error` slug is the contract. "
                "The app developer's guide is docs/app-guide.md in the repository."
            )
        }
    }
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/api/v1"
    OPENAPI_JSON_PATH = "openapi.json"
    OPENAPI_SWAGGER_UI_PATH = "docs"
    OPENAPI_SWAGGER_UI_URL = "/api/v1/docs/static/"

    TESTING = False


class TestConfig(Config):
    TESTING = True
    APP_ENV = "development"
    # Generated when the tests start: a key written here would be published
    # (and production refuses every value that appears in the repository).
    SECRET_KEY = secrets.token_urlsafe(48)
    JWT_SECRET_KEY = secrets.token_urlsafe(48)
    ID_HASH_KEY = secrets.token_urlsafe(48)
    SQLALCHEMY_DATABASE_URI = database_url(os.environ.get("TEST_DATABASE_URL"))
    RATELIMIT_ENABLED = False
    RATELIMIT_STORAGE_URI = "memory://"
    ARGON2_TIME_COST = 1
    ARGON2_MEMORY_COST = 1024
    # The race tests fire hundreds of requests at once, on a machine running other test
    # workers: they wait for a pooled connection rather than answer 503 (test_health sets
    # its own timeout where the timeout is what it tests).
    DB_POOL_TIMEOUT_SECONDS = 30.0
    PUSH_BACKEND = "memory"
    SMS_BACKEND = "memory"
    DATABASE_REPLICA_URL = None  # tests/test_replica.py starts its own
    STORAGE_BACKEND = "local"
    SCHEDULER_EMBEDDED = False
    METRICS_ADDRESS = ""  # a test that serves them picks a free port
