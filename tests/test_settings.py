"""Settings come from the environment; bad values stop start-up with a clear message."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_settings(**env):
    """Import the settings in a fresh interpreter with exactly these variables; return (ok, output)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "IMAGESEARCH_", "DATABASE_URL", "CELERY_", "REDIS_"))}
    clean.update(env)
    code = (
        "import django, json; from django.conf import settings; django.setup(); "
        "print(json.dumps({'db': settings.DATABASES['default']['ENGINE'], 'debug': settings.DEBUG, "
        "'storage': settings.STORAGES['default']['BACKEND'], 'broker': settings.CELERY_BROKER_URL, "
        "'eager': settings.CELERY_TASK_ALWAYS_EAGER}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**clean, "DJANGO_SETTINGS_MODULE": "imagesearch.settings"},
        capture_output=True, text=True, timeout=60,
    )
    return proc.returncode == 0, proc.stdout + proc.stderr


def test_defaults_run_on_sqlite_with_local_storage_and_debug_off(tmp_path):
    ok, out = load_settings(DJANGO_SECRET_KEY="k", IMAGESEARCH_VAR_DIR=str(tmp_path))
    assert ok, out
    assert '"db": "django.db.backends.sqlite3"' in out
    assert '"debug": false' in out
    assert "FileSystemStorage" in out
    assert '"broker": "redis://127.0.0.1:6379/0"' in out
    assert '"eager": false' in out


def test_it_requires_a_secret_key_when_debug_is_off():
    ok, out = load_settings()
    assert not ok
    assert "DJANGO_SECRET_KEY is required" in out


def test_debug_runs_without_a_secret_key():
    ok, out = load_settings(DJANGO_DEBUG="1")
    assert ok, out
    assert '"debug": true' in out


def test_database_url_switches_to_postgresql():
    ok, out = load_settings(DJANGO_SECRET_KEY="k", DATABASE_URL="postgres://u:p@db.example:5432/images")
    assert ok, out
    assert "postgresql" in out


def test_an_s3_bucket_switches_storage_to_s3():
    ok, out = load_settings(DJANGO_SECRET_KEY="k", IMAGESEARCH_S3_BUCKET="my-bucket")
    assert ok, out
    assert "storages.backends.s3.S3Storage" in out


def test_redis_url_names_the_broker():
    ok, out = load_settings(DJANGO_SECRET_KEY="k", REDIS_URL="redis://cache.internal:6380/2")
    assert ok, out
    assert '"broker": "redis://cache.internal:6380/2"' in out


def test_malformed_values_are_rejected_with_the_variable_named():
    cases = {
        "IMAGESEARCH_EMBED_BATCH_SIZE": "lots",
        "DJANGO_DEBUG": "maybe",
        "IMAGESEARCH_MODERATION": "sometimes",
        "IMAGESEARCH_VGG16_WEIGHTS": "/no/such/weights.h5",
        "CELERY_BROKER_URL": "amqp://guest@localhost//",
    }
    for name, value in cases.items():
        ok, out = load_settings(DJANGO_SECRET_KEY="k", **{name: value})
        assert not ok, name
        assert "ImproperlyConfigured" in out and name in out, (name, out[-500:])
