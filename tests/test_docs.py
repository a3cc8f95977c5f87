"""The documentation matches the code: every variable settings.py reads is documented."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def variables_read_by_settings():
    source = (ROOT / "imagesearch" / "settings.py").read_text()
    names = set(re.findall(r'env_(?:str|bool|int|float|list)\(\s*"([A-Z0-9_]+)"', source))
    names |= set(re.findall(r'\(\s*"[a-z_]+",\s*"([A-Z0-9_]+)"\s*\)', source))  # (option, VARIABLE) pairs
    return names


def test_settings_read_the_variables_this_test_knows_how_to_find():
    names = variables_read_by_settings()
    assert {
        "DJANGO_SECRET_KEY",
        "DATABASE_URL",
        "REDIS_URL",
        "IMAGESEARCH_VGG16_WEIGHTS",
        "AWS_S3_REGION_NAME",
    } <= names


def test_every_variable_is_in_the_readme_and_env_example():
    readme = (ROOT / "README.md").read_text()
    example = (ROOT / ".env.example").read_text()
    missing = sorted(n for n in variables_read_by_settings() if f"`{n}`" not in readme or f"{n}=" not in example)
    assert missing == []


def test_the_readme_starts_with_the_two_commands():
    head = (ROOT / "README.md").read_text()[:400]
    assert "make run" in head and "make test" in head
    assert "make test" in (ROOT / ".ci" / "run").read_text()
