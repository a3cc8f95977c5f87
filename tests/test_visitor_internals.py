"""Internals (file hashes, index build numbers, search settings, worker errors) are for staff:
each page rendered as an anonymous visitor, a stranger, the owner and staff, with the
internals' presence asserted for staff and their absence for everyone else."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from gallery import embedding, services
from gallery.models import EmbeddingState, Image, IndexBuild, MapBuild, SystemNotice, Visibility
from gallery.views.common import UNAVAILABLE_FOR_PEOPLE
from tests import imagegen

pytestmark = pytest.mark.django_db

DECODE_ERROR = "The image could not be decoded (OSError: broken data stream when reading image file)."
WEIGHTS_ERROR = "VGG16 weights file /srv/models/vgg16.h5 could not be loaded: [Errno 13] Permission denied"


@pytest.fixture
def world(owner, queued):
    gallery = services.gallery_create(owner=owner, title="Open", visibility=Visibility.PUBLIC)
    images = [
        services.image_create(gallery=gallery, uploader=owner, data=imagegen.jpeg(i), name=f"p{i}.jpg").image
        for i in range(3)
    ]
    Image.objects.filter(pk=images[0].pk).update(embedding_state=EmbeddingState.READY)
    Image.objects.filter(pk=images[1].pk).update(embedding_state=EmbeddingState.FAILED, embedding_error=DECODE_ERROR)
    build = IndexBuild.objects.create(
        gallery=gallery,
        version=7,
        embedding_version=embedding.version(),
        item_count=1,
        snapshot_at=images[0].created_at,
        search_k=4096,
        pool=256,
        recall=0.9962,
        recall_queries=400,
    )
    MapBuild.objects.create(gallery=gallery, build=build, item_count=1, duration_seconds=0.25)
    IndexBuild.forget_cached()
    SystemNotice.post(SystemNotice.WEIGHTS, WEIGHTS_ERROR)
    ready, failed = Image.objects.get(pk=images[0].pk), Image.objects.get(pk=images[1].pk)
    return gallery, ready, failed


def pages(world):
    gallery, ready, failed = world
    return {
        "gallery": gallery.get_absolute_url(),
        "image": ready.get_absolute_url(),
        "failed image": failed.get_absolute_url(),
        "home": reverse("home"),
        "map": reverse("gallery_map", args=[gallery.slug]),
        "status.json": reverse("gallery_status", args=[gallery.slug]),
        "api status": reverse("api_status", args=[gallery.slug]),
    }


# Text that only staff may read, wherever it appears.
INTERNALS = (
    "SHA-256",
    "index v7",
    "Index v7",
    '"version"',
    "search_k",
    "recall",
    "Errno",
    "/srv/models",
    "OSError",
    "IMAGESEARCH_",
    "Gallery health",
)


def visit(client, who, world, make_user):
    if who == "stranger":
        client.force_login(who_user("stranger") if who_exists("stranger") else make_user("stranger"))
    elif who in ("owner", "staff"):
        client.force_login(who_user(who))
    return {name: client.get(url).content.decode() for name, url in pages(world).items()}


def who_user(name):
    return get_user_model().objects.get(username=name)


def who_exists(name):
    return get_user_model().objects.filter(username=name).exists()


@pytest.mark.parametrize("who", ["anonymous", "stranger", "owner"])
def test_no_one_but_staff_sees_internals(client, who, world, staff, make_user):
    for name, body in visit(client, who, world, make_user).items():
        found = [term for term in INTERNALS if term in body]
        assert not found, f"{who} sees {found} on {name}"
    html = visit(client, who, world, make_user)
    # The weights problem, in a plain sentence, on every page.
    assert "Similarity search is being set up on this server" in html["home"]
    assert "1 image searchable" in html["gallery"]


def test_the_owner_reads_why_an_image_failed_in_plain_words(client, owner, world, make_user):
    html = visit(client, "owner", world, make_user)
    assert "The image could not be decoded." in html["failed image"]
    assert "Failed images" in html["gallery"] and "The image could not be decoded." in html["gallery"]


def test_staff_see_every_internal(client, staff, world, make_user):
    html = visit(client, "staff", world, make_user)
    assert "SHA-256" in html["image"] and world[1].sha256[:10] in html["image"]
    assert "Moderation" in html["image"]
    assert DECODE_ERROR in html["failed image"]
    assert WEIGHTS_ERROR in html["home"]
    assert "Index v7: recall@10 0.996 measured on 400 of its images" in html["gallery"]
    assert '"version": 7' in html["status.json"] and '"search_k": 4096' in html["api status"]
    assert 'id="health"' in html["gallery"] and "search_k 4096, pool 256" in html["gallery"]
    assert DECODE_ERROR in html["gallery"]  # the health panel's latest failures, verbatim
    assert "PCA of index v7, laid out in 0.25 s" in html["map"]


def test_the_status_json_for_people_says_whether_search_is_ready(client, owner, world):
    gallery = world[0]
    client.force_login(owner)
    index = client.get(reverse("gallery_status", args=[gallery.slug])).json()["index"]
    assert index == {
        "ready": True,
        "items": 1,
        "built_at": index["built_at"],
        "stale": gallery.index_dirty,
        "label": "1 image searchable" + (" · update queued" if gallery.index_dirty else ""),
    }


def test_search_with_a_picture_unavailable_reads_plainly_to_people():
    from gallery.search.queries import QueryImageError, QueryUnavailable
    from gallery.views.common import query_error_message

    class Person:
        is_staff = False

    class Staff:
        is_staff = True

    down = QueryUnavailable(f"Search with a picture is unavailable: {WEIGHTS_ERROR}")
    assert query_error_message(down, Person()) == UNAVAILABLE_FOR_PEOPLE
    assert query_error_message(down, Staff()) == str(down)
    bad = QueryImageError("The file is not an image.")
    assert query_error_message(bad, Person()) == "The file is not an image."
