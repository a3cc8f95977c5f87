"""Staff's gallery health panel and its one-click repair: who may use it, and what one repair queues."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from gallery import jobs, services
from gallery.models import EmbeddingState, Gallery, GroupingRun, Image, IndexBuild
from tests import imagegen

pytestmark = pytest.mark.django_db


@pytest.fixture
def gallery(owner, queued):
    gallery = services.gallery_create(owner=owner, title="Cams")
    for i in range(4):
        services.image_create(gallery=gallery, uploader=owner, data=imagegen.jpeg(i), name=f"c{i}.jpg")
    ids = list(gallery.images.order_by("pk").values_list("pk", flat=True))
    long_ago = timezone.now() - timedelta(hours=2)
    Image.objects.filter(pk=ids[0]).update(embedding_state=EmbeddingState.READY)
    Image.objects.filter(pk=ids[1]).update(embedding_state=EmbeddingState.FAILED, embedding_error="Truncated file.")
    Image.objects.filter(pk=ids[2]).update(
        embedding_state=EmbeddingState.PROCESSING,
        claim_token="00000000-0000-0000-0000-000000000001",
        claimed_at=long_ago,
    )
    # ids[3] stays pending (its task was lost, say)
    build = IndexBuild.objects.create(gallery=gallery, version=2, item_count=1, snapshot_at=long_ago, built_at=long_ago)
    Gallery.objects.filter(pk=gallery.pk).update(current_index=build, index_dirty=False)
    IndexBuild.forget_cached()
    GroupingRun.objects.create(gallery=gallery, build=build, status=GroupingRun.Status.FAILED, error="Out of memory.")
    queued.clear()
    return Gallery.objects.get(pk=gallery.pk), ids


@pytest.fixture
def published(monkeypatch):
    sent = []
    monkeypatch.setattr(jobs, "publish_rebuild", lambda gid: sent.append(("rebuild", gid)) or True)
    monkeypatch.setattr(jobs, "publish_find_duplicates", lambda gid, bid: sent.append(("group", gid, bid)) or True)
    monkeypatch.setattr(jobs, "publish_build_map", lambda gid, bid: sent.append(("map", gid, bid)) or True)
    return sent


def test_only_staff_see_the_panel(client, gallery, owner, other, staff):
    g, _ids = gallery
    Gallery.objects.filter(pk=g.pk).update(visibility="public")
    for user in (None, other, owner):
        client.logout()
        if user:
            client.force_login(user)
        assert 'id="health"' not in client.get(g.get_absolute_url()).content.decode()
    client.force_login(staff)
    page = client.get(g.get_absolute_url()).content.decode()
    assert 'id="health"' in page
    assert (
        "<strong>1</strong> ready · <strong>1</strong> pending · <strong>1</strong> processing (<strong>1</strong> stuck)"
        in page
    )
    assert "v2, 1 item" in page and "2\xa0hours ago" in page
    assert "Failed: Out of memory." in page  # the grouping's failure
    assert "Truncated file." in page


def test_only_staff_may_repair(client, gallery, owner, other, published):
    g, _ids = gallery
    url = reverse("gallery_repair", args=[g.slug])
    assert client.post(url).status_code == 302 and "/accounts/login/" in client.post(url)["Location"]
    for user in (other, owner):
        client.force_login(user)
        assert client.post(url).status_code == 404
    assert published == []
    assert Image.objects.filter(embedding_state=EmbeddingState.FAILED).count() == 1


def test_one_repair_queues_everything_outstanding_and_a_second_only_what_still_is(
    client, gallery, staff, queued, published, django_capture_on_commit_callbacks
):
    g, ids = gallery
    client.force_login(staff)
    url = reverse("gallery_repair", args=[g.slug])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, HTTP_ACCEPT="application/json")
    body = response.json()
    assert (body["retried"], body["requeued"], body["rebuild"], body["grouping"], body["map"]) == (
        1,
        3,
        True,
        True,
        True,
    )
    assert "1 failed image retried; 3 waiting images queued again; index rebuild requested" in body["message"]
    assert {i for batch in queued for i in batch} == set(ids[1:])  # the failed, the stuck and the lost one
    assert set(Image.objects.filter(pk__in=ids[1:]).values_list("embedding_state", flat=True)) == {
        EmbeddingState.PENDING
    }
    build = IndexBuild.objects.get(gallery=g)
    assert ("rebuild", g.pk) in published and ("group", g.pk, build.pk) in published
    assert ("map", g.pk, build.pk) in published
    assert not GroupingRun.objects.filter(build=build).exists()  # the failed run is gone: the task runs again
    assert Gallery.objects.get(pk=g.pk).index_dirty

    # A grouping that then succeeds is not queued again; images still waiting are.
    GroupingRun.objects.create(gallery=g, build=build, status=GroupingRun.Status.READY)
    queued.clear()
    published.clear()
    with django_capture_on_commit_callbacks(execute=True):
        again = client.post(url, follow=True)
    assert again.status_code == 200 and "Repair queued: 0 failed images retried" in again.content.decode()
    assert ("group", g.pk, build.pk) not in published and ("rebuild", g.pk) in published
