"""The JSON API: similar images, search by uploaded image, gallery status and
upload, with the pages' permissions (404, never 403, for what a person may not
see), HTTP Basic auth, and session auth with its CSRF check."""

import base64

import pytest
from django.middleware.csrf import _get_new_csrf_string
from django.test import Client
from django.urls import reverse

from gallery import services
from gallery.models import Gallery, Image, ModerationState, Visibility
from tests import imagegen, vectors

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Basic auth checks the password on every request: hash cheaply here (before the users exist)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def basic(user, password=None):
    password = password or f"pw-{user.username}-123"
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"{user.username}:{password}".encode()).decode()}


@pytest.fixture
def world(owner, other):
    private = Gallery.objects.create(owner=owner, title="Private", slug="private", visibility=Visibility.PRIVATE)
    public = Gallery.objects.create(owner=owner, title="Public", slug="public", visibility=Visibility.PUBLIC)
    theirs = Gallery.objects.create(owner=other, title="Theirs", slug="theirs", visibility=Visibility.PRIVATE)
    images = {}
    for g in (private, public, theirs):
        images[g.slug] = vectors.add_images(g, vectors.clustered(60, seed=g.pk), prefix=g.slug)
        services.gallery_rebuild_index(gallery_id=g.pk)
    return {"private": private, "public": public, "theirs": theirs, "images": images}


def similar(client, pk, **extra):
    return client.get(reverse("api_similar", args=[pk]), **extra)


# --- Who sees what ---------------------------------------------------------------


@pytest.mark.parametrize(
    "persona, gallery, status",
    [
        ("owner", "private", 200),
        ("owner", "public", 200),
        ("owner", "theirs", 404),
        ("other", "private", 404),
        ("other", "public", 200),
        ("other", "theirs", 200),
        ("anonymous", "private", 404),
        ("anonymous", "public", 200),
        ("anonymous", "theirs", 404),
        ("staff", "private", 200),
        ("staff", "public", 200),
        ("staff", "theirs", 200),
    ],
)
def test_similar_and_status_answer_like_the_pages(client, world, owner, other, staff, persona, gallery, status):
    users = {"owner": owner, "other": other, "staff": staff}
    if persona in users:
        client.force_login(users[persona])
    image = world["images"][gallery][0]
    response = similar(client, image.pk)
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    if status == 200:
        data = response.json()
        assert data["query"] == image.pk and len(data["results"]) == 12
        assert {r["id"] for r in data["results"]} <= {i.pk for i in world["images"][gallery]}
        assert image.pk not in {r["id"] for r in data["results"]}
    else:
        assert "error" in response.json()
    response = client.get(reverse("api_status", args=[gallery]))
    assert response.status_code == status
    if status == 200:
        assert response.json()["index"]["items"] == 60


def test_a_rejected_image_is_not_found_by_strangers_and_never_in_results(client, world, owner, staff):
    rejected = world["images"]["public"][1]
    services.image_moderate(image=rejected, actor=staff, state=ModerationState.REJECTED, reason="no")
    assert similar(client, rejected.pk).status_code == 404
    for user in (owner, staff):
        client.force_login(user)
        for image in world["images"]["public"][:10]:
            if image.pk != rejected.pk:
                ids = [r["id"] for r in similar(client, image.pk, data={"k": 100}).json()["results"]]
                assert rejected.pk not in ids


def test_pre_moderated_pending_images_are_hidden_from_visitors_only(client, world, owner, settings):
    settings.IMAGESEARCH_MODERATION = "pre"
    pending = world["images"]["public"][2]
    Image.objects.filter(pk=pending.pk).update(moderation_state=ModerationState.PENDING)
    assert similar(client, pending.pk).status_code == 404
    visitor_ids = {r["id"] for r in similar(client, world["images"]["public"][3].pk, data={"k": 100}).json()["results"]}
    assert pending.pk not in visitor_ids
    client.force_login(owner)
    assert similar(client, pending.pk).status_code == 200


# --- Controls --------------------------------------------------------------------


def test_k_page_and_max_distance_shape_the_results(client, world, owner):
    client.force_login(owner)
    pk = world["images"]["private"][0].pk
    first = similar(client, pk, data={"k": 10}).json()["results"]
    second = similar(client, pk, data={"k": 5, "page": 2}).json()
    assert [r["id"] for r in second["results"]] == [r["id"] for r in first[5:10]]
    assert [r["rank"] for r in second["results"]] == [6, 7, 8, 9, 10] and second["page"] == 2
    limit = (first[3]["distance"] + first[4]["distance"]) / 2  # JSON distances are rounded
    near = similar(client, pk, data={"k": 50, "max_distance": limit}).json()["results"]
    assert [r["id"] for r in near] == [r["id"] for r in first[:4]]
    r = first[0]
    assert 0 <= r["distance"] <= 2 and r["similarity"] == pytest.approx((1 - r["distance"]) * 100, abs=0.01)
    assert r["url"] == reverse("image_detail", args=[r["id"]])


@pytest.mark.parametrize("query", [{"k": 0}, {"k": 101}, {"k": "ten"}, {"max_distance": 3}, {"page": 0}])
def test_invalid_controls_are_a_400_with_the_fields_named(client, world, owner, query):
    client.force_login(owner)
    response = similar(client, world["images"]["private"][0].pk, data=query)
    assert response.status_code == 400
    assert set(response.json()["fields"]) == set(query)


def test_a_page_deeper_than_the_thousandth_result_is_a_400_on_page(client, world, owner):
    client.force_login(owner)
    pk = world["images"]["private"][0].pk
    assert similar(client, pk, data={"k": 100, "page": 10}).status_code == 200
    response = similar(client, pk, data={"k": 100, "page": 11})
    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"page"}


def test_an_image_not_yet_embedded_has_no_results_and_says_so(client, world, owner):
    img = world["images"]["private"][0]
    Image.objects.filter(pk=img.pk).update(embedding_state="pending", embedding=None)
    client.force_login(owner)
    data = similar(client, img.pk).json()
    assert data["state"] == "pending" and data["results"] == []


# --- Authentication --------------------------------------------------------------------


def test_basic_auth_opens_the_owners_private_gallery(client, world, owner):
    response = similar(client, world["images"]["private"][0].pk, **basic(owner))
    assert response.status_code == 200 and len(response.json()["results"]) == 12


@pytest.mark.parametrize(
    "header",
    [
        "Basic " + base64.b64encode(b"owner:wrong").decode(),
        "Basic %%%notbase64",
        "Basic " + base64.b64encode(b"\xff\xfe").decode(),
    ],
)
def test_bad_basic_credentials_are_a_401_not_a_silent_anonymous_view(client, world, header):
    response = similar(client, world["images"]["public"][0].pk, HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Basic"


def test_a_session_post_needs_the_csrf_token_and_basic_auth_does_not(world, owner):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    url = reverse("api_search", args=["private"])
    assert client.post(url, {}).status_code == 403
    token = _get_new_csrf_string()
    client.cookies["csrftoken"] = token
    response = client.post(url, {}, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 400  # past the CSRF check: no image sent
    fresh = Client(enforce_csrf_checks=True)
    assert fresh.post(url, {}, **basic(owner)).status_code == 400


# --- Search by uploaded image and upload ------------------------------------------------


def test_search_with_an_outside_image_finds_its_twin_first(client, owner):
    gallery = services.gallery_create(owner=owner, title="Scenes")
    for seed in range(4):
        services.image_create(gallery=gallery, uploader=owner, data=imagegen.jpeg(seed), name=f"scene-{seed}.jpg")
    services.images_embed(image_ids=list(gallery.images.values_list("pk", flat=True)))
    services.gallery_rebuild_index(gallery_id=gallery.pk)
    upload = imagegen.encode(imagegen.near_duplicate(imagegen.scene(2), 3))
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = client.post(
        reverse("api_search", args=[gallery.slug]) + "?k=3",
        {"image": SimpleUploadedFile("q.jpg", upload, "image/jpeg")},
        **basic(owner),
    )
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [r["name"] for r in results][0] == "scene-2.jpg" and len(results) == 3
    assert not Image.objects.filter(gallery=gallery, original_name="q.jpg").exists()  # not stored


def test_search_rejects_a_file_that_is_not_an_image(client, world, owner):
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = client.post(
        reverse("api_search", args=["private"]),
        {"image": SimpleUploadedFile("x.jpg", b"not an image", "image/jpeg")},
        **basic(owner),
    )
    assert response.status_code == 400 and "error" in response.json()


@pytest.mark.parametrize("persona", ["other", "anonymous"])
def test_search_and_upload_into_someone_elses_private_gallery_are_404(client, world, other, persona, jpeg):
    from django.core.files.uploadedfile import SimpleUploadedFile

    auth = basic(other) if persona == "other" else {}
    f = SimpleUploadedFile("a.jpg", jpeg(1), "image/jpeg")
    assert client.post(reverse("api_search", args=["private"]), {"image": f}, **auth).status_code == 404
    f = SimpleUploadedFile("a.jpg", jpeg(1), "image/jpeg")
    assert client.post(reverse("api_upload", args=["private"]), {"images": [f]}, **auth).status_code == 404
    # Even into a public gallery only its owner may upload.
    f = SimpleUploadedFile("a.jpg", jpeg(1), "image/jpeg")
    assert client.post(reverse("api_upload", args=["public"]), {"images": [f]}, **auth).status_code == 404


def test_the_owner_uploads_with_basic_auth(client, world, owner, jpeg):
    from django.core.files.uploadedfile import SimpleUploadedFile

    f = SimpleUploadedFile("new.jpg", jpeg(7), "image/jpeg")
    response = client.post(reverse("api_upload", args=["private"]), {"images": [f]}, **basic(owner))
    assert response.status_code == 200
    [result] = response.json()["results"]
    assert result["status"] == "added" and Image.objects.filter(pk=result["id"], gallery=world["private"]).exists()


def test_the_wrong_method_is_a_405(client, world, owner):
    assert (
        client.post(reverse("api_similar", args=[world["images"]["public"][0].pk]), **basic(owner)).status_code == 405
    )
    assert client.get(reverse("api_search", args=["public"])).status_code == 405
