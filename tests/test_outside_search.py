"""A search with an outside picture: the POST stores its vector and redirects (303) to a
signed GET URL of its results, which reloads, pages and can be shared until it expires.
The web process asks the query worker for the vector; when none answers, or the worker
has no weights, the page says so in words and nothing is stored."""

import base64
import time

import numpy as np
import pytest
from celery import current_app
from django.core import signing
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from gallery import embedding, jobs, search, services, tasks
from gallery.embedding import backbones
from gallery.models import Gallery, ModerationState, OutsideQuery, Visibility
from gallery.search import queries
from gallery.services import outside_queries
from gallery.views.common import UNAVAILABLE_FOR_PEOPLE
from tests import imagegen

pytestmark = pytest.mark.django_db

QUERY = imagegen.encode(imagegen.near_duplicate(imagegen.scene(4), 3))  # nearest: scene-4.jpg


def basic(user):
    token = base64.b64encode(f"{user.username}:pw-{user.username}-123".encode()).decode()
    return {"HTTP_AUTHORIZATION": "Basic " + token}


def upload(data=QUERY, name="holiday.jpg"):
    return SimpleUploadedFile(name, data, "image/jpeg")


def make_gallery(owner, visibility=Visibility.PRIVATE, n=10):
    gallery = services.gallery_create(owner=owner, title="Scenes", visibility=visibility)
    for seed in range(n):
        services.image_create(gallery=gallery, uploader=owner, data=imagegen.jpeg(seed), name=f"scene-{seed}.jpg")
    services.images_embed(image_ids=list(gallery.images.values_list("pk", flat=True)))
    services.gallery_rebuild_index(gallery_id=gallery.pk)
    return gallery


@pytest.fixture
def gallery(owner):
    return make_gallery(owner)


def names(response):
    return [m.image.original_name for m in response.context["matches"]]


def post_search(client, gallery, query_string="", **kwargs):
    return client.post(reverse("gallery_search", args=[gallery.slug]) + query_string, {"image": upload()}, **kwargs)


# --- The GET URL ------------------------------------------------------------------


def test_the_post_redirects_to_a_get_url_that_shows_the_results_of_the_picture(client, owner, gallery):
    client.force_login(owner)
    response = post_search(client, gallery, "?k=5")
    assert response.status_code == 303
    url = response["Location"]
    assert url.startswith(f"/g/{gallery.slug}/search/") and url.endswith("/?k=5")
    page = client.get(url)
    assert page.status_code == 200
    expected = search.search_vector(user=owner, gallery=gallery, vector=queries.outside_vector(QUERY).vector, k=5)
    assert names(page) == [m.image.original_name for m in expected]
    assert names(page)[0] == "scene-4.jpg"
    text = page.content.decode()
    assert "holiday.jpg" in text and 'src="data:image/jpeg;base64,' in text  # the stored thumbnail, not the picture
    assert names(client.get(url)) == names(page)  # a reload shows the same results
    stored = OutsideQuery.objects.get()
    assert stored.gallery == gallery and stored.created_by == owner and stored.original_name == "holiday.jpg"
    assert stored.embedding_version == embedding.version() and len(bytes(stored.vector)) == 4 * embedding.dim()
    assert bytes(stored.thumbnail)[:2] == b"\xff\xd8"  # a JPEG thumbnail
    assert gallery.images.count() == 10  # the picture was searched with, never stored as an image


def test_the_no_js_form_keeps_its_result_count_and_max_distance(client, owner, gallery):
    client.force_login(owner)
    response = client.post(
        reverse("gallery_search", args=[gallery.slug]), {"image": upload(), "k": "6", "max_distance": "1.5"}
    )
    assert response.status_code == 303 and response["Location"].endswith("/?k=6&max_distance=1.5")


def test_the_get_url_pages_like_find_similar(client, owner, gallery):
    client.force_login(owner)
    url = post_search(client, gallery)["Location"].split("?")[0]
    first_six = names(client.get(url, {"k": 6}))
    second = client.get(url, {"k": 3, "page": 2})
    assert second.status_code == 200
    assert [m.rank for m in second.context["matches"]] == [4, 5, 6]
    assert names(second) == first_six[3:6]
    text = second.content.decode()
    assert "?k=3&amp;page=1" in text and "?k=3&amp;page=3" in text  # nearer and further
    assert 'name="band"' in text  # the controls, as on find similar (bands, once the index has them)
    distances = [m.distance for m in client.get(url, {"k": 6}).context["matches"]]
    near = client.get(url, {"k": 6, "max_distance": (distances[1] + distances[2]) / 2})
    assert names(near) == first_six[:2]


def test_an_invalid_control_on_the_get_url_is_named_and_searches_nothing(client, owner, gallery):
    client.force_login(owner)
    url = post_search(client, gallery)["Location"].split("?")[0]
    response = client.get(url, {"k": 500})
    assert response.status_code == 400 and "Nothing was searched" in response.content.decode()


def test_a_tampered_or_truncated_token_is_a_404_page_with_a_way_to_search_again(client, owner, gallery):
    client.force_login(owner)
    url = post_search(client, gallery)["Location"].split("?")[0]
    token = url.rstrip("/").rsplit("/", 1)[1]
    pk, stamp, sig = token.split(":")
    forged = f"{OutsideQuery.objects.create(gallery=gallery, embedding_version='x', vector=b'').pk}:{stamp}:{sig}"
    for bad in (forged, token[:-3], "not-a-token"):
        response = client.get(reverse("gallery_search_results", args=[gallery.slug, bad]))
        assert response.status_code == 404, bad
        text = response.content.decode()
        assert "This search link is not valid" in text
        assert f'href="{gallery.get_absolute_url()}#search-form"' in text
        assert "Traceback" not in text


def test_an_expired_link_is_a_410_page(client, owner, gallery, settings, monkeypatch):
    settings.IMAGESEARCH_QUERY_TTL_SECONDS = 60
    client.force_login(owner)
    url = post_search(client, gallery)["Location"]
    assert client.get(url).status_code == 200
    now = time.time()
    monkeypatch.setattr(signing.time, "time", lambda: now + 61)
    response = client.get(url)
    assert response.status_code == 410
    text = response.content.decode()
    assert "This search has expired" in text and "#search-form" in text


def test_a_purged_query_and_a_query_of_an_earlier_model_are_410_pages(client, owner, gallery):
    client.force_login(owner)
    url = post_search(client, gallery)["Location"]
    OutsideQuery.objects.update(embedding_version="vgg16-old-pipeline/imagenet")
    response = client.get(url)
    assert response.status_code == 410 and "earlier version of the model" in response.content.decode()
    OutsideQuery.objects.all().delete()
    response = client.get(url)
    assert response.status_code == 410 and "This search has expired" in response.content.decode()


def test_the_link_of_a_private_gallery_is_a_404_for_others(client, owner, other, gallery):
    client.force_login(owner)
    url = post_search(client, gallery)["Location"]
    client.force_login(other)
    assert client.get(url).status_code == 404
    client.logout()
    assert client.get(url).status_code == 404


def test_the_link_of_a_public_gallery_is_shared_and_filtered_for_each_viewer(client, owner, other, settings):
    settings.IMAGESEARCH_MODERATION = "pre"  # others see an upload once it is approved; its owner at once
    gallery = make_gallery(owner, visibility=Visibility.PUBLIC)
    for image in gallery.images.exclude(original_name="scene-4.jpg"):
        services.image_moderate(image=image, actor=owner, state=ModerationState.APPROVED)
    client.force_login(owner)
    url = post_search(client, gallery)["Location"]
    assert names(client.get(url))[0] == "scene-4.jpg"
    client.force_login(other)
    shared = client.get(url)
    assert shared.status_code == 200 and "scene-4.jpg" not in names(shared) and len(names(shared)) == 9
    client.logout()
    assert names(client.get(url)) == names(shared)


def test_a_link_of_one_gallery_does_not_open_under_another(client, owner, gallery):
    client.force_login(owner)
    url = post_search(client, gallery)["Location"]
    elsewhere = Gallery.objects.create(owner=owner, title="Other", slug="elsewhere")
    token = url.split("/search/")[1].split("/")[0]
    assert client.get(reverse("gallery_search_results", args=[elsewhere.slug, token])).status_code == 404


def test_expired_queries_are_purged_by_the_beat_task(owner, gallery, settings):
    settings.IMAGESEARCH_QUERY_TTL_SECONDS = 3600
    vector = queries.outside_vector(QUERY)
    old, fresh = (
        outside_queries.outside_query_create(gallery=gallery, user=owner, name=n, query=vector, picture=QUERY)
        for n in ("old.jpg", "fresh.jpg")
    )
    OutsideQuery.objects.filter(pk=old.pk).update(created_at=timezone.now() - timezone.timedelta(seconds=3601))
    assert tasks.purge_outside_queries() == 1
    assert list(OutsideQuery.objects.values_list("original_name", flat=True)) == ["fresh.jpg"]
    assert tasks.purge_outside_queries() == 0
    assert settings.CELERY_BEAT_SCHEDULE["purge-outside-queries"]["task"] == "gallery.tasks.purge_outside_queries"
    assert settings.CELERY_BEAT_SCHEDULE["purge-outside-queries"]["options"]["expires"] > 0


# --- The API ----------------------------------------------------------------------------


def test_the_api_answers_with_the_results_and_their_get_url(client, owner, gallery):
    response = client.post(reverse("api_search", args=[gallery.slug]) + "?k=4", {"image": upload()}, **basic(owner))
    assert response.status_code == 200, response.content
    body = response.json()
    assert [r["name"] for r in body["results"]][0] == "scene-4.jpg" and len(body["results"]) == 4
    assert body["url"].startswith(f"http://testserver/g/{gallery.slug}/search/") and body["url"].endswith("/?k=4")
    stored = OutsideQuery.objects.get()
    assert body["expires_at"] == outside_queries.outside_query_expires_at(stored).isoformat()
    client.force_login(owner)
    page = client.get(body["url"].removeprefix("http://testserver"))
    assert names(page) == [r["name"] for r in body["results"]]


# --- Through the query worker -------------------------------------------------------


@pytest.fixture
def through_worker(settings):
    """Outside pictures go to the query worker (the real Redis of the session), as in production."""
    settings.IMAGESEARCH_QUERY_IN_PROCESS = False
    settings.IMAGESEARCH_QUERY_TIMEOUT_SECONDS = 0.5


@pytest.fixture
def worker_inline(monkeypatch, through_worker):
    """Run each embed_query task at once in this process, as the query worker would: it answers through Redis."""
    task = current_app.tasks[jobs.EMBED_QUERY]
    sent = []

    def run(args, expires):
        sent.append(expires)
        task.run(*args)

    monkeypatch.setattr(task, "apply_async", run)
    return sent


def test_no_query_worker_is_a_readable_503_and_nothing_is_stored(client, owner, staff, gallery, through_worker):
    client.force_login(owner)
    assert UNAVAILABLE_FOR_PEOPLE in post_search(client, gallery).content.decode()  # workers are staff's business
    client.force_login(staff)
    calls = backbones.active().calls
    response = post_search(client, gallery)
    assert response.status_code == 503
    text = response.content.decode()
    assert "Search with a picture is unavailable: no query worker answered within 0.5 s." in text
    assert "Traceback" not in text
    assert backbones.active().calls == calls  # the web process did not embed it itself
    api = client.post(reverse("api_search", args=[gallery.slug]), {"image": upload()})
    assert api.status_code == 503 and "no query worker answered" in api.json()["error"]
    assert not OutsideQuery.objects.exists()


def test_the_query_worker_embeds_the_same_vector_as_this_process(client, owner, gallery, worker_inline):
    client.force_login(owner)
    response = post_search(client, gallery, "?k=5")
    assert response.status_code == 303
    assert worker_inline == [0.5]  # the task expires with the wait
    stored = OutsideQuery.objects.get()
    here = embedding.embed_batch([embedding.imaging.model_input(QUERY, embedding.input_size())])[0]
    np.testing.assert_array_equal(queries.stored_vector(stored), here)
    assert names(client.get(response["Location"]))[0] == "scene-4.jpg"


def test_a_query_worker_without_weights_answers_with_the_weights_message(
    client, owner, staff, gallery, worker_inline, monkeypatch
):
    message = "VGG16 weights file /models/vgg16.h5 does not exist."

    def no_weights(arrays):
        raise embedding.WeightsUnavailable(message)

    monkeypatch.setattr(embedding, "embed_batch", no_weights)
    client.force_login(owner)
    response = post_search(client, gallery)
    # The owner reads a plain sentence; the path of the weights file is for staff (and the log).
    assert response.status_code == 503
    assert UNAVAILABLE_FOR_PEOPLE in response.content.decode() and "/models/" not in response.content.decode()
    api = client.post(reverse("api_search", args=[gallery.slug]), {"image": upload()})
    assert api.status_code == 503 and api.json()["error"] == UNAVAILABLE_FOR_PEOPLE
    client.force_login(staff)
    response = post_search(client, gallery)
    assert response.status_code == 503
    assert f"Search with a picture is unavailable: {message}" in response.content.decode()
    api = client.post(reverse("api_search", args=[gallery.slug]), {"image": upload()})
    assert api.status_code == 503 and api.json()["error"] == f"Search with a picture is unavailable: {message}"
    assert not OutsideQuery.objects.exists()


def test_a_query_worker_of_another_model_version_is_refused(client, owner, staff, gallery, worker_inline, monkeypatch):
    answer = queries.answer
    monkeypatch.setattr(queries, "answer", lambda payload: {**answer(payload), "version": "other-model/imagenet"})
    client.force_login(staff)
    response = post_search(client, gallery)
    assert response.status_code == 503 and "the query worker embeds with other-model/imagenet" in (
        response.content.decode()
    )


def test_in_eager_mode_the_picture_is_embedded_in_the_web_process(client, owner, gallery, settings, through_worker):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    client.force_login(owner)
    calls = backbones.active().calls
    response = post_search(client, gallery)
    assert response.status_code == 303 and backbones.active().calls == calls + 1
