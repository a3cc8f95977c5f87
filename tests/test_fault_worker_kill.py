"""A worker SIGKILLed mid-batch, three times over: every image ends ready exactly once.

A real `celery worker` (with beat) embeds 160 uploads; each time it is in the
middle of a batch (images claimed, vectors not yet written) its whole process
group is SIGKILLed and a fresh worker is started. The claims of the dead
worker go stale, the reconciler puts them back in pending and queues them, and
no image is embedded twice: each id appears in exactly one "stored" log line
across all four workers, and vectors written before a kill are never rewritten.
"""

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from gallery import services
from gallery.models import EmbeddingState, Image, IndexBuild
from tests import imagegen, live

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

N = 160
KILLS = 3
STORED = re.compile(r"stored \d+ vector\(s\): ids ([\d,]*)")


def _ready():
    return dict(Image.objects.filter(embedding_state=EmbeddingState.READY).values_list("pk", "embedded_at"))


def test_a_worker_killed_mid_batch_three_times_loses_nothing_and_embeds_each_image_once(client, owner, tmp_path):
    live.require_redis()
    live.flush_broker()
    gallery = services.gallery_create(owner=owner, title="Crashes")
    client.force_login(owner)
    for start in range(0, N, 40):
        files = [
            SimpleUploadedFile(f"k{s}.jpg", imagegen.jpeg(1000 + s, size=(160, 120))) for s in range(start, start + 40)
        ]
        response = client.post(reverse("api_upload", args=[gallery.slug]), {"images": files})
        assert [r["status"] for r in response.json()["results"]] == ["added"] * 40
    ids = set(Image.objects.filter(gallery=gallery).values_list("pk", flat=True))
    assert len(ids) == N

    # Claims of a killed worker are taken back after 8 s; the reconciler runs every 2 s.
    env = {"IMAGESEARCH_STUCK_AFTER_SECONDS": "8", "IMAGESEARCH_RECONCILE_SECONDS": "2"}
    workers = []
    ready_before_kills = []
    try:
        for round_ in range(KILLS):
            worker = live.Worker(tmp_path, name=f"crash{round_}", **env).start()
            workers.append(worker)
            floor = len(_ready())
            # Mid-batch: at least one batch written by this worker and another one claimed.
            live.wait_for(
                lambda: (
                    len(_ready()) > floor
                    and Image.objects.filter(gallery=gallery, embedding_state=EmbeddingState.PROCESSING).exists()
                ),
                timeout=300,
                interval=0.2,
                message=f"worker {round_} in the middle of a batch",
                worker=worker,
            )
            worker.kill()
            in_flight = Image.objects.filter(gallery=gallery, embedding_state=EmbeddingState.PROCESSING).count()
            assert in_flight > 0, "the kill landed mid-batch"
            ready_before_kills.append(_ready())
            assert len(ready_before_kills[-1]) < N, "work was left for the next worker"

        last = live.Worker(tmp_path, name="survivor", **env).start()
        workers.append(last)
        live.wait_for(
            lambda: Image.objects.filter(gallery=gallery, embedding_state=EmbeddingState.READY).count() == N,
            timeout=600,
            interval=1,
            message=f"all {N} images ready",
            worker=last,
        )
        live.wait_for(
            lambda: IndexBuild.objects.filter(gallery=gallery, status="ready", item_count=N).exists(),
            timeout=120,
            interval=1,
            message=f"an index build with {N} items",
            worker=last,
        )
    finally:
        for worker in workers:
            worker.stop()

    assert Image.objects.filter(gallery=gallery).count() == N
    assert (
        set(Image.objects.filter(gallery=gallery, embedding_state=EmbeddingState.READY).values_list("pk", flat=True))
        == ids
    )

    writes = [int(pk) for w in workers for line in STORED.findall(w.output()) for pk in line.split(",") if pk]
    assert sorted(writes) == sorted(ids), "each image's vector was stored exactly once across all workers"

    final = _ready()
    for snapshot in ready_before_kills:
        assert {pk: final[pk] for pk in snapshot} == snapshot, "a vector written before a kill was never rewritten"
    # The dead workers' claims were really taken back: some images needed a second claim.
    assert Image.objects.filter(gallery=gallery, attempts__gt=1).exists()
