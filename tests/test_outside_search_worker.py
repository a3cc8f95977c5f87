"""Search with an outside picture through the real page: a real `celery worker -Q query`
(the Procfile's query worker) with the real VGG16 (random weights) embeds the picture,
the web side (this process) never loads the model, and the results' GET URL lists the
picture's near-duplicate first."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from gallery import services
from gallery.embedding import backbones
from gallery.models import EmbeddingState, Gallery, IndexBuild, OutsideQuery
from gallery.views.common import UNAVAILABLE_FOR_PEOPLE
from tests import imagegen, live

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_the_query_worker_embeds_an_outside_picture_and_its_near_duplicate_comes_first(
    client, owner, staff, tmp_path, settings
):
    live.require_redis()
    live.flush_broker()
    gallery = services.gallery_create(owner=owner, title="Field cameras")
    for seed in range(6):
        services.image_create(gallery=gallery, uploader=owner, data=imagegen.jpeg(seed), name=f"scene-{seed}.jpg")
    with live.Worker(tmp_path, name="embed", queues="embed,index,default") as worker:
        live.wait_for(
            lambda: IndexBuild.objects.filter(gallery=gallery, status="ready", item_count=6).exists(),
            timeout=240,
            message="6 images embedded and indexed",
            worker=worker,
        )
    assert Gallery.objects.get(pk=gallery.pk).images.filter(embedding_state=EmbeddingState.READY).count() == 6

    with live.Worker(tmp_path, name="query", queues="query", beat=False) as worker:
        live.wait_for(
            lambda: "model loaded" in worker.output(), timeout=180, message="the query worker's model", worker=worker
        )
        client.force_login(owner)
        picture = imagegen.encode(imagegen.near_duplicate(imagegen.scene(3), 5), "PNG")
        response = client.post(
            reverse("gallery_search", args=[gallery.slug]) + "?k=4",
            {"image": SimpleUploadedFile("holiday-shot.png", picture, "image/png")},
        )
        assert response.status_code == 303, response.content.decode()[:2000]
        page = client.get(response["Location"])
        log = worker.output()
    assert page.status_code == 200
    results = [m.image.original_name for m in page.context["matches"]]
    assert results[0] == "scene-3.jpg" and len(results) == 4
    distances = [m.distance for m in page.context["matches"]]
    assert distances == sorted(distances)
    assert "query embedded in" in log and "gallery.tasks.embed_query" in log
    stored = OutsideQuery.objects.get()
    assert stored.original_name == "holiday-shot.png" and stored.embedding_version.startswith("vgg16-")
    assert backbones.active()._model is None  # this process (the web side) never built the model

    # With no query worker running, the page says so in words, within the timeout:
    # a plain sentence to the owner, the technical reason to staff.
    settings.IMAGESEARCH_QUERY_TIMEOUT_SECONDS = 2
    gallery.visibility = "public"
    gallery.save(update_fields=["visibility"])
    for user, shown, hidden in (
        (owner, UNAVAILABLE_FOR_PEOPLE, "no query worker answered"),
        (staff, "no query worker answered within 2 s", UNAVAILABLE_FOR_PEOPLE),
    ):
        client.force_login(user)
        response = client.post(
            reverse("gallery_search", args=[gallery.slug]),
            {"image": SimpleUploadedFile("again.png", picture, "image/png")},
        )
        assert response.status_code == 503
        body = response.content.decode()
        assert shown in body and hidden not in body, response.context["error"]
