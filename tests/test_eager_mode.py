"""Without Redis the app still works: tasks run in the web process (eager mode),
the real model embeds the upload, and search answers exactly without an index."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from gallery import services
from gallery.models import EmbeddingState, Image, IndexBuild
from imagesearch.celery import app
from tests import imagegen

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def eager(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def test_uploads_are_embedded_in_process_and_searchable_without_an_index(client, owner, staff, eager):
    gallery = services.gallery_create(owner=owner, title="No redis")
    client.force_login(owner)
    original = imagegen.scene(11)
    files = [SimpleUploadedFile(f"s{i}.jpg", imagegen.jpeg(i)) for i in (10, 11, 12)]
    files.append(SimpleUploadedFile("s11-copy.jpg", imagegen.encode(imagegen.near_duplicate(original, 2))))
    client.post(reverse("gallery_upload", args=[gallery.slug]), {"images": files})

    assert set(Image.objects.values_list("embedding_state", flat=True)) == {EmbeddingState.READY}
    assert not IndexBuild.objects.exists()
    query = Image.objects.get(original_name="s11-copy.jpg")
    results = client.get(reverse("api_similar", args=[query.pk])).json()["results"]
    assert [r["name"] for r in results][0] == "s11.jpg"
    assert len(results) == 3

    page = client.get(reverse("home")).content.decode()
    # The owner is told in plain words; the technical reason is for staff.
    assert "more slowly than usual" in page and "Redis" not in page
    client.force_login(staff)
    assert "No Redis is reachable" in client.get(reverse("home")).content.decode()
