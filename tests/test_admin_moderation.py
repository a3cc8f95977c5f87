"""Moderation through the Django admin, end to end with the test client: the queue,
approve, reject with a reason, the audit record, and the rejected image gone from
similar results and from the next index build (real VGG16 vectors, real Annoy files)."""

from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone

from gallery import selectors, services
from gallery.models import Gallery, Image, ModerationEvent, ModerationState
from gallery.search import engine, store
from tests import imagegen, live

pytestmark = pytest.mark.django_db

QUEUE = "admin:gallery_moderationqueueitem_changelist"
IMAGES = "admin:gallery_image_changelist"


def upload(gallery, name, data, age_minutes=0):
    result = services.image_create(gallery=gallery, uploader=gallery.owner, data=data, name=name)
    assert result.status == "added", result
    if age_minutes:
        Image.objects.filter(pk=result.image.pk).update(created_at=timezone.now() - timedelta(minutes=age_minutes))
    return Image.objects.get(pk=result.image.pk)


@pytest.fixture
def gallery(owner):
    return services.gallery_create(owner=owner, title="Holiday", visibility="public")


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


def run_action(client, action, images, changelist=IMAGES, **extra):
    return client.post(
        reverse(changelist),
        {"action": action, "_selected_action": [img.pk for img in images], "index": 0, **extra},
        follow=True,
    )


def test_the_queue_lists_only_pending_images_oldest_pending_first(staff_client, gallery, staff):
    newest = upload(gallery, "newest.jpg", imagegen.jpeg(1), age_minutes=1)
    oldest = upload(gallery, "oldest.jpg", imagegen.jpeg(2), age_minutes=30)
    middle = upload(gallery, "middle.jpg", imagegen.jpeg(3), age_minutes=10)
    decided = upload(gallery, "decided.jpg", imagegen.jpeg(4), age_minutes=60)
    services.image_moderate(image=decided, actor=staff, state=ModerationState.APPROVED)

    response = staff_client.get(reverse(QUEUE))
    assert response.status_code == 200
    assert [img.pk for img in response.context["cl"].result_list] == [oldest.pk, middle.pk, newest.pk]
    assert b"decided.jpg" not in response.content
    # The image list is oldest first too, so the pending filter of it is the same queue.
    filtered = staff_client.get(reverse(IMAGES), {"moderation_state__exact": "pending"})
    assert [img.pk for img in filtered.context["cl"].result_list] == [oldest.pk, middle.pk, newest.pk]


def test_approving_records_who_when_and_what(staff_client, gallery, staff):
    image = upload(gallery, "ok.jpg", imagegen.jpeg(5))
    before = timezone.now()
    response = run_action(staff_client, "approve", [image], changelist=QUEUE)
    assert response.status_code == 200
    assert b"1 image(s) marked approved" in response.content

    image.refresh_from_db()
    assert image.moderation_state == ModerationState.APPROVED
    assert image.moderated_by == staff and image.moderated_at >= before
    event = ModerationEvent.objects.get(image=image)
    assert (event.actor, event.from_state, event.to_state) == (staff, "pending", "approved")
    assert event.created_at >= before
    assert staff_client.get(reverse(QUEUE)).context["cl"].result_count == 0

    # Approving again is harmless: no second record.
    run_action(staff_client, "approve", [image])
    assert ModerationEvent.objects.filter(image=image).count() == 1


def test_rejecting_with_a_reason_records_it_and_shows_it_on_the_image(staff_client, client, gallery, staff, owner):
    image = upload(gallery, "spam.jpg", imagegen.jpeg(6))
    run_action(staff_client, "reject", [image], reason="Advertising, not a holiday photo")
    image.refresh_from_db()
    assert image.moderation_state == ModerationState.REJECTED
    assert image.moderation_note == "Advertising, not a holiday photo"
    event = ModerationEvent.objects.get(image=image)
    assert (event.actor, event.to_state, event.reason) == (staff, "rejected", "Advertising, not a holiday photo")

    change = staff_client.get(reverse("admin:gallery_image_change", args=[image.pk]))
    assert change.status_code == 200
    history = change.content.decode()
    assert "moderation history" in history.lower()
    assert "Advertising, not a holiday photo" in history and "staff" in history

    page = staff_client.get(reverse("image_detail", args=[image.pk])).content.decode()
    assert "Moderation history" in page and "Advertising, not a holiday photo" in page

    client.force_login(owner)
    owner_page = client.get(reverse("image_detail", args=[image.pk]))
    assert owner_page.status_code == 200
    assert "Advertising, not a holiday photo" in owner_page.content.decode()


def test_reject_without_a_reason_records_the_default_reason(staff_client, gallery):
    image = upload(gallery, "x.jpg", imagegen.jpeg(7))
    run_action(staff_client, "reject", [image], reason="   ")
    assert ModerationEvent.objects.get(image=image).reason == "Rejected by staff."


def test_the_change_page_panel_decides_and_opens_the_next_pending_image(staff_client, gallery, staff):
    first = upload(gallery, "first.jpg", imagegen.jpeg(8), age_minutes=20)
    second = upload(gallery, "second.jpg", imagegen.jpeg(9), age_minutes=10)
    page = staff_client.get(reverse("admin:gallery_moderationqueueitem_change", args=[first.pk]))
    assert page.status_code == 200
    body = page.content.decode()
    assert 'id="moderation-panel"' in body
    assert reverse("image_file", args=[first.pk]) in body  # the large preview
    assert 'name="_save"' not in body  # nothing to save: decisions go through the panel

    moderate = reverse("admin:gallery_moderationqueueitem_moderate", args=[first.pk])
    response = staff_client.post(moderate, {"decision": "reject", "reason": "Blurry duplicate", "next": "1"})
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:gallery_moderationqueueitem_change", args=[second.pk])
    first.refresh_from_db()
    assert (first.moderation_state, first.moderation_note, first.moderated_by) == (
        "rejected",
        "Blurry duplicate",
        staff,
    )

    response = staff_client.post(
        reverse("admin:gallery_moderationqueueitem_moderate", args=[second.pk]), {"decision": "approve", "next": "1"}
    )
    assert response["Location"] == reverse(QUEUE)  # the queue is empty
    assert staff_client.get(moderate).status_code == 405


def test_a_user_without_staff_rights_cannot_moderate(client, other, gallery):
    image = upload(gallery, "a.jpg", imagegen.jpeg(10))
    client.force_login(other)
    response = client.post(reverse("admin:gallery_image_moderate", args=[image.pk]), {"decision": "approve"})
    assert response.status_code == 302 and "login" in response["Location"]
    image.refresh_from_db()
    assert image.moderation_state == ModerationState.PENDING


def test_bulk_delete_removes_the_images_and_their_stored_files(
    staff_client, gallery, django_capture_on_commit_callbacks
):
    images = [upload(gallery, f"d{i}.jpg", imagegen.jpeg(20 + i)) for i in range(3)]
    names = [n for img in images for n in (img.file.name, img.thumbnail.name)]
    assert all(default_storage.exists(n) for n in names)
    with django_capture_on_commit_callbacks(execute=True):
        response = run_action(staff_client, "delete_selected", images[:2], post="yes")
    assert response.status_code == 200
    assert list(Image.objects.values_list("pk", flat=True)) == [images[2].pk]
    assert not any(default_storage.exists(n) for n in names[:4])
    assert all(default_storage.exists(n) for n in names[4:])
    assert Gallery.objects.get(pk=gallery.pk).index_dirty


# --- With real vectors ---------------------------------------------------------


def test_a_rejected_image_is_gone_from_similar_results_at_once_and_from_the_next_index_build(
    staff_client, client, gallery, staff
):
    original = upload(gallery, "beach.jpg", imagegen.jpeg(40))
    copy = upload(gallery, "beach-copy.jpg", imagegen.encode(imagegen.near_duplicate(imagegen.scene(40), 1)))
    others = [upload(gallery, f"other-{s}.jpg", imagegen.jpeg(s)) for s in (41, 42, 43)]
    assert services.images_embed(image_ids=[original.pk, copy.pk] + [o.pk for o in others]) == 5
    services.images_moderate(images=Image.objects.all(), actor=staff, state=ModerationState.APPROVED)
    first = services.gallery_rebuild_index(gallery_id=gallery.pk)
    assert first.item_count == 5

    similar = reverse("api_similar", args=[original.pk])
    assert staff_client.get(similar).json()["results"][0]["name"] == "beach-copy.jpg"

    staff_client.post(
        reverse("admin:gallery_image_moderate", args=[copy.pk]), {"decision": "reject", "reason": "Duplicate"}
    )
    assert Gallery.objects.get(pk=gallery.pk).index_dirty
    # The index still holds the copy; results drop it all the same, for everyone.
    for who in (staff_client, client):
        names = [r["name"] for r in who.get(similar).json()["results"]]
        assert "beach-copy.jpg" not in names and len(names) == 3
        page = who.get(reverse("image_similar", args=[original.pk]))
        assert "beach-copy.jpg" not in {m.image.original_name for m in page.context["matches"]}
    client.force_login(gallery.owner)
    assert "beach-copy.jpg" not in [r["name"] for r in client.get(similar).json()["results"]]

    second = services.gallery_rebuild_index(gallery_id=gallery.pk)
    copy.refresh_from_db()
    assert (second.version, second.item_count) == (first.version + 1, 4)
    ref = store.Ref(gallery.pk, second.version, second.checksum, second.n_trees, second.item_count)
    found, _ = engine.index_search(ref, copy.vector, 10)
    assert copy.pk not in set(int(pk) for pk in found) and len(found) == 4


def test_a_pending_image_page_shows_its_nearest_rejected_images_with_distances(staff_client, gallery, staff):
    rejected = upload(gallery, "banned.jpg", imagegen.jpeg(50))
    unrelated = upload(gallery, "unrelated-banned.jpg", imagegen.jpeg(51))
    pending = upload(gallery, "again.jpg", imagegen.encode(imagegen.near_duplicate(imagegen.scene(50), 3)))
    services.images_embed(image_ids=[rejected.pk, unrelated.pk, pending.pk])
    for img in (rejected, unrelated):
        services.image_moderate(image=img, actor=staff, state=ModerationState.REJECTED, reason="Not allowed here")
    pending.refresh_from_db()

    near = selectors.rejected_neighbours(image=pending)
    assert [m.image.pk for m in near] == [rejected.pk, unrelated.pk]
    assert near[0].distance < near[1].distance
    page = staff_client.get(reverse("admin:gallery_image_change", args=[pending.pk])).content.decode()
    assert "Nearest rejected images" in page
    assert reverse("admin:gallery_image_change", args=[rejected.pk]) in page
    assert f"distance {near[0].distance:.4f}" in page and f"distance {near[1].distance:.4f}" in page
    assert page.index(f"distance {near[0].distance:.4f}") < page.index(f"distance {near[1].distance:.4f}")


# --- Gallery admin ----------------------------------------------------------------


def test_the_gallery_admin_shows_counts_by_state_and_index_status(staff_client, gallery, staff):
    images = [upload(gallery, f"g{i}.jpg", imagegen.jpeg(60 + i)) for i in range(4)]
    services.images_embed(image_ids=[img.pk for img in images])
    services.image_moderate(image=images[0], actor=staff, state=ModerationState.APPROVED)
    services.image_moderate(image=images[1], actor=staff, state=ModerationState.REJECTED, reason="no")
    build = services.gallery_rebuild_index(gallery_id=gallery.pk)
    upload(gallery, "late.jpg", imagegen.jpeg(64))  # not embedded yet

    response = staff_client.get(reverse("admin:gallery_gallery_changelist"))
    row = response.context["cl"].result_list[0]
    assert (row.n_images, row.n_pending, row.n_approved, row.n_rejected) == (5, 3, 1, 1)
    assert (row.n_ready, row.n_waiting, row.n_failed) == (4, 1, 0)
    assert (row.index_version, row.index_items, row.index_built_at) == (build.version, 3, build.built_at)
    assert row.index_dirty is False

    change = staff_client.get(reverse("admin:gallery_gallery_change", args=[gallery.pk])).content.decode()
    assert "5 images: 3 pending review (0 auto-flagged), 1 approved, 1 rejected" in change
    assert "1 being embedded, 4 embedded, 0 failed" in change
    assert f"Version {build.version}, 3 items" in change and "up to date" in change
    assert "Rebuild index now" in change

    services.image_moderate(image=images[2], actor=staff, state=ModerationState.REJECTED, reason="no")
    change = staff_client.get(reverse("admin:gallery_gallery_change", args=[gallery.pk])).content.decode()
    assert "stale: a rebuild is due" in change


@pytest.mark.integration
def test_rebuild_index_now_puts_a_rebuild_on_the_broker(staff_client, gallery, django_capture_on_commit_callbacks):
    import redis
    from django.conf import settings

    live.require_redis()
    live.flush_broker()
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    with django_capture_on_commit_callbacks(execute=True):
        response = run_action(staff_client, "rebuild_now", [gallery], changelist="admin:gallery_gallery_changelist")
    assert b"Index rebuild queued for 1 gallery" in response.content
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(reverse("admin:gallery_gallery_rebuild_index", args=[gallery.pk]))
    assert response.status_code == 302
    assert broker.llen("index") == 2
    assert Gallery.objects.get(pk=gallery.pk).index_dirty  # beat still rebuilds it if the message is lost
    live.flush_broker()
