"""IMAGESEARCH_AUTOFLAG_DISTANCE: an upload whose vector lies that close to a rejected
image of the same gallery is flagged for the moderators, with the reason in the queue.
Real VGG16 vectors (seeded random weights): a near-duplicate lies at a cosine distance
of about 0.0002 from its original, distinct generated scenes at 0.002 or more."""

import pytest
from django.urls import reverse

from gallery import selectors, services
from gallery.models import Image, ModerationEvent, ModerationState
from tests import imagegen

pytestmark = pytest.mark.django_db

THRESHOLD = 0.001  # between near-duplicates (~0.0002) and distinct scenes (>= 0.002)


@pytest.fixture
def gallery(owner):
    return services.gallery_create(owner=owner, title="Street", visibility="public")


def add(gallery, name, data):
    return services.image_create(gallery=gallery, uploader=gallery.owner, data=data, name=name).image


def near_copy(seed, variant):
    return imagegen.encode(imagegen.near_duplicate(imagegen.scene(seed), variant))


@pytest.fixture
def rejected(gallery, staff):
    image = add(gallery, "banned.jpg", imagegen.jpeg(70))
    services.images_embed(image_ids=[image.pk])
    return services.image_moderate(image=image, actor=staff, state=ModerationState.REJECTED, reason="Hate symbol")


def test_embedding_an_upload_near_a_rejected_image_flags_it_with_the_reason(settings, gallery, rejected):
    settings.IMAGESEARCH_AUTOFLAG_DISTANCE = THRESHOLD
    copy = add(gallery, "sneaky.jpg", near_copy(70, 1))
    distinct = add(gallery, "fine.jpg", imagegen.jpeg(71))
    services.images_embed(image_ids=[copy.pk, distinct.pk])
    copy.refresh_from_db()
    distinct.refresh_from_db()

    nearest = selectors.rejected_neighbours(image=copy)[0]
    assert nearest.image.pk == rejected.pk and nearest.distance < THRESHOLD
    assert selectors.rejected_neighbours(image=distinct)[0].distance >= THRESHOLD
    assert copy.flagged and not distinct.flagged
    assert copy.flag_match_id == rejected.pk
    assert copy.flag_distance == pytest.approx(nearest.distance, abs=1e-6)
    assert "banned.jpg" in copy.flag_reason and "Hate symbol" in copy.flag_reason
    event = ModerationEvent.objects.get(image=copy)
    assert event.actor is None and event.reason.startswith("Auto-flagged: ")
    assert copy.moderation_state == ModerationState.PENDING  # flagged, not decided


def test_auto_flagging_is_off_by_default(settings, gallery, rejected):
    assert settings.IMAGESEARCH_AUTOFLAG_DISTANCE == 0
    copy = add(gallery, "sneaky.jpg", near_copy(70, 1))
    services.images_embed(image_ids=[copy.pk])
    copy.refresh_from_db()
    assert not copy.flagged and copy.flag_reason == ""


def test_only_rejected_images_of_the_same_gallery_count(settings, owner, gallery, rejected):
    settings.IMAGESEARCH_AUTOFLAG_DISTANCE = THRESHOLD
    elsewhere = services.gallery_create(owner=owner, title="Elsewhere")
    copy = add(elsewhere, "copy.jpg", imagegen.jpeg(70))
    services.images_embed(image_ids=[copy.pk])
    copy.refresh_from_db()
    assert copy.embedding_state == "ready" and not copy.flagged


def test_rejecting_an_image_flags_its_pending_look_alikes(settings, gallery, staff):
    settings.IMAGESEARCH_AUTOFLAG_DISTANCE = THRESHOLD
    original = add(gallery, "original.jpg", imagegen.jpeg(72))
    copy = add(gallery, "copy.jpg", near_copy(72, 2))
    other = add(gallery, "other.jpg", imagegen.jpeg(73))
    services.images_embed(image_ids=[original.pk, copy.pk, other.pk])
    assert not Image.objects.filter(flagged=True).exists()
    services.image_moderate(image=original, actor=staff, state=ModerationState.REJECTED, reason="Spam")
    assert set(Image.objects.filter(flagged=True).values_list("original_name", flat=True)) == {"copy.jpg"}


def test_the_queue_shows_the_flag_reason_and_filters_on_it(settings, client, staff, gallery, rejected):
    settings.IMAGESEARCH_AUTOFLAG_DISTANCE = THRESHOLD
    copy = add(gallery, "sneaky.jpg", near_copy(70, 1))
    fine = add(gallery, "fine.jpg", imagegen.jpeg(74))
    services.images_embed(image_ids=[copy.pk, fine.pk])
    copy.refresh_from_db()
    client.force_login(staff)

    queue = client.get(reverse("admin:gallery_moderationqueueitem_changelist"))
    assert {img.pk for img in queue.context["cl"].result_list} == {copy.pk, fine.pk}
    assert copy.flag_reason in queue.content.decode()
    flagged = client.get(reverse("admin:gallery_moderationqueueitem_changelist"), {"flagged": "yes"})
    assert [img.pk for img in flagged.context["cl"].result_list] == [copy.pk]
    unflagged = client.get(reverse("admin:gallery_image_changelist"), {"flagged": "no"})
    assert copy.pk not in {img.pk for img in unflagged.context["cl"].result_list}
    change = client.get(reverse("admin:gallery_image_change", args=[copy.pk])).content.decode()
    assert copy.flag_reason in change


def test_a_flagged_upload_waits_for_a_moderator_even_under_post_moderation(
    settings, client, other, staff, gallery, rejected
):
    settings.IMAGESEARCH_AUTOFLAG_DISTANCE = THRESHOLD
    settings.IMAGESEARCH_MODERATION = "post"
    copy = add(gallery, "sneaky.jpg", near_copy(70, 1))
    services.images_embed(image_ids=[copy.pk])
    client.force_login(other)
    assert client.get(reverse("image_detail", args=[copy.pk])).status_code == 404
    client.force_login(gallery.owner)
    assert client.get(reverse("image_detail", args=[copy.pk])).status_code == 200

    services.image_moderate(image=Image.objects.get(pk=copy.pk), actor=staff, state=ModerationState.APPROVED)
    client.force_login(other)
    assert client.get(reverse("image_detail", args=[copy.pk])).status_code == 200
