"""Security properties: CSRF everywhere, safe file responses, no user-chosen
paths on disk, a clean `check --deploy` with the documented production
settings, and no SECRET_KEY default outside DEBUG.

Authorisation of every view is the permission matrix (tests/test_permission_matrix.py);
here we only check that the matrix really covers every URL of the app.
"""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client
from django.urls import Resolver404, URLPattern, get_resolver, resolve, reverse

from gallery import services
from gallery.models import Gallery, Image
from tests import imagegen, multipart

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
FORM = re.compile(r"<form\b[^>]*>.*?</form>", re.S | re.I)
POST_FORM = re.compile(r"<form\b[^>]*method=\"post\"", re.I)
TOKEN_INPUT = re.compile(r'<input type="hidden" name="csrfmiddlewaretoken" value="[^"]+"')

# The production settings documented in docs/reliability.md and the README.
PRODUCTION_ENV = {
    "DJANGO_DEBUG": "0",
    "DJANGO_ALLOWED_HOSTS": "images.example.org",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://images.example.org",
    "DJANGO_SECURE_COOKIES": "1",
    "DJANGO_SECURE_SSL_REDIRECT": "1",
    "DJANGO_HSTS_SECONDS": "31536000",
    "DJANGO_HSTS_INCLUDE_SUBDOMAINS": "1",
    "DJANGO_HSTS_PRELOAD": "1",
    "DJANGO_BEHIND_TLS_PROXY": "1",
    "IMAGESEARCH_VGG16_WEIGHTS": "imagenet",
}


@pytest.fixture
def world(owner, staff):
    gallery = services.gallery_create(owner=owner, title="Secrets", visibility="private")
    result = services.image_create(gallery=gallery, uploader=owner, data=imagegen.jpeg(1), name="one.jpg")
    return gallery, result.image


def _app_routes(gallery, image):
    """Yield (name, url) for every URL pattern of the gallery app."""
    for pattern in get_resolver().url_patterns:
        for sub in getattr(pattern, "url_patterns", [pattern]):
            if not isinstance(sub, URLPattern) or not sub.name or sub.callback.__module__.startswith("django."):
                continue
            kwargs = {}
            if "<slug:slug>" in str(sub.pattern):
                kwargs["slug"] = gallery.slug
            if "<int:pk>" in str(sub.pattern):
                kwargs["pk"] = image.pk
            if "<str:token>" in str(sub.pattern):
                kwargs["token"] = "not-a-token"
            if "<int:group_id>" in str(sub.pattern):
                kwargs["group_id"] = 10**9
            yield sub.name, reverse(sub.name, kwargs=kwargs)


# --- CSRF ---------------------------------------------------------------------


def test_every_app_url_refuses_a_session_post_without_a_csrf_token(owner, world):
    gallery, image = world
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    routes = list(_app_routes(gallery, image))
    assert len(routes) >= 15
    for name, url in routes:
        response = client.post(url, {"title": "x", "visibility": "public", "description": ""})
        assert response.status_code == 403, f"{name} ({url}) answered {response.status_code} to a POST without a token"
    # Nothing changed: no gallery created, edited or deleted, no image deleted.
    assert list(Gallery.objects.values_list("title", "visibility")) == [("Secrets", "private")]
    assert Image.objects.filter(pk=image.pk).exists()


@pytest.mark.parametrize("url_name", ["login", "signup", "admin:login"])
def test_the_sign_in_forms_refuse_a_post_without_a_csrf_token(db, url_name):
    response = Client(enforce_csrf_checks=True).post(reverse(url_name), {"username": "a", "password": "b"})
    assert response.status_code == 403


def test_logout_and_admin_actions_refuse_a_post_without_a_csrf_token(staff, world):
    _gallery, image = world
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    assert client.post(reverse("logout")).status_code == 403
    changelist = reverse("admin:gallery_image_changelist")
    response = client.post(changelist, {"action": "delete_selected", "_selected_action": [image.pk], "post": "yes"})
    assert response.status_code == 403
    assert Image.objects.filter(pk=image.pk).exists()


def test_a_post_with_the_token_from_the_page_is_accepted(owner, world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    page = client.get(reverse("gallery_create")).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = client.post(
        reverse("gallery_create"),
        {"title": "With token", "visibility": "private", "description": "", "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 302
    assert Gallery.objects.filter(title="With token").exists()


def test_the_json_api_needs_the_token_for_session_posts_but_not_for_basic_auth(owner, world):
    gallery, _image = world
    body, content_type = multipart.encode([("two.jpg", imagegen.jpeg(2), "image/jpeg")])
    url = reverse("api_upload", args=[gallery.slug])
    session = Client(enforce_csrf_checks=True)
    session.force_login(owner)
    assert session.post(url, body, content_type=content_type).status_code == 403
    # Basic auth sends no cookie, so a third-party page cannot forge it: no token needed.
    import base64

    basic = "Basic " + base64.b64encode(b"owner:pw-owner-123").decode()
    response = Client(enforce_csrf_checks=True).post(url, body, content_type=content_type, HTTP_AUTHORIZATION=basic)
    assert response.status_code == 200 and response.json()["results"][0]["status"] == "added"


def test_every_post_form_on_every_page_carries_a_csrf_token(owner, staff, world):
    gallery, image = world
    owner_client, staff_client, anonymous = Client(), Client(), Client()
    owner_client.force_login(owner)
    staff_client.force_login(staff)
    pages = [
        (anonymous, reverse("login")),
        (anonymous, reverse("signup")),
        (owner_client, reverse("home")),
        (owner_client, reverse("gallery_create")),
        (owner_client, gallery.get_absolute_url()),
        (owner_client, reverse("gallery_edit", args=[gallery.slug])),
        (owner_client, reverse("gallery_delete", args=[gallery.slug])),
        (owner_client, reverse("image_detail", args=[image.pk])),
        (staff_client, reverse("admin:gallery_image_change", args=[image.pk])),
        (staff_client, reverse("admin:gallery_gallery_change", args=[gallery.pk])),
    ]
    post_forms = 0
    for client, url in pages:
        html = client.get(url).content.decode()
        for form in FORM.findall(html):
            if POST_FORM.match(form):
                post_forms += 1
                assert TOKEN_INPUT.search(form), f"a POST form on {url} has no CSRF token:\n{form[:300]}"
    assert post_forms >= 10


def test_every_post_form_in_the_templates_has_a_csrf_token_tag():
    templates = list((ROOT / "templates").rglob("*.html"))
    checked = 0
    for path in templates:
        for form in FORM.findall(path.read_text()):
            if POST_FORM.match(form):
                checked += 1
                assert "{% csrf_token %}" in form, f"{path.relative_to(ROOT)}: a POST form without {{% csrf_token %}}"
    assert checked >= 8


# --- Authorisation coverage -------------------------------------------------------


def test_the_permission_matrix_covers_every_url_of_the_app(owner, other, staff, world):
    from tests import permission_world, test_permission_matrix

    matrix_world = permission_world.build(owner, other, staff)
    covered = set()
    for _label, _method, url, _data, _expected in test_permission_matrix.cases(matrix_world):
        try:
            covered.add(resolve(url.split("?")[0]).url_name)
        except Resolver404:  # the matrix also asks for URLs that must not exist (e.g. direct media)
            pass
    gallery, image = world
    every = {name for name, _url in _app_routes(gallery, image)}
    assert every - covered == set(), "URLs missing from the permission matrix"


# --- Serving uploads ------------------------------------------------------------


HOSTILE_NAME = 'evil"; filename=x.html\r\nX-Injected: 1 <script>é🌅.jpg'


def test_uploaded_files_are_served_nosniff_sandboxed_with_a_safe_content_disposition(client, owner, world):
    gallery, _image = world
    client.force_login(owner)
    body, content_type = multipart.encode(
        [(HOSTILE_NAME.replace("\r\n", " "), imagegen.encode(imagegen.scene(3), "PNG"), "text/html")]
    )
    response = client.post(reverse("api_upload", args=[gallery.slug]), body, content_type=content_type)
    (result,) = response.json()["results"]
    assert result["status"] == "added"
    image = Image.objects.get(pk=result["id"])
    for url_name, expected_type in (("image_file", "image/png"), ("image_thumb", "image/jpeg")):
        served = client.get(reverse(url_name, args=[image.pk]))
        assert served.status_code == 200
        assert served["Content-Type"] == expected_type, "the type comes from the content, not the client"
        assert served["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in served["Content-Security-Policy"]
        disposition = served["Content-Disposition"]
        assert disposition.startswith("inline; ")
        assert "\r" not in disposition and "\n" not in disposition and "<" not in disposition
        ascii_name = re.fullmatch(r'inline; filename="([A-Za-z0-9_.-]+)"(?:; filename\*=.*)?', disposition)
        assert ascii_name, disposition
        assert ascii_name.group(1).endswith(".png" if url_name == "image_file" else ".jpg")


def test_a_hostile_file_name_is_shown_escaped_on_the_page(client, owner, world):
    gallery, _image = world
    client.force_login(owner)
    body, content_type = multipart.encode([("<img src=x onerror=alert(1)>.jpg", imagegen.jpeg(4), "image/jpeg")])
    (result,) = client.post(reverse("api_upload", args=[gallery.slug]), body, content_type=content_type).json()[
        "results"
    ]
    html = client.get(reverse("image_detail", args=[result["id"]])).content.decode()
    assert "<img src=x onerror=alert(1)>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;.jpg" in html


def test_pages_carry_the_security_headers(client, owner, world):
    client.force_login(owner)
    response = client.get(reverse("home"))
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"


# --- Paths --------------------------------------------------------------------


def test_no_user_controlled_name_reaches_the_filesystem(client, owner, world, isolated_files):
    gallery, _image = world
    client.force_login(owner)
    before = {p for p in isolated_files.rglob("*") if p.is_file()}
    names = [
        "../../../../tmp/pwned.jpg",
        "..\\..\\pwned.jpg",
        "/etc/cron.d/pwned.jpg",
        "....//....//pwned.jpg",
        "%2e%2e%2fpwned.jpg",
    ]
    files = [(name, imagegen.jpeg(10 + i), "image/jpeg") for i, name in enumerate(names)]
    body, content_type = multipart.encode(files)
    response = client.post(reverse("api_upload", args=[gallery.slug]), body, content_type=content_type)
    assert [r["status"] for r in response.json()["results"]] == ["added"] * len(names)
    # A search with an outside image stores nothing at all.
    body, content_type = multipart.encode([("../../q.jpg", imagegen.jpeg(30), "image/jpeg")], field="image")
    client.post(reverse("gallery_search", args=[gallery.slug]), body, content_type=content_type)

    created = {p for p in isolated_files.rglob("*") if p.is_file()} - before
    media = isolated_files / "media"
    assert len(created) == 2 * len(names)
    for path in created:
        rel = path.relative_to(media).as_posix()
        assert re.fullmatch(
            rf"(images/{gallery.pk}/[0-9a-f]{{32}}\.jpg|thumbs/{gallery.pk}/[0-9a-f]{{32}}\.jpg)", rel
        ), rel
    assert not Path("/tmp/pwned.jpg").exists() and not Path("/etc/cron.d/pwned.jpg").exists()


# --- Deployment settings ----------------------------------------------------------


def _manage(args, env, tmp_path):
    full = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "IMAGESEARCH_"))}
    full.update(IMAGESEARCH_VAR_DIR=str(tmp_path / "var"), IMAGESEARCH_ENV_FILE=os.devnull, **env)  # no developer .env
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=full, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_is_clean_with_the_documented_production_settings(tmp_path):
    env = {**PRODUCTION_ENV, "DJANGO_SECRET_KEY": secrets.token_urlsafe(50)}
    result = _manage(["check", "--deploy", "--fail-level", "WARNING"], env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_warns_without_them(tmp_path):
    result = _manage(["check", "--deploy"], {"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "short"}, tmp_path)
    output = result.stdout + result.stderr
    for warning in ("security.W004", "security.W008", "security.W009", "security.W012", "security.W016"):
        assert warning in output


def test_secret_key_has_no_default_when_debug_is_off(tmp_path):
    result = _manage(["check"], {"DJANGO_DEBUG": "0"}, tmp_path)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is required" in result.stderr


def test_secret_key_has_a_development_default_only_with_debug_on(tmp_path):
    result = _manage(["check"], {"DJANGO_DEBUG": "1"}, tmp_path)
    assert result.returncode == 0, result.stderr
