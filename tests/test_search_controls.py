"""The result pages say which search control is invalid and why (a 400), as the API does,
instead of quietly searching with the defaults."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from gallery import services
from gallery.embedding import backbones
from gallery.models import Gallery
from tests import imagegen, vectors

pytestmark = pytest.mark.django_db


@pytest.fixture
def image(owner):
    gallery = Gallery.objects.create(owner=owner, title="G", slug="g")
    images = vectors.add_images(gallery, vectors.clustered(30, seed=3))
    services.gallery_rebuild_index(gallery_id=gallery.pk)
    return images[0]


@pytest.mark.parametrize(
    "query, label",
    [
        ({"k": 0}, "Results"),
        ({"k": "ten"}, "Results"),
        ({"max_distance": 3}, "Max distance"),
        ({"page": 0}, "Page"),
        ({"k": 100, "page": 11}, "Page"),
    ],
)
def test_find_similar_names_the_invalid_control_and_searches_nothing(client, owner, image, query, label):
    client.force_login(owner)
    response = client.get(reverse("image_similar", args=[image.pk]), query)
    assert response.status_code == 400
    text = response.content.decode()
    assert "Nothing was searched" in text and f"{label}:" in text
    assert response.context["matches"] == []


def test_valid_controls_still_search(client, owner, image):
    client.force_login(owner)
    response = client.get(reverse("image_similar", args=[image.pk]), {"k": 6, "page": 2})
    assert response.status_code == 200
    assert [m.rank for m in response.context["matches"]] == list(range(7, 13))
    assert "Nothing was searched" not in response.content.decode()


def test_an_outside_search_with_an_invalid_control_is_refused_before_the_picture_is_embedded(client, owner, image):
    client.force_login(owner)
    upload = SimpleUploadedFile("query.jpg", imagegen.jpeg(5), content_type="image/jpeg")
    backbone = backbones.active()  # the fake: it counts the batches it embeds
    calls = backbone.calls
    response = client.post(reverse("gallery_search", args=[image.gallery.slug]) + "?k=500", {"image": upload})
    assert response.status_code == 400
    assert "Results:" in response.content.decode()
    assert backbone.calls == calls  # not embedded
    upload.seek(0)
    ok = client.post(reverse("gallery_search", args=[image.gallery.slug]) + "?k=5", {"image": upload}, follow=True)
    assert ok.redirect_chain[0][1] == 303  # to the results' GET URL
    assert ok.status_code == 200 and len(ok.context["matches"]) == 5
    assert backbone.calls == calls + 1
