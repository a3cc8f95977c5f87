"""Every URL of the app, asked by four personas: the owner, another user, an anonymous
visitor and a staff member (post-moderation, the default).

A stranger gets 404 for anything private, exactly as for an id that does not exist,
never 403; and no listing, result or API response names an object they may not see.
"""

import base64
import re

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from gallery import services
from gallery.models import Export
from gallery.search import queries
from gallery.services import outside_queries
from tests import imagegen, permission_world

pytestmark = pytest.mark.django_db

CSRF = re.compile(rb'name="csrfmiddlewaretoken" value="[^"]*"')
PERSONAS = ("owner", "other", "anonymous", "staff")
LOGIN = "login-redirect"  # a 302 to the login page: said for any slug or id, so it reveals nothing


@pytest.fixture(autouse=True)
def post_moderation(settings):
    settings.IMAGESEARCH_MODERATION = "post"


@pytest.fixture
def world(owner, other, staff):
    return permission_world.build(owner, other, staff)


def client_for(client, world, persona):
    if persona != "anonymous":
        client.force_login(getattr(world, persona))
    return client


def expect(owner, other, anonymous, staff):
    return {"owner": owner, "other": other, "anonymous": anonymous, "staff": staff}


PRIVATE = expect(200, 404, 404, 200)
PUBLIC = expect(200, 200, 200, 200)
THEIRS = expect(404, 200, 404, 200)
OWNER_ONLY_GET = expect(200, 404, LOGIN, 404)
OWNER_ONLY_POST = expect(302, 404, LOGIN, 404)
IMAGE_VIEWS = ("image_detail", "image_similar", "image_file", "image_thumb", "api_similar")


def stored_query_token(gallery, user):
    """Store an outside query of `gallery` (as the results' GET URL does) and return its signed token."""
    vector = queries.outside_vector(imagegen.jpeg(3))
    stored = outside_queries.outside_query_create(
        gallery=gallery, user=user, name="q.jpg", query=vector, picture=imagegen.jpeg(3)
    )
    return queries.token_for(stored)


def ready_export(gallery, owner):
    """A finished export of `gallery` with a file in storage (as a worker leaves it)."""
    name = default_storage.save(f"exports/{gallery.pk}/matrix.csv", ContentFile(b"rank,id\n"))
    return Export.objects.create(
        gallery=gallery, requested_by=owner, kind="results", format="csv", status="ready", file=name
    )


def cases(world):
    """Yield (label, method, url, data, expected) for every URL pattern of the app."""
    p, g = world.galleries["private"].slug, world.galleries["public"].slug
    yield "home", "get", reverse("home"), None, PUBLIC
    yield "signup", "get", reverse("signup"), None, expect(302, 302, 200, 302)
    yield "login", "get", reverse("login"), None, PUBLIC
    # Password reset (Django's views in the site's templates): open to everyone, revealing nothing.
    yield "password reset", "get", reverse("password_reset"), None, PUBLIC
    yield "password reset sent", "get", reverse("password_reset_done"), None, PUBLIC
    yield "password reset bad link", "get", reverse("password_reset_confirm", args=["MQ", "bad-token"]), None, PUBLIC
    yield "password reset complete", "get", reverse("password_reset_complete"), None, PUBLIC
    yield "new gallery", "get", reverse("gallery_create"), None, expect(200, 200, LOGIN, 200)
    for slug, who in ((p, PRIVATE), (g, PUBLIC)):
        yield f"gallery {slug}", "get", reverse("gallery_detail", args=[slug]), None, who
        yield f"status.json {slug}", "get", reverse("gallery_status", args=[slug]), None, who
        yield f"api status {slug}", "get", reverse("api_status", args=[slug]), None, who
        # Searching without a file is a 400 for whoever may search, a 404 for the rest.
        search = {k: (400 if v == 200 else v) for k, v in who.items()}
        yield f"search {slug}", "post", reverse("gallery_search", args=[slug]), {}, search
        yield f"api search {slug}", "post", reverse("api_search", args=[slug]), {}, search
        # The results of a stored outside search: for whoever may open the gallery.
        gallery = next(g for g in world.galleries.values() if g.slug == slug)
        results = reverse("gallery_search_results", args=[slug, stored_query_token(gallery, world.owner)])
        yield f"outside results {slug}", "get", results, None, who
        # The map: whoever may open the gallery (no build here, so no coordinates yet: 404 for everyone).
        yield f"map {slug}", "get", reverse("gallery_map", args=[slug]), None, who
        yield f"map names {slug}", "get", reverse("gallery_map_names", args=[slug]), None, who
        no_map = expect(404, 404, 404, 404)
        yield f"map points {slug}", "get", reverse("gallery_map_points", args=[slug]), None, no_map
        # Several images: naming none is a 400 for whoever may search, a 404 for the rest.
        yield f"similar many {slug}", "get", reverse("gallery_similar_many", args=[slug]), None, search
        yield f"api similar many {slug}", "get", reverse("api_similar_many", args=[slug]), None, search
        yield f"edit {slug}", "get", reverse("gallery_edit", args=[slug]), None, OWNER_ONLY_GET
        yield f"delete form {slug}", "get", reverse("gallery_delete", args=[slug]), None, OWNER_ONLY_GET
        yield f"edit POST {slug}", "post", reverse("gallery_edit", args=[slug]), {"title": ""}, OWNER_ONLY_GET
        yield f"upload {slug}", "post", reverse("gallery_upload", args=[slug]), {}, OWNER_ONLY_POST
        yield f"retry {slug}", "post", reverse("gallery_retry", args=[slug]), {}, OWNER_ONLY_POST
        # The health panel's repair: staff alone (the owner too gets 404, as for a page that is not there).
        yield f"repair {slug}", "post", reverse("gallery_repair", args=[slug]), {}, expect(404, 404, LOGIN, 302)
        yield f"api upload {slug}", "post", reverse("api_upload", args=[slug]), {}, expect(400, 404, 404, 404)
        # Near-duplicates, compare and the trash: the owner's alone, whatever the gallery's visibility.
        for view in ("gallery_duplicates", "gallery_duplicates_csv", "gallery_duplicates_json", "gallery_trash"):
            yield f"{view} {slug}", "get", reverse(view, args=[slug]), None, OWNER_ONLY_GET
        yield f"compare {slug}", "get", reverse("gallery_compare", args=[slug]), None, OWNER_ONLY_GET
        yield f"compare POST {slug}", "post", reverse("gallery_compare", args=[slug]), {}, OWNER_ONLY_GET
        resolve = reverse("gallery_duplicates_resolve", args=[slug, 10**9])  # no such group: "already resolved"
        yield f"resolve {slug}", "post", resolve, {"action": "keep_all"}, OWNER_ONLY_POST
        resolve_all = reverse("gallery_duplicates_resolve_all", args=[slug])
        yield f"resolve all {slug}", "post", resolve_all, {"action": "keep_all"}, OWNER_ONLY_POST
        yield f"trash restore {slug}", "post", reverse("gallery_trash_restore", args=[slug]), {}, OWNER_ONLY_POST
        yield f"trash purge {slug}", "post", reverse("gallery_trash_purge", args=[slug]), {}, OWNER_ONLY_POST
        thumb = reverse("gallery_trash_thumb", args=[slug, 10**9])
        yield f"trash thumb {slug}", "get", thumb, None, expect(404, 404, LOGIN, 404)
        yield f"api duplicates {slug}", "get", reverse("api_duplicates", args=[slug]), None, expect(200, 404, 404, 404)
        api_all = reverse("api_duplicates_resolve_all", args=[slug])
        yield f"api resolve all {slug}", "post", api_all, {}, expect(400, 404, 404, 404)  # 400: no action named
        api_one = reverse("api_duplicates_resolve", args=[slug, 10**9])
        yield f"api resolve {slug}", "post", api_one, {"action": "keep_all"}, expect(404, 404, 404, 404)
        yield f"api compare {slug}", "post", reverse("api_compare", args=[slug]), {}, expect(400, 404, 404, 404)
        # Acting on a selection: trash and undo are the owner's; a ZIP is for whoever may open the gallery.
        yield f"images trash {slug}", "post", reverse("gallery_images_trash", args=[slug]), {}, OWNER_ONLY_POST
        undo = reverse("gallery_trash_undo", args=[slug])
        yield f"trash undo {slug}", "post", undo, {}, expect(400, 404, LOGIN, 404)  # 400: no rows named
        zip_url = reverse("gallery_images_zip", args=[slug])
        yield f"zip without ids {slug}", "get", zip_url, None, {k: (400 if v == 200 else v) for k, v in who.items()}
        shown = world.image("priv-approved.jpg" if slug == p else "pub-approved.jpg").pk
        yield f"zip {slug}", "get", f"{zip_url}?ids={shown}", None, who
        # Exports: the owner's alone, staff included (they see the metadata in the admin, never the file).
        yield f"exports {slug}", "get", reverse("gallery_exports", args=[slug]), None, OWNER_ONLY_GET
        yield f"exports status {slug}", "get", reverse("gallery_exports_status", args=[slug]), None, OWNER_ONLY_GET
        ask = reverse("gallery_export_create", args=[slug])
        yield f"export request {slug}", "post", ask, {"kind": "embeddings"}, OWNER_ONLY_POST
        export = ready_export(gallery, world.owner)
        download = reverse("gallery_export_download", args=[slug, export.pk])
        yield f"export download {slug}", "get", download, None, OWNER_ONLY_GET
        api_list = reverse("api_exports", args=[slug])
        yield f"api exports {slug}", "get", api_list, None, expect(200, 404, 404, 404)
        yield f"api export request {slug}", "post", api_list, {}, expect(400, 404, 404, 404)  # 400: no kind named
        api_one = reverse("api_export", args=[export.pk])
        yield f"api export {slug}", "get", api_one, None, expect(200, 404, 404, 404)
        api_file = reverse("api_export_download", args=[export.pk])
        yield f"api export download {slug}", "get", api_file, None, expect(200, 404, 404, 404)
    t = world.galleries["theirs"].slug
    yield f"gallery {t}", "get", reverse("gallery_detail", args=[t]), None, THEIRS
    yield f"edit {t}", "get", reverse("gallery_edit", args=[t]), None, expect(404, 200, LOGIN, 404)
    per_image = {
        "priv-approved.jpg": PRIVATE,
        "priv-pending.jpg": PRIVATE,
        "priv-rejected.jpg": PRIVATE,  # the owner sees it, marked rejected
        "pub-approved.jpg": PUBLIC,
        "pub-pending.jpg": PUBLIC,  # post-moderation: visible until rejected
        "pub-rejected.jpg": PRIVATE,
        "their-approved.jpg": THEIRS,
    }
    for name, who in per_image.items():
        pk = world.image(name).pk
        for view in IMAGE_VIEWS:
            yield f"{view} {name}", "get", reverse(view, args=[pk]), None, who
    missing_gallery, missing_image = "no-such-gallery", 10**9
    yield "missing gallery", "get", reverse("gallery_detail", args=[missing_gallery]), None, expect(404, 404, 404, 404)
    yield "missing api status", "get", reverse("api_status", args=[missing_gallery]), None, expect(404, 404, 404, 404)
    for view in IMAGE_VIEWS:
        yield f"{view} missing", "get", reverse(view, args=[missing_image]), None, expect(404, 404, 404, 404)
    # Files are never served from a public prefix, whatever the path.
    for name in ("priv-approved.jpg", "pub-approved.jpg"):
        image = world.image(name)
        for prefix in ("/media-direct/", "/media/"):
            for stored in (image.file.name, image.thumbnail.name):
                yield f"direct {prefix}{stored}", "get", prefix + stored, None, expect(404, 404, 404, 404)
    admin_pages = [
        reverse("admin:index"),
        reverse("admin:gallery_image_changelist"),
        reverse("admin:gallery_moderationqueueitem_changelist"),
        reverse("admin:gallery_gallery_changelist"),
        reverse("admin:gallery_export_changelist"),
        reverse("admin:gallery_image_change", args=[world.image("priv-pending.jpg").pk]),
    ]
    for url in admin_pages:
        yield f"admin {url}", "get", url, None, expect(LOGIN, LOGIN, LOGIN, 200)
    # Keeping a look-alike at upload: the owner's (nothing named to tell apart: it is just kept).
    for name in ("priv-approved.jpg", "pub-approved.jpg"):
        pk = world.image(name).pk
        yield f"keep {name}", "post", reverse("image_upload_keep", args=[pk]), {}, expect(200, 404, LOGIN, 404)
        yield f"api keep {name}", "post", reverse("api_image_keep", args=[pk]), {}, expect(200, 404, 404, 404)
    # Deleting and skipping last: the owner's request moves the image to the trash.
    for name in ("priv-approved.jpg", "pub-approved.jpg"):
        yield f"delete page {name}", "get", reverse("image_delete", args=[world.image(name).pk]), None, OWNER_ONLY_GET
    for name in ("priv-approved.jpg", "pub-approved.jpg"):
        yield f"delete {name}", "post", reverse("image_delete", args=[world.image(name).pk]), {}, OWNER_ONLY_POST
    skip, api_skip = world.image("priv-pending.jpg").pk, world.image("pub-pending.jpg").pk
    yield "skip priv-pending.jpg", "post", reverse("image_upload_skip", args=[skip]), {}, expect(200, 404, LOGIN, 404)
    yield "api skip pub-pending.jpg", "post", reverse("api_image_skip", args=[api_skip]), {}, expect(200, 404, 404, 404)


@pytest.mark.parametrize("persona", PERSONAS)
def test_every_url_answers_each_persona_as_specified(client, world, persona):
    client = client_for(client, world, persona)
    wrong = []
    checked = 0
    for label, method, url, data, expected in cases(world):
        want = expected[persona]
        response = client.get(url) if method == "get" else client.post(url, data or {})
        got = response.status_code
        if want == LOGIN:
            ok = got == 302 and "login" in response["Location"]
        else:
            ok = got == want
        if not ok:
            wrong.append(f"{label}: {method.upper()} {url} -> {got}, expected {want}")
        assert got != 403, f"{label}: 403 tells a stranger the object exists; expected 404"
        checked += 1
    assert checked >= 85  # every URL pattern, some with several objects
    assert not wrong, "\n".join(wrong)


def test_a_stranger_cannot_tell_a_private_object_from_a_missing_one(client, world):
    client.force_login(world.other)
    private = world.image("priv-approved.jpg")
    slug = world.galleries["private"].slug
    pairs = [(view, [private.pk], [10**9]) for view in IMAGE_VIEWS]
    pairs += [(view, [slug], ["no-such-gallery"]) for view in ("gallery_detail", "gallery_edit", "api_status")]
    for view, hidden_args, missing_args in pairs:
        hidden_url, missing_url = reverse(view, args=hidden_args), reverse(view, args=missing_args)
        hidden, missing = client.get(hidden_url), client.get(missing_url)
        assert hidden.status_code == missing.status_code == 404, view
        # Same body but for the address asked (a 404 page may echo it) and the per-render CSRF token.
        assert _comparable(hidden.content, hidden_url) == _comparable(missing.content, missing_url), view


def _comparable(content, url):
    return CSRF.sub(b"", content.replace(url.encode(), b""))


def test_basic_auth_api_clients_get_the_same_404s(client, world):
    token = base64.b64encode(b"other:pw-other-123").decode()
    auth = {"HTTP_AUTHORIZATION": f"Basic {token}"}
    assert client.get(reverse("api_similar", args=[world.image("priv-approved.jpg").pk]), **auth).status_code == 404
    assert client.get(reverse("api_status", args=[world.galleries["private"].slug]), **auth).status_code == 404
    assert client.get(reverse("api_similar", args=[world.image("their-approved.jpg").pk]), **auth).status_code == 200
    bad = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"other:wrong").decode()}
    assert client.get(reverse("api_similar", args=[world.image("pub-approved.jpg").pk]), **bad).status_code == 401


# --- No foreign object leaks into a listing or a result ------------------------

VISIBLE = {
    "owner": {
        "priv-approved.jpg",
        "priv-pending.jpg",
        "priv-rejected.jpg",
        "pub-approved.jpg",
        "pub-pending.jpg",
        "pub-rejected.jpg",
    },
    "other": {"pub-approved.jpg", "pub-pending.jpg", "their-approved.jpg"},
    "anonymous": {"pub-approved.jpg", "pub-pending.jpg"},
    "staff": {s[1] for s in permission_world.SPEC},
}
GALLERIES = {
    "owner": {"Owner private", "Owner public"},
    "other": {"Owner public", "Other private"},
    "anonymous": {"Owner public"},
}
ALL_NAMES = {s[1] for s in permission_world.SPEC}


def _names_in(content):
    return {name for name in ALL_NAMES if name.encode() in content}


@pytest.fixture
def embedded_world(world):
    world.embed()
    for gallery in world.galleries.values():
        services.gallery_rebuild_index(gallery_id=gallery.pk)
    return world


@pytest.mark.parametrize("persona", PERSONAS)
def test_no_listing_or_result_names_an_image_the_persona_may_not_see(client, embedded_world, persona):
    world = embedded_world
    client = client_for(client, world, persona)
    allowed = VISIBLE[persona]
    # Rejected images are in no result for anyone, staff included.
    results_allowed = {n for n in allowed if "rejected" not in n}

    home = client.get(reverse("home")).content.decode()
    if persona in GALLERIES:
        for title in {"Owner private", "Owner public", "Other private"}:
            assert (title in home) == (title in GALLERIES[persona]), (persona, title)

    seen = set()
    for key in ("private", "public", "theirs"):
        response = client.get(reverse("gallery_detail", args=[world.galleries[key].slug]))
        if response.status_code == 200:
            listed = {img.original_name for img in response.context["page"].object_list}
            assert listed <= allowed, (persona, key, listed - allowed)
            assert _names_in(response.content) <= allowed
            seen |= listed
    assert seen == allowed

    queried = 0
    for name in sorted(allowed):
        image = world.image(name)
        api = client.get(reverse("api_similar", args=[image.pk]))
        assert api.status_code == 200
        got = {r["name"] for r in api.json()["results"]}
        assert got <= results_allowed - {name}, (persona, name, got - results_allowed)
        same_gallery = {n for n in results_allowed if world.image(n).gallery_id == image.gallery_id} - {name}
        assert got == same_gallery, (persona, name)
        page = client.get(reverse("image_similar", args=[image.pk]))
        assert {m.image.original_name for m in page.context["matches"]} == got
        queried += 1
    assert queried == len(allowed)

    # A near-duplicate of the rejected public image as an outside query: the rejected
    # image is the nearest vector in the gallery, and still no one gets it back.
    query = imagegen.encode(imagegen.near_duplicate(imagegen.scene(20), 7))
    response = client.post(
        reverse("api_search", args=[world.galleries["public"].slug]),
        {"image": SimpleUploadedFile("q.jpg", query, "image/jpeg")},
    )
    assert response.status_code == 200
    got = [r["name"] for r in response.json()["results"]]
    assert got[0] == "pub-approved.jpg"
    assert set(got) == {n for n in results_allowed if n.startswith("pub-")}
