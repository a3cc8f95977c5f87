"""Settings come from the environment and the .env file; bad values stop start-up with a clear message.

Every settings import here runs in a fresh interpreter with the DJANGO_*,
IMAGESEARCH_*, DATABASE_*, CELERY_* and REDIS_* variables removed, its own
IMAGESEARCH_VAR_DIR and its own .env file (IMAGESEARCH_ENV_FILE), so neither
a developer's ./.env nor var/secret_key changes a result. (The rest of the
suite runs with the variables scripts/test.sh exports, such as
DJANGO_SECRET_KEY and IMAGESEARCH_VGG16_WEIGHTS; the real environment wins
over ./.env, so a .env cannot change those. It can still supply variables the
suite leaves unset, which IMAGESEARCH_ENV_FILE=/dev/null turns off.)
"""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SHOW = (
    "import django, json; from django.conf import settings; django.setup(); "
    "print(json.dumps({'db': settings.DATABASES['default']['ENGINE'], 'debug': settings.DEBUG, "
    "'storage': settings.STORAGES['default']['BACKEND'], 'broker': settings.CELERY_BROKER_URL, "
    "'eager': settings.CELERY_TASK_ALWAYS_EAGER, 'secret_key': settings.SECRET_KEY, "
    "'time_zone': settings.TIME_ZONE, 'allowed_hosts': settings.ALLOWED_HOSTS, "
    "'moderation': settings.IMAGESEARCH_MODERATION, 'batch': settings.IMAGESEARCH_EMBED_BATCH_SIZE}))"
)


def clean_environment(tmp_path, env):
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "IMAGESEARCH_", "DATABASE_", "CELERY_", "REDIS_"))
    }
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.touch()
    clean.update(IMAGESEARCH_ENV_FILE=str(empty_env_file), IMAGESEARCH_VAR_DIR=str(tmp_path / "var"))
    clean.update(env)
    return {**clean, "DJANGO_SETTINGS_MODULE": "imagesearch.settings"}


def load_settings(tmp_path, **env):
    """Import the settings in a fresh interpreter with exactly these variables; return (ok, output)."""
    proc = subprocess.run(
        [sys.executable, "-c", SHOW],
        cwd=ROOT,
        env=clean_environment(tmp_path, env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode == 0, proc.stdout + proc.stderr


def loaded(tmp_path, **env):
    ok, out = load_settings(tmp_path, **env)
    assert ok, out
    return json.loads(out.strip().splitlines()[-1])


def env_file(tmp_path, text):
    path = tmp_path / "test.env"
    path.write_text(text)
    return str(path)


def test_defaults_run_on_sqlite_with_local_storage_and_debug_off(tmp_path):
    ok, out = load_settings(tmp_path, DJANGO_SECRET_KEY="k", IMAGESEARCH_VAR_DIR=str(tmp_path))
    assert ok, out
    assert '"db": "django.db.backends.sqlite3"' in out
    assert '"debug": false' in out
    assert "FileSystemStorage" in out
    assert '"broker": "redis://127.0.0.1:6379/0"' in out
    assert '"eager": false' in out


def test_it_requires_a_secret_key_when_debug_is_off(tmp_path):
    ok, out = load_settings(tmp_path)  # no variable, no .env value, no var/secret_key
    assert not ok
    assert "DJANGO_SECRET_KEY is required" in out
    assert str(tmp_path / "var" / "secret_key") in out


def test_debug_runs_without_a_secret_key(tmp_path):
    ok, out = load_settings(tmp_path, DJANGO_DEBUG="1")
    assert ok, out
    assert '"debug": true' in out


def test_database_url_switches_to_postgresql(tmp_path):
    ok, out = load_settings(tmp_path, DJANGO_SECRET_KEY="k", DATABASE_URL="postgres://u:p@db.example:5432/images")
    assert ok, out
    assert "postgresql" in out


def test_an_s3_bucket_switches_storage_to_s3(tmp_path):
    ok, out = load_settings(tmp_path, DJANGO_SECRET_KEY="k", IMAGESEARCH_S3_BUCKET="my-bucket")
    assert ok, out
    assert "storages.backends.s3.S3Storage" in out


def test_redis_url_names_the_broker(tmp_path):
    ok, out = load_settings(tmp_path, DJANGO_SECRET_KEY="k", REDIS_URL="redis://cache.internal:6380/2")
    assert ok, out
    assert '"broker": "redis://cache.internal:6380/2"' in out


def test_malformed_values_are_rejected_with_the_variable_named(tmp_path):
    cases = {
        "IMAGESEARCH_EMBED_BATCH_SIZE": "lots",
        "DJANGO_DEBUG": "maybe",
        "IMAGESEARCH_MODERATION": "sometimes",
        "IMAGESEARCH_VGG16_WEIGHTS": "/no/such/weights.h5",
        "CELERY_BROKER_URL": "amqp://guest@localhost//",
    }
    for name, value in cases.items():
        ok, out = load_settings(tmp_path, DJANGO_SECRET_KEY="k", **{name: value})
        assert not ok, name
        assert "ImproperlyConfigured" in out and name in out, (name, out[-500:])


# --- The .env file ----------------------------------------------------------


def test_values_from_the_env_file_are_read(tmp_path):
    path = env_file(tmp_path, "DJANGO_SECRET_KEY=from-the-file\nREDIS_URL=redis://file.example:6390/3\n")
    s = loaded(tmp_path, IMAGESEARCH_ENV_FILE=path)
    assert s["secret_key"] == "from-the-file"
    assert s["broker"] == "redis://file.example:6390/3"


def test_the_environment_wins_over_the_env_file(tmp_path):
    path = env_file(tmp_path, "DJANGO_SECRET_KEY=from-the-file\nTIME_ZONE=Europe/Paris\n")
    s = loaded(tmp_path, IMAGESEARCH_ENV_FILE=path, DJANGO_SECRET_KEY="from-the-environment")
    assert s["secret_key"] == "from-the-environment"
    assert s["time_zone"] == "Europe/Paris"


def test_the_env_file_next_to_manage_py_is_read_by_default(tmp_path):
    # A copy of the project (the real ./.env is never touched): settings read BASE_DIR/.env.
    (tmp_path / "imagesearch").mkdir()
    (tmp_path / "imagesearch" / "settings.py").write_text((ROOT / "imagesearch" / "settings.py").read_text())
    (tmp_path / ".env").write_text("DJANGO_SECRET_KEY=next-to-the-code\n")
    env = clean_environment(tmp_path, {})
    del env["IMAGESEARCH_ENV_FILE"]
    code = "import sys; sys.path.insert(0, sys.argv[1]); from imagesearch import settings; print(settings.SECRET_KEY)"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "next-to-the-code"


def test_quotes_comments_and_export_parse(tmp_path):
    path = env_file(
        tmp_path,
        "# a comment line\n"
        "\n"
        "   # an indented comment\n"
        "export DJANGO_SECRET_KEY='single # quoted, $kept as is'\n"
        'DJANGO_ALLOWED_HOSTS="a.example,b.example"   # trailing comment after quotes\n'
        "TIME_ZONE=Europe/Berlin   # trailing comment on an unquoted value\n"
        "IMAGESEARCH_MODERATION=            # empty, then a comment: the default (post)\n"
        "IMAGESEARCH_EMBED_BATCH_SIZE = 8\n",
    )
    s = loaded(tmp_path, IMAGESEARCH_ENV_FILE=path)
    assert s["secret_key"] == "single # quoted, $kept as is"
    assert s["allowed_hosts"] == ["a.example", "b.example"]
    assert s["time_zone"] == "Europe/Berlin"
    assert s["moderation"] == "post"
    assert s["batch"] == 8


def test_double_quotes_unescape(tmp_path):
    path = env_file(tmp_path, r'DJANGO_SECRET_KEY="a \"b\" c\\d #e"' + "\n")
    assert loaded(tmp_path, IMAGESEARCH_ENV_FILE=path)["secret_key"] == 'a "b" c\\d #e'


def test_env_example_copied_to_env_gives_the_defaults(tmp_path):
    s = loaded(tmp_path, IMAGESEARCH_ENV_FILE=str(ROOT / ".env.example"), DJANGO_SECRET_KEY="k")
    assert s["db"] == "django.db.backends.sqlite3"
    assert s["broker"] == "redis://127.0.0.1:6379/0"
    assert s["time_zone"] == "UTC" and s["moderation"] == "post" and s["batch"] == 16
    assert s["debug"] is False and s["eager"] is False


def test_a_malformed_line_is_reported_with_file_and_line(tmp_path):
    cases = [
        "this is not an assignment",
        "2FAST=1",
        "DJANGO_SECRET_KEY='never closed",
        'DJANGO_SECRET_KEY="closed"but-then-more',
    ]
    for bad in cases:
        path = env_file(tmp_path, f"# ok\nTIME_ZONE=UTC\n{bad}\n")
        ok, out = load_settings(tmp_path, IMAGESEARCH_ENV_FILE=path, DJANGO_SECRET_KEY="k")
        assert not ok, bad
        assert "ImproperlyConfigured" in out and f"{path}:3:" in out, (bad, out[-500:])
    assert "never closed" not in out and "but-then-more" not in out  # values may be secrets: never echoed


def test_a_named_env_file_that_does_not_exist_is_an_error(tmp_path):
    ok, out = load_settings(tmp_path, IMAGESEARCH_ENV_FILE=str(tmp_path / "missing.env"), DJANGO_SECRET_KEY="k")
    assert not ok
    assert "ImproperlyConfigured" in out and "IMAGESEARCH_ENV_FILE" in out and "missing.env" in out


def test_the_env_file_can_be_turned_off_with_dev_null(tmp_path):
    s = loaded(tmp_path, IMAGESEARCH_ENV_FILE="/dev/null", DJANGO_SECRET_KEY="k")
    assert s["time_zone"] == "UTC"


# --- var/secret_key -----------------------------------------------------------


def test_var_secret_key_is_used_when_django_secret_key_is_unset(tmp_path):
    (tmp_path / "secret_key").write_text("generated-by-make-run\n")
    assert loaded(tmp_path, IMAGESEARCH_VAR_DIR=str(tmp_path))["secret_key"] == "generated-by-make-run"
    # Empty counts as unset (`DJANGO_SECRET_KEY=` in a copied .env.example).
    assert (
        loaded(tmp_path, IMAGESEARCH_VAR_DIR=str(tmp_path), DJANGO_SECRET_KEY="")["secret_key"]
        == "generated-by-make-run"
    )


def test_django_secret_key_wins_over_var_secret_key(tmp_path):
    (tmp_path / "secret_key").write_text("generated-by-make-run\n")
    s = loaded(tmp_path, IMAGESEARCH_VAR_DIR=str(tmp_path), DJANGO_SECRET_KEY="explicit")
    assert s["secret_key"] == "explicit"


def test_the_env_file_can_move_the_var_dir_holding_the_secret_key(tmp_path):
    var = tmp_path / "elsewhere"
    var.mkdir()
    (var / "secret_key").write_text("in-elsewhere")
    path = env_file(tmp_path, f"IMAGESEARCH_VAR_DIR={var}\n")
    env = clean_environment(tmp_path, {"IMAGESEARCH_ENV_FILE": path})
    del env["IMAGESEARCH_VAR_DIR"]
    proc = subprocess.run([sys.executable, "-c", SHOW], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["secret_key"] == "in-elsewhere"


# --- The shell's view: python -m imagesearch.settings --export-env -------------


def test_export_env_gives_the_shell_the_same_values(tmp_path):
    path = env_file(tmp_path, 'PORT=8123\nHOST=   # empty\nTRICKY="it\'s $HOME `x`; y"\nALREADY=from-the-file\n')
    env = clean_environment(tmp_path, {"IMAGESEARCH_ENV_FILE": path, "ALREADY": "from-the-environment"})
    script = (
        f'set -e; exports=$({shlex.quote(sys.executable)} -m imagesearch.settings --export-env); eval "$exports"; '
        'printf "%s|%s|%s|%s" "$PORT" "${HOST-unset}" "$TRICKY" "$ALREADY"'
    )
    proc = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "8123||it's $HOME `x`; y|from-the-environment"


def test_export_env_fails_on_a_malformed_file(tmp_path):
    path = env_file(tmp_path, "PORT 8000\n")
    env = clean_environment(tmp_path, {"IMAGESEARCH_ENV_FILE": path})
    proc = subprocess.run(
        [sys.executable, "-m", "imagesearch.settings", "--export-env"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert f"{path}:1:" in proc.stderr and proc.stdout == ""


def test_a_web_process_runs_numpy_on_one_blas_thread_unless_told_otherwise(tmp_path):
    show = (
        "import imagesearch.wsgi, json, os, numpy; "
        "print(json.dumps({v: os.environ.get(v) for v in ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS')}))"
    )
    env = clean_environment(tmp_path, {"DJANGO_SECRET_KEY": "x"})
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(var, None)
    run = subprocess.run([sys.executable, "-c", show], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1]) == {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    env["OPENBLAS_NUM_THREADS"] = "2"  # an operator's choice wins
    run = subprocess.run([sys.executable, "-c", show], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert json.loads(run.stdout.strip().splitlines()[-1])["OPENBLAS_NUM_THREADS"] == "2"
