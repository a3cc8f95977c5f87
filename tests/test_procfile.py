"""The Procfile is the one list of processes: every way of starting the app runs its commands.

`make run` (scripts/run.sh) and `make web|worker|query-worker|index-worker|beat` go through
scripts/proc.sh, which reads the Procfile; docker-compose.yml and the Dockerfile
cannot read it, so their commands are compared with it here; the README shows it.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
NAMES = ["web", "worker", "query-worker", "index-worker", "beat"]
ENTRY = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")


def procfile(path=ROOT / "Procfile"):
    entries = {}
    for line in path.read_text().splitlines():
        match = ENTRY.match(line)
        if match:
            assert match.group(1) not in entries, f"{match.group(1)} twice in the Procfile"
            entries[match.group(1)] = match.group(2)
    return entries


def test_the_procfile_lists_the_five_processes():
    entries = procfile()
    assert list(entries) == NAMES
    assert entries["web"].startswith("gunicorn imagesearch.wsgi --bind ${HOST:-127.0.0.1}:${PORT:-8000} ")
    assert entries["worker"].startswith("celery -A imagesearch worker --pool solo -Q embed ")
    assert entries["query-worker"].startswith("celery -A imagesearch worker --pool solo -Q query ")
    assert entries["index-worker"].startswith("celery -A imagesearch worker --concurrency 1 -Q index,default ")
    assert entries["beat"].startswith("celery -A imagesearch beat ")
    for line in (ROOT / "Procfile").read_text().splitlines():
        assert not line.strip() or line.startswith("#") or ENTRY.match(line), line


def test_docker_compose_runs_the_same_commands():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name, command in procfile().items():
        assert name in services, f"no {name} service in docker-compose.yml"
        argv = services[name]["command"]
        assert isinstance(argv, list) and argv[:2] == ["sh", "-c"] and len(argv) == 3, (name, argv)
        script = argv[2].replace("$$", "$")  # `$$` is compose's escape for a `$` left to the container's shell
        if name == "web":
            assert script == f"python manage.py migrate --noinput && exec {command}"
        else:
            assert script == f"exec {command}", name
    # The same commands, so the containers' differences are their environment: gunicorn
    # listens on every interface there (and beat's file goes to the image's /data).
    app = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["x-app"]
    assert app["environment"]["HOST"] == "0.0.0.0"
    assert all(services[name]["environment"]["HOST"] == "0.0.0.0" for name in NAMES)


def test_the_dockerfile_runs_the_web_entry():
    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.M).group(1))
    assert cmd == ["sh", "-c", f"exec {procfile()['web']}"]
    assert re.search(r"^\s+HOST=0\.0\.0\.0\b", dockerfile, re.M)
    assert re.search(r"^\s+IMAGESEARCH_VAR_DIR=/data\b", dockerfile, re.M)


def makefile_recipe(target):
    match = re.search(rf"^{re.escape(target)}:[^\n]*\n((?:\t[^\n]*\n)+)", (ROOT / "Makefile").read_text(), re.M)
    assert match, f"no {target} target in the Makefile"
    return match.group(1).strip()


def test_the_makefile_targets_run_the_procfile_entries():
    for name in NAMES:
        assert makefile_recipe(name) == f"bash scripts/proc.sh {name}"
    assert makefile_recipe("run") == "bash scripts/run.sh"
    makefile = (ROOT / "Makefile").read_text()
    assert "gunicorn" not in makefile and "celery" not in makefile  # the commands live in the Procfile only


def test_run_sh_starts_every_procfile_process_through_proc_sh():
    run = (ROOT / "scripts" / "run.sh").read_text()
    assert "source scripts/proc.sh" in run
    assert re.search(r'for name in \$\(procfile_names\); do\n.*\n\s+start bash scripts/proc.sh "\$name"', run)
    assert "gunicorn imagesearch" not in run and "celery -A" not in run  # no command of its own


def test_proc_sh_reads_the_procfile():
    script = "source scripts/proc.sh && procfile_names && procfile_command web && procfile_command beat"
    proc = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    entries = procfile()
    assert proc.stdout.splitlines() == [*NAMES, entries["web"], entries["beat"]]
    proc = subprocess.run(["bash", "scripts/proc.sh", "nosuch"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "no process 'nosuch' in the Procfile (it has: web worker query-worker index-worker beat)" in proc.stderr


def test_proc_sh_runs_the_entry_with_the_venv_on_path_and_env_loaded(tmp_path):
    # A copy of the repository's layout around the real scripts/proc.sh and settings,
    # with a Procfile of its own and a .venv whose python runs this interpreter.
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "proc.sh", tmp_path / "scripts" / "proc.sh")
    (tmp_path / "imagesearch").symlink_to(ROOT / "imagesearch")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    python = tmp_path / ".venv" / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    (tmp_path / "Procfile").write_text(
        "# a comment\n"
        'show: echo "port=${PORT:-8000} host=${HOST:-127.0.0.1} from_file=$FROM_FILE wins=$WINS python=$(command -v python)"\n'
    )
    env_file = tmp_path / "test.env"
    env_file.write_text("PORT=8123\nFROM_FILE='a value # with a hash'\nWINS=the-file\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "IMAGESEARCH_", "PORT", "HOST"))}
    env.update(IMAGESEARCH_ENV_FILE=str(env_file), WINS="the-environment", PATH="/usr/bin:/bin")
    proc = subprocess.run(
        ["bash", str(tmp_path / "scripts" / "proc.sh"), "show"],
        cwd="/",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.strip()
    assert out == (
        f"port=8123 host=127.0.0.1 from_file=a value # with a hash wins=the-environment python={tmp_path}/.venv/bin/python"
    ), out
    proc = subprocess.run(
        ["bash", "scripts/proc.sh", "show"],
        cwd=tmp_path,
        env={**env, "IMAGESEARCH_ENV_FILE": str(tmp_path / "missing")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and "IMAGESEARCH_ENV_FILE" in proc.stderr and "port=" not in proc.stdout


def test_the_readme_lists_the_procfile_processes():
    readme = (ROOT / "README.md").read_text()
    for name, command in procfile().items():
        assert f"{name}: {command}" in readme, f"the README does not show the Procfile's {name} entry"
        assert f"make {name}" in readme
    assert "`PORT`" in readme and "`HOST`" in readme
