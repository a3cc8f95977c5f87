"""A real embed worker killed with SIGKILL in the middle of a batch loses nothing and
embeds nothing twice: after a restart every image is ready, and each vector was
written exactly once (counted from the workers' per-batch write log, and checked in
the database: images stored before the kill keep their vector and timestamp)."""

import re
from collections import Counter

import pytest
from django.core.management import call_command

from gallery import embedding
from gallery.models import EmbeddingState, Gallery, Image
from tests import imagegen, live

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

N = 24
WRITE_LOG = re.compile(r"stored (\d+) vector\(s\): ids ([\d,]*)")


def written_ids(*workers):
    """Every image id the workers' logs say they stored, with repeats."""
    ids = []
    for worker in workers:
        for count, listed in WRITE_LOG.findall(worker.output()):
            batch = [int(pk) for pk in listed.split(",") if pk]
            assert len(batch) == int(count)
            ids.extend(batch)
    return Counter(ids)


def by_state(state):
    return Image.objects.filter(embedding_state=state).count()


def test_a_worker_killed_mid_batch_loses_nothing_and_embeds_each_image_once(owner, tmp_path):
    live.require_redis()
    live.flush_broker()
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(N):  # photo-sized JPEGs, a spread over the classes
        label = imagegen.CLASSES[i % len(imagegen.CLASSES)]
        size = (256, 384) if i % 5 == 4 else (384, 256)
        (folder / f"{label}-{i}.jpg").write_bytes(imagegen.photo_jpeg(label, i, size))
    call_command("import_images", str(folder), gallery="crash", owner="owner", no_progress=True)
    gallery = Gallery.objects.get(slug="crash")
    ids = set(gallery.images.values_list("pk", flat=True))
    assert len(ids) == N and by_state(EmbeddingState.PENDING) == N

    # Batches of 4 in tasks of 16: a kill lands inside a task with claimed, unwritten images.
    env = dict(IMAGESEARCH_EMBED_BATCH_SIZE=4, IMAGESEARCH_STUCK_AFTER_SECONDS=15, IMAGESEARCH_RECONCILE_SECONDS=2)
    first = live.Worker(tmp_path, name="w1", **env).start()
    try:
        live.wait_for(
            lambda: by_state(EmbeddingState.READY) >= 4 and by_state(EmbeddingState.PROCESSING) > 0,
            timeout=300,
            interval=0.1,
            message="a first batch stored while the next is in progress",
            worker=first,
        )
        first.kill()
    finally:
        first.stop()

    # The dead worker's state, final now.
    stranded = set(Image.objects.filter(embedding_state=EmbeddingState.PROCESSING).values_list("pk", flat=True))
    before = {
        img.pk: (img.embedded_at, bytes(img.embedding))
        for img in Image.objects.filter(embedding_state=EmbeddingState.READY)
    }
    assert stranded, "the kill did not land inside a batch"
    assert 4 <= len(before) < N

    with live.Worker(tmp_path, name="w2", **env) as second:
        live.wait_for(
            lambda: by_state(EmbeddingState.READY) == N,
            timeout=400,
            message="every image ready after restart",
            worker=second,
        )
        writes = written_ids(first, second)

    images = {img.pk: img for img in Image.objects.all()}
    assert set(images) == ids
    version = embedding.version()
    for img in images.values():
        assert img.embedding_state == EmbeddingState.READY and img.claim_token is None
        assert img.embedding_version == version and img.vector.shape == (512,)
    # Exactly once: every image appears once in the write log of the two workers...
    assert set(writes) == ids
    assert all(n == 1 for n in writes.values()), {pk: n for pk, n in writes.items() if n != 1}
    # ...images stored before the kill were not written again...
    for pk, (embedded_at, vector) in before.items():
        assert (images[pk].embedded_at, bytes(images[pk].embedding)) == (embedded_at, vector)
    # ...and the ones the kill interrupted were claimed again and stored by the new worker.
    assert all(images[pk].attempts >= 2 for pk in stranded)
    assert set(stranded) <= set(written_ids(second))
