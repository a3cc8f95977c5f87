"""
Settings for imagesearch.

Every value comes from the environment, and every default runs on a fresh
checkout: SQLite under ./var, media on local disk, Redis on localhost.
This is the only module that reads os.environ; .env.example lists every
variable. A malformed value stops start-up with ImproperlyConfigured.

Every entry point (manage.py, wsgi, the Celery workers and beat, and the shell
scripts through `python -m imagesearch.settings --export-env`) imports this
module, so all of them read the same `.env` file (IMAGESEARCH_ENV_FILE names
another one); the real environment always wins over the file.
"""

import os
import re
import shlex
import sys
from pathlib import Path
from urllib.parse import urlparse

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name, default=""):
    # Empty counts as unset, as in the other helpers: `cp .env.example .env`
    # leaves many variables empty, and each one must then mean its default.
    return os.environ.get(name, "").strip() or default


def env_bool(name, default=False):
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no, on/off).")


def env_int(name, default, minimum=None, maximum=None):
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number.") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ImproperlyConfigured(f"{name}={value} is outside {minimum}..{maximum}.")
    return value


def env_float(name, default, minimum=None):
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below {minimum}.")
    return value


def env_list(name, default):
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


# --- The .env file ----------------------------------------------------------

_ENV_LINE = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)")
_DOUBLE_QUOTE_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "$": "$"}


def parse_env_file(path):
    """Return the KEY=VALUE pairs of a .env file, in order.

    Lines are `KEY=VALUE`, optionally prefixed by `export `. Blank lines and lines
    starting with `#` are skipped. An unquoted value ends at a ` #` comment and is
    stripped (`KEY=   # note` is empty). A value in single quotes is taken as is;
    in double quotes, `\\"`, `\\\\`, `\\n`, `\\t` and `\\$` are unescaped. Nothing is
    expanded (`$OTHER` stays as written). Anything else is an error naming the file
    and line, never the value (it may be a secret).
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImproperlyConfigured(f"{path}: not UTF-8 text ({exc.reason}).") from None
    values = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _ENV_LINE.fullmatch(stripped)
        if not match:
            raise ImproperlyConfigured(f"{path}:{number}: expected KEY=VALUE (a variable name, then '=').")
        name, raw = match.group(1), match.group(2)
        if raw.lstrip()[:1] in {'"', "'"}:
            value, rest = _quoted(raw.lstrip(), path, number, name)
            if rest.strip() and not re.match(r"\s+#", rest):
                raise ImproperlyConfigured(f"{path}:{number}: {name}: unexpected text after the closing quote.")
        else:
            comment = re.search(r"\s#", raw)
            value = (raw[: comment.start()] if comment else raw).strip()
        values[name] = value
    return values


def _quoted(raw, path, number, name):
    """Split a value starting with a quote into (value, text after the closing quote)."""
    quote, i = raw[0], 1
    out: list[str] = []
    while i < len(raw):
        char = raw[i]
        if char == quote:
            return "".join(out), raw[i + 1 :]
        if quote == '"' and char == "\\" and i + 1 < len(raw) and raw[i + 1] in _DOUBLE_QUOTE_ESCAPES:
            out.append(_DOUBLE_QUOTE_ESCAPES[raw[i + 1]])
            i += 2
            continue
        out.append(char)
        i += 1
    raise ImproperlyConfigured(
        f"{path}:{number}: {name}: the quoted value has no closing {quote} (values are one line)."
    )


def env_file_path():
    """The .env file to read and whether it was named explicitly (then it must exist)."""
    named = env_str("IMAGESEARCH_ENV_FILE")
    return (Path(named), True) if named else (BASE_DIR / ".env", False)


def load_env_file():
    """Put the .env file's values into os.environ unless already set there; return them."""
    path, named = env_file_path()
    try:
        values = parse_env_file(path)
    except FileNotFoundError:
        if named:
            raise ImproperlyConfigured(f"IMAGESEARCH_ENV_FILE={str(path)!r}: no such file.") from None
        return {}
    except OSError as exc:
        raise ImproperlyConfigured(f"{path}: cannot be read ({exc.strerror}).") from None
    for name, value in values.items():
        os.environ.setdefault(name, value)  # the real environment wins
    return values


if __name__ == "__main__":
    # `python -m imagesearch.settings --export-env` prints the file's values as
    # shell `export` lines (those the environment does not set already), so the
    # scripts (scripts/run.sh, scripts/proc.sh) see the same PORT, HOST,
    # REDIS_URL and IMAGESEARCH_VAR_DIR as the Python processes.
    if sys.argv[1:] != ["--export-env"]:
        sys.exit("usage: python -m imagesearch.settings --export-env")
    preset = set(os.environ)
    try:
        _values = load_env_file()
    except ImproperlyConfigured as exc:
        sys.exit(f"ImproperlyConfigured: {exc}")
    for _name, _value in _values.items():
        if _name not in preset:
            print(f"export {_name}={shlex.quote(_value)}")
    sys.exit(0)

load_env_file()

# --- Core -----------------------------------------------------------------

DEBUG = env_bool("DJANGO_DEBUG", False)
VAR_DIR = Path(env_str("IMAGESEARCH_VAR_DIR") or BASE_DIR / "var")
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    # `make run` writes a generated key to var/secret_key once; every entry point
    # (manage.py, workers, beat) then finds it here with nothing exported.
    _secret_key_file = VAR_DIR / "secret_key"
    try:
        SECRET_KEY = _secret_key_file.read_text().strip()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ImproperlyConfigured(f"{_secret_key_file} cannot be read ({exc.strerror}).") from None
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is required when DJANGO_DEBUG is off: set it in the environment or in .env, "
            f"or write one to {VAR_DIR / 'secret_key'} (`make run` creates var/secret_key)."
        )
    SECRET_KEY = "insecure-debug-only-key"  # only ever used with DEBUG on

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "gallery.apps.GalleryConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "gallery.auth.AuthenticationMiddleware",  # Django's, reading the user with the session
    # After authentication, so the "too large" page knows who is signed in; before
    # CSRF, whose check reads the body this middleware refuses to read.
    "gallery.middleware.RequestSizeLimitMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "imagesearch.urls"

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
                "gallery.context_processors.site_status",
            ],
        },
    },
]

WSGI_APPLICATION = "imagesearch.wsgi.application"
ASGI_APPLICATION = "imagesearch.asgi.application"

# --- Database ---------------------------------------------------------------

DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
try:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
except Exception as exc:  # dj_database_url raises several types for a bad URL
    raise ImproperlyConfigured(f"DATABASE_URL={DATABASE_URL!r} cannot be parsed: {exc}") from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web process and the worker share the file: wait for a lock instead of
    # failing, and keep the test database on disk so a worker process sees it.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {"timeout": 30, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
elif env_bool("DATABASE_PREPARED_STATEMENTS", True):
    # The reads every request makes (gallery/search/reads.py) become prepared statements
    # after a few uses: PostgreSQL then plans them once per connection, not on
    # every request. (Django's own queries are never prepared.) Turn off behind a
    # pooler that cannot keep them: PgBouncer in transaction mode before 1.21.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("prepare_threshold", 5)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

# --- Email (password reset) ------------------------------------------------------
# With no EMAIL_HOST the messages are printed on the web process's console (its
# log), so a self-hosted install can reset a password out of the box; set
# EMAIL_HOST (and the rest) to send them through an SMTP server.
EMAIL_HOST = env_str("EMAIL_HOST", "")
EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 20, minimum=1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "imagesearch <noreply@localhost>")
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend"
)
# How long a reset link works (Django's default is 3 days; an hour is enough to read a message).
PASSWORD_RESET_TIMEOUT = env_int("PASSWORD_RESET_TIMEOUT", 3600, minimum=60)

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Static and media -------------------------------------------------------

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("IMAGESEARCH_STATIC_ROOT") or BASE_DIR / "staticfiles")

MEDIA_ROOT = Path(env_str("IMAGESEARCH_MEDIA_ROOT") or VAR_DIR / "media")
# Media is never served from a public prefix: every file goes through a
# permission-checked view (local disk) or a short-lived signed URL (S3).
MEDIA_URL = "/media-direct/"

S3_BUCKET = env_str("IMAGESEARCH_S3_BUCKET")
if S3_BUCKET:
    _s3_options = {
        "bucket_name": S3_BUCKET,
        "default_acl": None,
        "querystring_auth": True,
        "querystring_expire": env_int("IMAGESEARCH_S3_URL_EXPIRE", 300, minimum=10),
        "file_overwrite": False,
        # Signature V4: the URL states its lifetime (X-Amz-Expires); V2 is refused by newer regions.
        "signature_version": "s3v4",
    }
    for _opt, _var in [
        ("region_name", "AWS_S3_REGION_NAME"),
        ("endpoint_url", "AWS_S3_ENDPOINT_URL"),
        ("location", "IMAGESEARCH_S3_PREFIX"),
    ]:
        if env_str(_var):
            _s3_options[_opt] = env_str(_var)
    # Credentials: boto3 reads AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / roles itself.
    _default_storage = {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": _s3_options}
else:
    _default_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT), "base_url": MEDIA_URL},
    }
STORAGES = {
    "default": _default_storage,
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = True  # `make run` works without collectstatic

# --- Uploads ----------------------------------------------------------------

IMAGESEARCH_MAX_UPLOAD_BYTES = env_int("IMAGESEARCH_MAX_UPLOAD_MB", 25, minimum=1) * 1024 * 1024
IMAGESEARCH_MAX_FILES_PER_REQUEST = env_int("IMAGESEARCH_MAX_FILES_PER_REQUEST", 100, minimum=1)
IMAGESEARCH_MAX_PIXELS = env_int("IMAGESEARCH_MAX_PIXELS", 80_000_000, minimum=1_000_000)
DATA_UPLOAD_MAX_NUMBER_FILES = IMAGESEARCH_MAX_FILES_PER_REQUEST
# Django bounds neither the body of a file upload nor its temporary files:
# a request declaring more than this is refused before its body is read (413).
IMAGESEARCH_MAX_REQUEST_BYTES = env_int("IMAGESEARCH_MAX_REQUEST_MB", 256, minimum=1) * 1024 * 1024
# Whole-request ceiling; the per-file limit is checked per file with a clear message.
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# --- Embeddings and index ---------------------------------------------------

IMAGESEARCH_VGG16_WEIGHTS = env_str("IMAGESEARCH_VGG16_WEIGHTS", "imagenet") or "imagenet"
if IMAGESEARCH_VGG16_WEIGHTS not in {"imagenet", "none"}:
    if not Path(IMAGESEARCH_VGG16_WEIGHTS).is_file():
        raise ImproperlyConfigured(
            f"IMAGESEARCH_VGG16_WEIGHTS={IMAGESEARCH_VGG16_WEIGHTS!r}: expected 'imagenet', 'none' "
            "or the path of an existing weights file "
            "(vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5)."
        )
# The other keras.applications backbones, each with its own weights (same policy as VGG16).
IMAGESEARCH_RESNET50_WEIGHTS = env_str("IMAGESEARCH_RESNET50_WEIGHTS", "imagenet") or "imagenet"
IMAGESEARCH_INCEPTIONV3_WEIGHTS = env_str("IMAGESEARCH_INCEPTIONV3_WEIGHTS", "imagenet") or "imagenet"
IMAGESEARCH_MOBILENETV3_WEIGHTS = env_str("IMAGESEARCH_MOBILENETV3_WEIGHTS", "imagenet") or "imagenet"
for _name in ("IMAGESEARCH_RESNET50_WEIGHTS", "IMAGESEARCH_INCEPTIONV3_WEIGHTS", "IMAGESEARCH_MOBILENETV3_WEIGHTS"):
    _value = globals()[_name]
    if _value not in {"imagenet", "none"} and not Path(_value).is_file():
        raise ImproperlyConfigured(
            f"{_name}={_value!r}: expected 'imagenet', 'none' or the path of an existing weights file."
        )
# The embedding model: vgg16, resnet50, inceptionv3, mobilenetv3, or the dotted
# path of a gallery.embedding.backbones.base.Backbone subclass. Changing it (or
# its weights) and restarting switches the site without emptying search.
IMAGESEARCH_BACKBONE = env_str("IMAGESEARCH_BACKBONE", "vgg16") or "vgg16"
# Arithmetic of the Keras backbones: auto (bf16 where the CPU has avx512_bf16 or
# amx_bf16, fp32 elsewhere), fp32, bf16, or int8 (opt-in, its own embedding
# version). gallery.embedding.backbones.precision resolves it.
IMAGESEARCH_PRECISION = env_str("IMAGESEARCH_PRECISION", "auto").lower()
if IMAGESEARCH_PRECISION not in {"auto", "fp32", "bf16", "int8"}:
    raise ImproperlyConfigured(
        f"IMAGESEARCH_PRECISION={IMAGESEARCH_PRECISION!r} is not a precision: use one of auto, fp32, bf16, int8."
    )
IMAGESEARCH_EMBED_BATCH_SIZE = env_int("IMAGESEARCH_EMBED_BATCH_SIZE", 16, minimum=1, maximum=256)
IMAGESEARCH_RANDOM_SEED = env_int("IMAGESEARCH_RANDOM_SEED", 1234)
IMAGESEARCH_INDEX_DIR = Path(env_str("IMAGESEARCH_INDEX_DIR") or VAR_DIR / "index")
# Each index build measures its own recall@10 against exact search and widens
# its search until it reaches this (gallery.search.calibration).
IMAGESEARCH_TARGET_RECALL = env_float("IMAGESEARCH_TARGET_RECALL", 0.99, minimum=0.5)
if IMAGESEARCH_TARGET_RECALL > 1.0:
    raise ImproperlyConfigured("IMAGESEARCH_TARGET_RECALL is a share of the true 10 nearest: 0.5 .. 1.")
# Images per gallery whose generated copies the embed worker embeds, so the
# near-duplicate band is fitted to this gallery (gallery.services.probes); 0: off.
IMAGESEARCH_COPY_PROBES = env_int("IMAGESEARCH_COPY_PROBES", 24, minimum=0, maximum=1000)
# Days a trashed image stays restorable before beat deletes it and its files for good.
IMAGESEARCH_TRASH_DAYS = env_int("IMAGESEARCH_TRASH_DAYS", 30, minimum=1, maximum=3650)
# A ZIP of selected originals holds at most this many images and this many MB (summed file sizes).
IMAGESEARCH_ZIP_MAX_IMAGES = env_int("IMAGESEARCH_ZIP_MAX_IMAGES", 500, minimum=1)
IMAGESEARCH_ZIP_MAX_MB = env_int("IMAGESEARCH_ZIP_MAX_MB", 2048, minimum=1)
# Days an owner's export (embeddings, index snapshot, result list) stays downloadable before beat deletes it.
IMAGESEARCH_EXPORT_DAYS = env_int("IMAGESEARCH_EXPORT_DAYS", 7, minimum=1, maximum=365)
# How the index worker lays a gallery out in 2-D after each build (gallery.analysis.layout):
# pca (fast, deterministic), umap (needs umap-learn) or tsne (needs scikit-learn).
IMAGESEARCH_MAP_METHOD = env_str("IMAGESEARCH_MAP_METHOD", "pca").lower()
if IMAGESEARCH_MAP_METHOD not in {"pca", "umap", "tsne"}:
    raise ImproperlyConfigured("IMAGESEARCH_MAP_METHOD must be 'pca', 'umap' or 'tsne'.")
# Images one multi-image query may name (positives and negatives together).
IMAGESEARCH_MAX_QUERY_IMAGES = env_int("IMAGESEARCH_MAX_QUERY_IMAGES", 100, minimum=1, maximum=1000)
IMAGESEARCH_INDEX_REBUILD_SECONDS = env_float("IMAGESEARCH_INDEX_REBUILD_SECONDS", 30.0, minimum=1.0)
IMAGESEARCH_RECONCILE_SECONDS = env_float("IMAGESEARCH_RECONCILE_SECONDS", 60.0, minimum=1.0)
# An image left in pending/processing longer than this is queued again.
IMAGESEARCH_STUCK_AFTER_SECONDS = env_float("IMAGESEARCH_STUCK_AFTER_SECONDS", 600.0, minimum=1.0)
IMAGESEARCH_DEFAULT_K = 12
IMAGESEARCH_MAX_K = 100
# A search with an outside picture: the web process decodes it and waits this long
# for the query worker (the `query` queue, model loaded at start) to embed it.
IMAGESEARCH_QUERY_TIMEOUT_SECONDS = env_float("IMAGESEARCH_QUERY_TIMEOUT_SECONDS", 15.0, minimum=0.1)
# Its results have a signed GET URL valid this long; older stored queries are purged.
IMAGESEARCH_QUERY_TTL_SECONDS = env_int("IMAGESEARCH_QUERY_TTL_SECONDS", 86400, minimum=60)
# Embed outside pictures in this process instead of asking the query worker. Eager mode
# does it anyway (no workers); unit tests turn it on (their backbone is a fake).
IMAGESEARCH_QUERY_IN_PROCESS = False

# pre: new uploads are visible to their owner and staff only until approved.
# post: new uploads are visible at once, until rejected.
IMAGESEARCH_MODERATION = env_str("IMAGESEARCH_MODERATION", "post").lower()
if IMAGESEARCH_MODERATION not in {"pre", "post"}:
    raise ImproperlyConfigured("IMAGESEARCH_MODERATION must be 'pre' or 'post'.")
# Auto-flag a new image whose cosine distance (0..2) to a rejected image of the same
# gallery is below this; 0 turns auto-flagging off. Near-duplicates lie well under 0.05.
IMAGESEARCH_AUTOFLAG_DISTANCE = env_float("IMAGESEARCH_AUTOFLAG_DISTANCE", 0.0, minimum=0.0)
if IMAGESEARCH_AUTOFLAG_DISTANCE > 2.0:
    raise ImproperlyConfigured("IMAGESEARCH_AUTOFLAG_DISTANCE is a cosine distance: 0 (off) .. 2.")

# --- Celery -----------------------------------------------------------------

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or REDIS_URL
if urlparse(CELERY_BROKER_URL).scheme not in {"redis", "rediss", "memory"}:
    raise ImproperlyConfigured(f"CELERY_BROKER_URL={CELERY_BROKER_URL!r} must be a redis:// URL.")
CELERY_RESULT_BACKEND = None
# Eager mode runs tasks inside the web process: for a machine with no Redis.
# `make run` turns it on (with a banner in every page) only when no Redis can be had.
CELERY_TASK_ALWAYS_EAGER = env_bool("IMAGESEARCH_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "gallery.tasks.embed_images": {"queue": "embed"},
    "gallery.tasks.rebuild_index": {"queue": "index"},
    "gallery.tasks.probe_copies": {"queue": "embed"},
    "gallery.tasks.find_duplicates": {"queue": "index"},
    "gallery.tasks.build_export": {"queue": "index"},
    "gallery.tasks.build_map": {"queue": "index"},
    "gallery.tasks.embed_query": {"queue": "query"},
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A task published while Redis is down must not hang the request: fail fast,
# the reconciler re-enqueues the images once the broker is back.
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 2, "socket_timeout": 10}
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
# Each beat message expires after one period: while no worker runs, they do not
# pile up in the queue (the next period sends a fresh one).
CELERY_BEAT_SCHEDULE = {
    "rebuild-stale-indexes": {
        "task": "gallery.tasks.rebuild_stale_indexes",
        "schedule": IMAGESEARCH_INDEX_REBUILD_SECONDS,
        "options": {"expires": IMAGESEARCH_INDEX_REBUILD_SECONDS},
    },
    "reconcile-stuck-images": {
        "task": "gallery.tasks.reconcile_stuck_images",
        "schedule": IMAGESEARCH_RECONCILE_SECONDS,
        "options": {"expires": IMAGESEARCH_RECONCILE_SECONDS},
    },
    "purge-outside-queries": {
        "task": "gallery.tasks.purge_outside_queries",
        "schedule": 3600.0,
        "options": {"expires": 3600.0},
    },
    "purge-trash": {
        "task": "gallery.tasks.purge_trash",
        "schedule": 3600.0,
        "options": {"expires": 3600.0},
    },
    "purge-exports": {
        "task": "gallery.tasks.purge_exports",
        "schedule": 600.0,
        "options": {"expires": 600.0},
    },
}

# --- Logging ----------------------------------------------------------------

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO").upper()},
}

# --- Security (production) --------------------------------------------------

SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# Django's database sessions and model backend, except that the session row names
# its user and one query reads both (gallery/auth.py): the same checks, less CPU.
# The backend's dotted path is stored in every signed-in session: renaming it
# signs everybody out.
SESSION_ENGINE = "gallery.auth"
AUTHENTICATION_BACKENDS = ["gallery.auth.ModelBackend"]
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", False)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", False)
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 0, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", False)
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", False)
    SECURE_PROXY_SSL_HEADER = (
        ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("DJANGO_BEHIND_TLS_PROXY", False) else None
    )
