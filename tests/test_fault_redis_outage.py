"""The broker goes away while people upload: nothing is lost.

A private redis-server (never the shared one) serves as broker to a real
gunicorn and a real `celery worker` (with beat). It is stopped while 200
images are uploaded through HTTP, then started again, empty, on the same
port. Every upload succeeds, the images wait in pending, and the reconciler
(beat) queues them again once the broker is back, with nobody acting.
"""

import time

import pytest

from gallery import jobs, services
from gallery.models import EmbeddingState, Image, IndexBuild
from tests import imagegen, live

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PER_REQUEST = 10


def _upload(client, slug, seeds):
    response = client.upload(slug, [(f"outage-{s}.jpg", imagegen.jpeg(s, size=(160, 120))) for s in seeds])
    assert response.status_code == 200, response.text[:500]
    statuses = [r["status"] for r in response.json()["results"]]
    assert statuses == ["added"] * len(seeds), response.json()
    return response


def test_images_uploaded_while_redis_is_down_wait_in_pending_and_all_become_ready_when_it_is_back(owner, tmp_path):
    broker = live.RedisServer(tmp_path).start()
    env = {
        "CELERY_BROKER_URL": broker.url,
        "IMAGESEARCH_RECONCILE_SECONDS": "2",
        "IMAGESEARCH_INDEX_REBUILD_SECONDS": "2",
    }
    gallery = services.gallery_create(owner=owner, title="Outage")
    web = live.Web(tmp_path, **env)
    worker = live.Worker(tmp_path, **env)
    try:
        web.start()
        worker.start()
        client = live.HttpClient(web.url).login("owner", "pw-owner-123")

        # Before the outage: uploads are queued as usual.
        for start in range(0, 40, PER_REQUEST):
            _upload(client, gallery.slug, range(start, start + PER_REQUEST))

        broker.stop()
        outage_started = time.monotonic()
        for start in range(40, 200, PER_REQUEST):
            _upload(client, gallery.slug, range(start, start + PER_REQUEST))
        upload_seconds = time.monotonic() - outage_started
        during = Image.objects.filter(gallery=gallery, original_name__regex=r"^outage-([4-9]\d|1\d\d)\.jpg$")
        assert during.count() == 160
        # Nothing can reach a worker while the broker is down: they all wait.
        assert set(during.values_list("embedding_state", flat=True)) == {EmbeddingState.PENDING}
        assert Image.objects.filter(gallery=gallery).count() == 200
        # Pages still answer while the broker is down.
        assert client.get(f"/g/{gallery.slug}/").status_code == 200
        time.sleep(3)  # a few reconciler periods pass with no broker: still nothing lost
        assert Image.objects.filter(gallery=gallery).count() == 200

        broker.start()  # same port, empty: every task queued before the outage is gone too
        live.wait_for(
            lambda: Image.objects.filter(gallery=gallery, embedding_state=EmbeddingState.READY).count() == 200,
            timeout=600,
            interval=2,
            message="all 200 images ready after the outage",
            worker=worker,
        )
        live.wait_for(
            lambda: IndexBuild.objects.filter(gallery=gallery, status="ready", item_count=200).exists(),
            timeout=120,
            interval=1,
            message="an index build with all 200 images",
            worker=worker,
        )
    finally:
        worker.stop()
        web.stop()
        broker.stop()

    assert Image.objects.filter(gallery=gallery).count() == 200
    assert not Image.objects.filter(gallery=gallery).exclude(embedding_state=EmbeddingState.READY).exists()
    assert "re-queued" in worker.output(), "the reconciler, not a person, queued the pending images"
    print(f"160 uploads during the outage took {upload_seconds:.1f}s")


def test_after_a_failed_publish_uploads_skip_the_broker_briefly_then_try_again(monkeypatch):
    from gallery import tasks

    calls = []

    def broker_down(ids):
        calls.append(ids)
        raise ConnectionError("redis is down")

    monkeypatch.setattr(tasks.embed_images, "delay", broker_down)
    jobs.send_embed_task([1])
    jobs.send_embed_task([2])  # within the back-off: not even tried, stays pending
    assert calls == [[1]]
    jobs.reset()  # the back-off has run out
    jobs.send_embed_task([3])
    assert calls == [[1], [3]]
