"""What the person waiting sees: the status JSON (counts by state, images/s measured
between batch writes, ETA), the failed images with their reasons and a retry (page and admin), and a
banner when the model weights cannot be loaded (images wait, none is lost)."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from gallery import services
from gallery.models import EmbeddingState, Image, SystemNotice
from tests import imagegen

pytestmark = pytest.mark.django_db


@pytest.fixture
def gallery(owner):
    return services.gallery_create(owner=owner, title="Status", visibility="public")


def add(gallery, owner, n, start=0):
    return [
        services.image_create(gallery=gallery, uploader=owner, data=imagegen.jpeg(s), name=f"s{s}.jpg").image.pk
        for s in range(start, start + n)
    ]


def set_state(ids, state, **fields):
    Image.objects.filter(pk__in=ids).update(embedding_state=state, **fields)


def status(client, gallery):
    response = client.get(reverse("gallery_status", args=[gallery.slug]))
    assert response.status_code == 200
    return response.json()


def test_it_counts_images_by_state(client, gallery, owner, queued):
    ids = add(gallery, owner, 7)
    set_state(ids[:3], EmbeddingState.READY)
    set_state(ids[3:4], EmbeddingState.FAILED, embedding_error="bad")
    set_state(ids[4:5], EmbeddingState.PROCESSING, claimed_at=timezone.now())
    client.force_login(owner)

    s = status(client, gallery)

    assert s["counts"] == {"pending": 2, "processing": 1, "ready": 3, "failed": 1}
    assert (s["total"], s["done"], s["remaining"]) == (7, 4, 3)
    assert s == client.get(reverse("api_status", args=[gallery.slug])).json()


def test_rate_is_images_per_second_over_the_last_minute_and_gives_an_eta(client, gallery, owner, queued):
    ids = add(gallery, owner, 12)
    now = timezone.now()
    set_state(
        ids[:6], EmbeddingState.READY, claimed_at=now - timedelta(seconds=90), embedded_at=now - timedelta(seconds=20)
    )
    set_state(
        ids[6:9], EmbeddingState.READY, claimed_at=now - timedelta(seconds=120), embedded_at=now - timedelta(minutes=5)
    )
    client.force_login(owner)

    s = status(client, gallery)

    assert s["images_per_second"] == pytest.approx(6 / 60, abs=0.01)  # the old three do not count
    assert s["remaining"] == 3
    assert s["eta_seconds"] == pytest.approx(3 / (6 / 60), abs=2)


def test_rate_counts_from_the_first_claim_when_the_work_began_less_than_a_minute_ago(client, gallery, owner, queued):
    ids = add(gallery, owner, 8)
    now = timezone.now()
    # One batch of 4 claimed 8 s ago and written just now: 0.5 images/s, not 4/60.
    set_state(ids[:4], EmbeddingState.READY, claimed_at=now - timedelta(seconds=8), embedded_at=now)
    client.force_login(owner)

    s = status(client, gallery)

    assert s["images_per_second"] == pytest.approx(0.5, abs=0.05)
    assert s["eta_seconds"] == pytest.approx(8, abs=1)


def test_batches_give_the_rate_between_them_not_counting_a_model_load_before_the_first(client, gallery, owner, queued):
    # A worker loaded its model for 60 s, then wrote a batch of 4 every 4 s: 1 image/s. Over the
    # last minute since the first claim that would read 20/60 (an ETA three times too long).
    ids = add(gallery, owner, 30)
    now = timezone.now()
    claimed = now - timedelta(seconds=80)
    for lump in range(5):  # written 16, 12, 8, 4 and 0 s ago
        batch = ids[lump * 4 : lump * 4 + 4]
        written = now - timedelta(seconds=16 - 4 * lump)
        set_state(batch, EmbeddingState.READY, claimed_at=claimed, embedded_at=written)
    client.force_login(owner)

    s = status(client, gallery)

    assert s["images_per_second"] == pytest.approx(1.0, abs=0.02)  # 16 images after the first batch, over 16 s
    assert s["eta_seconds"] == pytest.approx(10, abs=1)


def test_a_stall_slows_the_rate_so_the_eta_grows(client, gallery, owner, queued):
    ids = add(gallery, owner, 20)
    now = timezone.now()
    # Batches of 4 every 4 s, then nothing for 40 s.
    for lump in range(3):
        written = now - timedelta(seconds=48 - 4 * lump)
        set_state(ids[lump * 4 : lump * 4 + 4], EmbeddingState.READY, claimed_at=now, embedded_at=written)
    client.force_login(owner)

    s = status(client, gallery)

    # 8 images after the first batch, over the 48 s since it (not the 8 s between the batches).
    assert s["images_per_second"] == pytest.approx(8 / 48, abs=0.01)
    assert s["eta_seconds"] == pytest.approx(8 / (8 / 48), abs=2)


def test_nothing_pending_means_no_eta_and_nothing_embedded_means_no_rate(client, gallery, owner, queued):
    add(gallery, owner, 2)
    client.force_login(owner)
    s = status(client, gallery)
    assert s["images_per_second"] == 0 and s["eta_seconds"] is None


def test_a_stranger_cannot_read_the_status_of_a_private_gallery(client, owner, other, queued):
    private = services.gallery_create(owner=owner, title="Private")
    client.force_login(other)
    assert client.get(reverse("gallery_status", args=[private.slug])).status_code == 404


def test_the_owner_sees_failed_images_with_their_reasons_and_can_retry_them(
    client, gallery, owner, queued, django_capture_on_commit_callbacks
):
    ids = add(gallery, owner, 3)
    set_state(ids[:1], EmbeddingState.FAILED, embedding_error="The image is damaged or truncated and cannot be read.")
    set_state(ids[1:], EmbeddingState.READY)
    queued.clear()
    client.force_login(owner)

    page = client.get(gallery.get_absolute_url()).content.decode()
    assert "Failed images" in page and "s0.jpg" in page and "damaged or truncated" in page

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("gallery_retry", args=[gallery.slug]), follow=True)

    assert response.status_code == 200
    assert "1 image(s) queued again" in response.content.decode()
    assert queued == [[ids[0]]]
    image = Image.objects.get(pk=ids[0])
    assert image.embedding_state == EmbeddingState.PENDING and image.embedding_error == ""
    assert status(client, gallery)["counts"]["failed"] == 0


def test_visitors_get_no_failed_list_and_cannot_retry(client, gallery, owner, other, queued):
    (pk,) = add(gallery, owner, 1)
    set_state([pk], EmbeddingState.FAILED, embedding_error="damaged")
    client.force_login(other)
    assert "Retry failed images" not in client.get(gallery.get_absolute_url()).content.decode()
    assert client.post(reverse("gallery_retry", args=[gallery.slug])).status_code == 404
    assert Image.objects.get(pk=pk).embedding_state == EmbeddingState.FAILED


def test_staff_retry_failed_images_from_the_admin(
    client, gallery, owner, staff, queued, django_capture_on_commit_callbacks
):
    ids = add(gallery, owner, 2)
    set_state(ids, EmbeddingState.FAILED, embedding_error="x")
    queued.clear()
    client.force_login(staff)

    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("admin:gallery_image_changelist"),
            {"action": "retry_embedding", "_selected_action": [str(pk) for pk in ids]},
        )

    assert Image.objects.filter(embedding_state=EmbeddingState.PENDING).count() == 2
    assert sorted(pk for batch in queued for pk in batch) == sorted(ids)


@pytest.mark.model
def test_unloadable_weights_show_a_banner_and_keep_images_pending_until_fixed(
    client, gallery, owner, staff, queued, settings, tmp_path
):
    ids = add(gallery, owner, 2)
    bad = tmp_path / "vgg16_notop.h5"
    bad.write_bytes(b"\x89HDF\r\n" + b"\x00" * 64)  # looks like HDF5, is not
    settings.IMAGESEARCH_VGG16_WEIGHTS = str(bad)

    assert services.images_embed(image_ids=ids) == 0

    client.force_login(owner)
    page = client.get(gallery.get_absolute_url()).content.decode()
    # The owner reads a plain sentence; the file's path and the loader's error are for staff.
    assert "Similarity search is being set up" in page and str(bad) not in page
    client.force_login(staff)
    page = client.get(gallery.get_absolute_url()).content.decode()
    assert "could not be loaded" in page and str(bad) in page
    assert status(client, gallery)["counts"]["pending"] == 2

    settings.IMAGESEARCH_VGG16_WEIGHTS = "none"  # the operator fixes the setting
    assert services.images_embed(image_ids=ids) == 2
    assert not SystemNotice.objects.exists()
    assert "could not be loaded" not in client.get(gallery.get_absolute_url()).content.decode()
