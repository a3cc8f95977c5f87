"""Near-duplicate groups: pairs by hash and by embedding, groups per build, the owner's decisions,
the trash, look-alikes at upload and the compare-only import."""

import numpy as np
import pytest
from django.core.management import call_command

from gallery import selectors, services
from gallery.analysis import duplicates
from gallery.embedding import imaging
from gallery.models import DuplicateDecision, DuplicateGroup, GroupingRun, Image, TrashedImage
from gallery.search import bands, cache, engine, store
from tests import imagegen, vectors

# --- Pairs and components ----------------------------------------------------


def _brute_hash_pairs(hashes, mirrors, bits):
    n = len(hashes)
    out = set()
    for a in range(n):
        for b in range(a + 1, n):
            d = min(
                imaging.hash_distance(hashes[a], hashes[b]),
                imaging.hash_distance(mirrors[a], hashes[b]),
                imaging.hash_distance(hashes[a], mirrors[b]),
            )
            if d <= bits:
                out.add((a, b))
    return out


def test_hash_pairs_are_every_pair_within_the_bits_mirrored_or_not_and_no_other():
    rng = np.random.default_rng(1)
    n = 300
    hashes = rng.integers(1, 1 << 62, n, dtype=np.int64)
    mirrors = rng.integers(1, 1 << 62, n, dtype=np.int64)
    for i in range(0, 60, 2):  # planted: 1..5 bits apart, so some fall outside 3
        flips = rng.choice(63, size=1 + i % 5, replace=False)
        hashes[i + 1] = hashes[i] ^ int(sum(1 << int(f) for f in flips))
    hashes[100] = mirrors[101] ^ 0b11  # a mirror image of 101, re-encoded
    hashes[200] = hashes[201] = imaging.NO_HASH  # flat pictures match nothing
    found = duplicates.hash_pairs(hashes, mirrors, 3)
    got = set(zip(found.a.tolist(), found.b.tolist(), strict=True))
    expected = _brute_hash_pairs(hashes, mirrors, 3) - {(200, 201)}
    assert got == expected
    assert (100, 101) in got
    assert len([p for p in got if p[0] < 60]) == sum(1 + i % 5 <= 3 for i in range(0, 60, 2))


def test_a_run_of_one_hash_longer_than_the_window_still_forms_one_group():
    n = 2000
    hashes = np.full(n, 12345, dtype=np.int64)
    found = duplicates.hash_pairs(hashes, hashes, 3)
    assert len(found) <= n * duplicates.HASH_WINDOW < n * (n - 1) // 2  # never the all-pairs square
    groups = duplicates.components(n, found)
    assert len(groups) == 1 and len(groups[0]) == n


def test_components_are_the_connected_groups_largest_first():
    pairs = duplicates.Pairs(np.array([0, 1, 5, 7]), np.array([1, 2, 6, 8]))
    groups = duplicates.components(10, pairs)
    assert [g.tolist() for g in groups] == [[0, 1, 2], [5, 6], [7, 8]]


def test_decided_pairs_are_left_out():
    ids = np.array([10, 20, 30, 40], dtype=np.int64)
    pairs = duplicates.Pairs(np.array([0, 1, 2]), np.array([1, 2, 3]))
    kept = duplicates.without(pairs, ids, [(30, 20), (99, 10)])
    assert list(zip(kept.a.tolist(), kept.b.tolist(), strict=True)) == [(0, 1), (2, 3)]


# --- Pairs by embedding: the page's rule, applied to every item ---------------


def _planted(n=600, copies=40, seed=3, noise=0.02):
    """Clustered vectors with `copies` of the first items slightly moved (edited copies)."""
    vecs = vectors.clustered(n, seed=seed, per_cluster=60)
    rng = np.random.default_rng(seed)
    moved = vecs[:copies] + rng.normal(0, noise, (copies, vecs.shape[1])).astype(np.float32)
    moved /= np.linalg.norm(moved, axis=1, keepdims=True)
    return np.concatenate([vecs, moved]).astype(np.float32)


@pytest.mark.django_db
def test_embedding_pairs_find_the_planted_copies_as_an_exact_neighbour_scan_judges_them(tmp_path):
    vecs = _planted()
    n = len(vecs)
    ids = np.arange(1, n + 1, dtype=np.int64)
    built = store.build(1, 1, ids, vecs, seed=0, hashes=np.zeros(n, dtype=np.int64))
    loaded = cache.load(store.Ref(1, 1, built.checksum, built.n_trees, built.item_count))
    white = store.read_whitening(1, 1)
    wv = np.stack([np.asarray(v) for v in loaded.vectors])
    wv = __import__("gallery.search.projection", fromlist=["whiten"]).whiten(white, wv)
    planted = 1.0 - np.sum(wv[:40] * wv[600:], axis=1)
    fitted = bands.Fitted(
        exact=bands.EXACT_DISTANCE,
        hash_bits=3,
        white=float(np.quantile(planted, 0.95)),
        similar=0.0,
        related=0.0,
        cdf_distances=np.array([0.0, 2.0]),
        cdf_shares=np.array([0.0, 1.0]),
    )
    found = duplicates.embedding_pairs(loaded, fitted, n_trees=built.n_trees)
    got = set(zip(found.a.tolist(), found.b.tolist(), strict=True))
    # The reference: each item's exact nearest, judged by the same Fitted.near().
    k = duplicates.NEIGHBOURS_SEARCHED
    expected = set()
    for i in range(n):
        cos = 1.0 - vecs @ vecs[i]
        cos[i] = np.inf
        nn = np.argsort(cos, kind="stable")[:k]
        near = fitted.near(
            cos[nn][None], hash_distances=np.full((1, k), 64), white_distances=(1.0 - wv[nn] @ wv[i])[None]
        )[0]
        expected |= {(min(i, int(j)), max(i, int(j))) for j in nn[near]}
    planted_pairs = {(i, 600 + i) for i in range(40)}
    assert len(got & expected) >= 0.98 * len(expected)
    assert len(got & planted_pairs) >= 0.9 * len(planted_pairs)
    assert len(got - expected) <= 0.02 * max(1, len(expected))


# --- Groups of a gallery, and resolving them ----------------------------------


def _rebuild(gallery):
    gallery.index_dirty = True
    services.gallery_rebuild_index(gallery_id=gallery.pk)
    gallery.refresh_from_db()
    return gallery.current_build()


@pytest.fixture
def dup_gallery(owner):
    """An indexed gallery whose images carry distinct hashes, with two planted hash families."""
    gallery, images, vecs, _build = vectors.indexed_gallery(owner, "dups", n=300, seed=5)
    for image in images:
        Image.objects.filter(pk=image.pk).update(phash=(image.pk * 0x9E3779B97F4A7C15) % (1 << 62) + 1)
    base = Image.objects.get(pk=images[0].pk).phash
    Image.objects.filter(pk=images[1].pk).update(phash=base ^ 0b1, width=800, height=600)  # the biggest picture
    Image.objects.filter(pk=images[2].pk).update(phash=base ^ 0b110)
    other = Image.objects.get(pk=images[10].pk).phash
    Image.objects.filter(pk=images[11].pk).update(phash=other ^ (1 << 50))
    build = _rebuild(gallery)
    return gallery, images, build


@pytest.mark.django_db
def test_a_build_is_grouped_once_with_the_largest_picture_suggested_as_keeper(dup_gallery):
    gallery, images, build = dup_gallery
    run = services.gallery_find_duplicates(gallery_id=gallery.pk, build_id=build.pk)
    assert run.status == GroupingRun.Status.READY and run.item_count == 300
    groups = list(selectors.open_groups(gallery=gallery))
    assert [sorted(m.image_id for m in g.members.all()) for g in groups] == [
        sorted(i.pk for i in images[:3]),
        sorted(i.pk for i in images[10:12]),
    ]
    assert groups[0].keeper_id == images[1].pk
    keeper_row = groups[0].members.get(image_id=images[1].pk)
    assert keeper_row.distance == 0 and keeper_row.hash_bits == 0
    assert services.gallery_find_duplicates(gallery_id=gallery.pk, build_id=build.pk) == run  # safe to run twice
    assert GroupingRun.objects.filter(build=build).count() == 1


@pytest.mark.django_db
def test_a_superseded_build_is_not_grouped(dup_gallery):
    gallery, _images, build = dup_gallery
    newer = _rebuild(gallery)
    assert services.gallery_find_duplicates(gallery_id=gallery.pk, build_id=build.pk) is None
    assert services.gallery_find_duplicates(gallery_id=gallery.pk, build_id=newer.pk).group_count == 2


@pytest.mark.django_db
def test_trashing_the_others_keeps_the_chosen_image_and_the_trash_restores_them(owner, dup_gallery):
    gallery, images, build = dup_gallery
    services.gallery_find_duplicates(gallery_id=gallery.pk, build_id=build.pk)
    group = selectors.open_groups(gallery=gallery).first()
    assert services.group_resolve(group=group, actor=owner, action="trash_others", keeper_id=images[2].pk) == 2
    assert not Image.objects.filter(pk__in=[images[0].pk, images[1].pk]).exists()
    assert Image.objects.filter(pk=images[2].pk).exists()
    trashed = TrashedImage.objects.filter(gallery=gallery)
    assert trashed.count() == 2 and all("Duplicate of" in t.reason for t in trashed)
    assert selectors.open_groups(gallery=gallery).count() == 1
    # Gone from search at once (before any rebuild), back after a restore, embedding reused.
    hits = engine.search_vector(user=owner, gallery=gallery, vector=Image.objects.get(pk=images[2].pk).vector, k=5)
    assert images[0].pk not in [m.image.pk for m in hits]
    restored = services.trash_restore(item=trashed.get(original_id=images[0].pk))
    assert restored.image is not None and restored.image.embedding_state == "ready"
    assert restored.image.original_name == images[0].original_name
    hits = engine.search_vector(user=owner, gallery=gallery, vector=restored.image.vector, k=3)
    assert hits[0].image.pk == restored.image.pk


@pytest.mark.django_db
def test_not_duplicates_is_remembered_across_builds_but_a_new_look_alike_still_groups(owner, dup_gallery):
    gallery, images, build = dup_gallery
    services.gallery_find_duplicates(gallery_id=gallery.pk, build_id=build.pk)
    group = selectors.open_groups(gallery=gallery).first()
    services.group_resolve(group=group, actor=owner, action="not_duplicates")
    assert DuplicateDecision.objects.filter(gallery=gallery).count() == 3  # every pair of the three
    newer = _rebuild(gallery)
    services.gallery_find_duplicates(gallery_id=gallery.pk, build_id=newer.pk)
    assert [g.size for g in selectors.open_groups(gallery=gallery)] == [2]  # only the other family
    (extra,) = vectors.add_images(gallery, np.zeros((1, vectors.DIM), dtype=np.float32) + 1 / np.sqrt(vectors.DIM))
    Image.objects.filter(pk=extra.pk).update(phash=Image.objects.get(pk=images[0].pk).phash)
    latest = _rebuild(gallery)
    services.gallery_find_duplicates(gallery_id=gallery.pk, build_id=latest.pk)
    sizes = {g.size: sorted(m.image_id for m in g.members.all()) for g in selectors.open_groups(gallery=gallery)}
    assert sizes[4] == sorted([extra.pk] + [i.pk for i in images[:3]])  # the new one joins all three


@pytest.mark.django_db
def test_resolve_all_and_bad_resolutions(owner, dup_gallery):
    gallery, images, build = dup_gallery
    services.gallery_find_duplicates(gallery_id=gallery.pk, build_id=build.pk)
    group = selectors.open_groups(gallery=gallery).first()
    with pytest.raises(services.ResolveError, match="one of the group"):
        services.group_resolve(group=group, actor=owner, action="trash_others", keeper_id=images[50].pk)
    with pytest.raises(services.ResolveError, match="Unknown action"):
        services.group_resolve(group=group, actor=owner, action="burn")
    assert services.groups_resolve_all(gallery=gallery, actor=owner, action="trash_others") == (2, 3)
    assert Image.objects.filter(pk__in=[images[1].pk, images[10].pk]).count() == 2
    assert not DuplicateGroup.objects.filter(gallery=gallery).exists()


@pytest.mark.django_db
def test_the_beat_sweep_queues_the_grouping_a_build_missed(dup_gallery, monkeypatch):
    from gallery import jobs, tasks

    gallery, _images, build = dup_gallery
    sent = []
    monkeypatch.setattr(jobs, "publish_find_duplicates", lambda g, b: sent.append((g, b)) or True)
    tasks.rebuild_stale_indexes()
    assert sent == [(gallery.pk, build.pk)]
    services.gallery_find_duplicates(gallery_id=gallery.pk, build_id=build.pk)
    sent.clear()
    tasks.rebuild_stale_indexes()
    assert sent == []


@pytest.mark.django_db
def test_expired_trash_is_purged_with_its_files(owner, dup_gallery):
    from datetime import timedelta

    from django.core.files.storage import default_storage
    from django.utils import timezone

    gallery, images, _build = dup_gallery
    default_storage.save(images[5].file.name, __import__("io").BytesIO(b"x"))
    services.images_trash(images=[Image.objects.get(pk=images[5].pk)], actor=owner)
    assert default_storage.exists(images[5].file.name)  # kept while restorable
    assert services.trash_purge_expired() == 0
    later = timezone.now() + timedelta(days=31)
    with __import__("django.test", fromlist=["x"]).TestCase.captureOnCommitCallbacks(execute=True):
        assert services.trash_purge_expired(now=later) == 1
    assert not default_storage.exists(images[5].file.name)


# --- Look-alikes at upload, compare, import ----------------------------------


def _jpeg(label, i, size=None, mirror=False):
    import io

    from PIL import ImageOps

    img = imagegen.photo(label, i)
    if size:
        img = img.resize(size)
    if mirror:
        img = ImageOps.mirror(img)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=80)
    return out.getvalue()


@pytest.mark.django_db
def test_an_upload_that_looks_like_an_image_says_which_and_keep_or_skip_is_remembered(owner):
    gallery = services.gallery_create(owner=owner, title="Uploads")
    first = services.image_create(gallery=gallery, uploader=owner, data=_jpeg("beach", 1), name="beach.jpg")
    assert first.status == "added" and first.looks_like is None
    second = services.image_create(
        gallery=gallery, uploader=owner, data=_jpeg("horses", 2), name="horses.jpg", lookup=services.HashLookup(gallery)
    )
    assert second.looks_like is None
    lookup = services.HashLookup(gallery)
    resized = services.image_create(
        gallery=gallery, uploader=owner, data=_jpeg("beach", 1, size=(200, 150)), name="small.jpg", lookup=lookup
    )
    assert resized.status == "added" and resized.looks_like.image.pk == first.image.pk
    assert resized.message.startswith("Looks like “beach.jpg” (distance ")
    assert resized.as_dict()["looks_like"]["id"] == first.image.pk
    flipped = services.image_create(
        gallery=gallery, uploader=owner, data=_jpeg("beach", 1, mirror=True), name="flip.jpg", lookup=lookup
    )
    assert flipped.looks_like is not None  # a mirror image, and the batch's own files count too
    services.upload_keep(image=resized.image, like=first.image, actor=owner)
    assert DuplicateDecision.objects.get(gallery=gallery).kind == "keep"
    services.upload_skip(image=flipped.image, like=first.image, actor=owner)
    assert TrashedImage.objects.get(gallery=gallery).reason.startswith("Skipped at upload: looked like")


@pytest.mark.django_db
def test_compare_adds_nothing_and_tells_copies_look_alikes_new_and_unreadable(owner):
    gallery = services.gallery_create(owner=owner, title="Compare")
    data = _jpeg("food", 4)
    services.image_create(gallery=gallery, uploader=owner, data=data, name="food.jpg")
    got = services.files_compare(
        gallery=gallery,
        files=[
            ("same.jpg", data),
            ("smaller.jpg", _jpeg("food", 4, size=(150, 100))),
            ("other.jpg", _jpeg("flowers", 7)),
            ("bad.jpg", b"nope"),
        ],
        max_pixels=10**8,
        embed=None,
    ).results
    assert [c.status for c in got] == ["copy", "looks_like", "new", "rejected"]
    assert got[1].image.original_name == "food.jpg" and got[1].bits <= bands.HASH_BITS
    assert Image.objects.filter(gallery=gallery).count() == 1


@pytest.mark.django_db
def test_the_import_summary_lists_look_alikes_and_compare_adds_nothing(owner, tmp_path):
    gallery = services.gallery_create(owner=owner, title="Imp")
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(_jpeg("beach", 3))
    (folder / "b.jpg").write_bytes(_jpeg("beach", 3, size=(180, 120)))
    (folder / "c.jpg").write_bytes(_jpeg("dinosaurs", 5))
    out = __import__("io").StringIO()
    call_command("import_images", str(folder), gallery=gallery.slug, no_progress=True, stdout=out)
    text = out.getvalue()
    assert "3 added" in text
    assert "1 added file(s) look like images already in the gallery" in text
    assert "b.jpg looks like “a.jpg”" in text
    (folder / "d.jpg").write_bytes(_jpeg("dinosaurs", 5, mirror=True))
    out = __import__("io").StringIO()
    call_command("import_images", str(folder), gallery=gallery.slug, no_progress=True, compare=True, stdout=out)
    text = out.getvalue()
    assert "nothing added: 0 new, 1 look-alike(s), 3 already in it" in text  # by hash: no model needed
    assert "looks_like d.jpg: Looks like “c.jpg”" in text
    assert Image.objects.filter(gallery=gallery).count() == 3


# --- Pages and API: the owner's alone ----------------------------------------


@pytest.fixture
def grouped(dup_gallery):
    gallery, images, build = dup_gallery
    services.gallery_find_duplicates(gallery_id=gallery.pk, build_id=build.pk)
    return gallery, images


@pytest.mark.django_db
def test_strangers_get_404_on_every_duplicate_and_trash_page_and_endpoint(client, grouped, other, staff):
    from django.urls import reverse

    gallery, images = grouped
    group = selectors.open_groups(gallery=gallery).first()
    gets = [
        reverse(name, args=[gallery.slug])
        for name in (
            "gallery_duplicates",
            "gallery_duplicates_csv",
            "gallery_duplicates_json",
            "gallery_trash",
            "gallery_compare",
            "api_duplicates",
        )
    ]
    posts = [
        reverse("gallery_duplicates_resolve", args=[gallery.slug, group.pk]),
        reverse("gallery_duplicates_resolve_all", args=[gallery.slug]),
        reverse("api_duplicates_resolve", args=[gallery.slug, group.pk]),
        reverse("api_duplicates_resolve_all", args=[gallery.slug]),
        reverse("api_compare", args=[gallery.slug]),
        reverse("image_upload_skip", args=[images[0].pk]),
        reverse("api_image_skip", args=[images[0].pk]),
        reverse("gallery_trash_purge", args=[gallery.slug]),
    ]
    for user in (other, staff):
        client.force_login(user)
        for url in gets:
            assert client.get(url).status_code == 404, url
        for url in posts:
            assert client.post(url, {"action": "trash_others", "all": "1", "like": images[1].pk}).status_code == 404, (
                url
            )
    assert Image.objects.filter(pk__in=[i.pk for i in images[:3]]).count() == 3
    assert selectors.open_groups(gallery=gallery).count() == 2


@pytest.mark.django_db
def test_the_review_page_shows_groups_and_resolving_one_trashes_the_others(client, owner, grouped):
    from django.urls import reverse

    gallery, images = grouped
    client.force_login(owner)
    page = client.get(reverse("gallery_duplicates", args=[gallery.slug]))
    html = page.content.decode()
    assert "2 groups to review" in html
    assert html.count('class="dup-group panel"') == 2
    assert "800 × 600 px" in html and "suggested" in html
    group = selectors.open_groups(gallery=gallery).first()
    response = client.post(
        reverse("gallery_duplicates_resolve", args=[gallery.slug, group.pk]),
        {"action": "trash_others", "keeper": images[0].pk},
        follow=True,
    )
    assert "1 group resolved: 2 images moved to the trash." in response.content.decode()
    assert set(TrashedImage.objects.values_list("original_id", flat=True)) == {images[1].pk, images[2].pk}
    trash = client.get(reverse("gallery_trash", args=[gallery.slug])).content.decode()
    assert "2 images" in trash and "Duplicate of" in trash
    item = TrashedImage.objects.first()
    assert client.get(reverse("gallery_trash_thumb", args=[gallery.slug, item.pk])).status_code in (200, 404)
    client.post(reverse("gallery_trash_restore", args=[gallery.slug]), {"item": [item.pk]})
    assert TrashedImage.objects.count() == 1
    assert Image.objects.filter(gallery=gallery, original_name=item.original_name).exists()


@pytest.mark.django_db
def test_exports_list_every_member_with_its_keeper_and_the_api_resolves(client, owner, grouped):
    import csv
    import io

    from django.urls import reverse

    gallery, images = grouped
    client.force_login(owner)
    rows = list(
        csv.DictReader(io.StringIO(client.get(reverse("gallery_duplicates_csv", args=[gallery.slug])).content.decode()))
    )
    assert len(rows) == 5
    keepers = [r for r in rows if r["keeper"] == "True"]
    assert len(keepers) == 2 and str(images[1].pk) in {r["image_id"] for r in keepers}
    data = client.get(reverse("gallery_duplicates_json", args=[gallery.slug])).json()
    assert [len(g["members"]) for g in data["groups"]] == [3, 2]
    api = client.get(reverse("api_duplicates", args=[gallery.slug])).json()
    assert api["count"] == 2 and api["run"]["images_compared"] == 300
    assert {g["id"] for g in api["groups"]} == {g["id"] for g in data["groups"]}
    group_id = api["groups"][1]["id"]
    bad = client.post(reverse("api_duplicates_resolve", args=[gallery.slug, group_id]), {"action": "explode"})
    assert bad.status_code == 400 and "Unknown action" in bad.json()["error"]
    ok = client.post(reverse("api_duplicates_resolve", args=[gallery.slug, group_id]), {"action": "keep_all"})
    assert ok.json()["resolved"] == 1
    assert client.get(reverse("api_duplicates", args=[gallery.slug])).json()["count"] == 1
    gone = client.post(reverse("api_duplicates_resolve", args=[gallery.slug, group_id]), {"action": "keep_all"})
    assert gone.status_code == 404


@pytest.mark.django_db
def test_upload_response_names_the_look_alike_and_keep_skip_answer_json(client, owner):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.urls import reverse

    gallery = services.gallery_create(owner=owner, title="Up")
    client.force_login(owner)
    first = client.post(
        reverse("gallery_upload", args=[gallery.slug]),
        {"images": [SimpleUploadedFile("a.jpg", _jpeg("beach", 2), "image/jpeg")]},
        HTTP_ACCEPT="application/json",
    ).json()["results"][0]
    second = client.post(
        reverse("gallery_upload", args=[gallery.slug]),
        {"images": [SimpleUploadedFile("b.jpg", _jpeg("beach", 2, size=(160, 120)), "image/jpeg")]},
        HTTP_ACCEPT="application/json",
    ).json()["results"][0]
    assert second["status"] == "added" and second["looks_like"]["id"] == first["id"]
    assert second["message"].startswith("Looks like “a.jpg”")
    keep = client.post(reverse("image_upload_keep", args=[second["id"]]), {"like": first["id"]})
    assert keep.status_code == 200 and DuplicateDecision.objects.filter(kind="keep").count() == 1
    skip = client.post(reverse("api_image_skip", args=[second["id"]]), {"like": first["id"]})
    assert not Image.objects.filter(pk=second["id"]).exists()
    assert skip.json()["skipped"] == second["id"]
    # Keeping a file whose look-alike has gone meanwhile records nothing and says so plainly.
    kept = client.post(reverse("api_image_keep", args=[first["id"]]), {"like": second["id"]})
    assert kept.status_code == 200 and kept.json()["message"] == "Kept “a.jpg”."
    assert DuplicateDecision.objects.count() == 0  # the kept pair went with the file skipped since
    compare = client.post(
        reverse("api_compare", args=[gallery.slug]),
        {"images": [SimpleUploadedFile("c.jpg", _jpeg("beach", 2, size=(170, 110)), "image/jpeg")]},
    ).json()["results"]
    assert compare[0]["status"] == "looks_like" and compare[0]["image"]["id"] == first["id"]
    page = client.post(
        reverse("gallery_compare", args=[gallery.slug]),
        {"images": [SimpleUploadedFile("c.jpg", _jpeg("beach", 2, size=(170, 110)), "image/jpeg")]},
    ).content.decode()
    assert "Looks like" in page and "a.jpg" in page


@pytest.mark.django_db
def test_the_admin_build_page_shows_its_groups(client, staff, grouped):
    from django.urls import reverse

    gallery, _images = grouped
    client.force_login(staff)
    build = gallery.current_build()
    html = client.get(reverse("admin:gallery_indexbuild_change", args=[build.pk])).content.decode()
    assert "Near-duplicate groups" in html
    assert "2 group(s) of 5 image(s)" in html


@pytest.mark.django_db
def test_the_image_page_names_its_group_and_delete_moves_to_the_trash(client, owner, grouped):
    from django.urls import reverse

    gallery, images = grouped
    client.force_login(owner)
    html = client.get(images[0].get_absolute_url()).content.decode()
    assert "One of 3 near-duplicates" in html
    assert "One of" not in client.get(images[50].get_absolute_url()).content.decode()
    response = client.post(reverse("image_delete", args=[images[50].pk]), follow=True)
    assert "moved to the trash; it can be restored there for 30 days" in response.content.decode()
    assert TrashedImage.objects.filter(original_id=images[50].pk).exists()
    assert not Image.objects.filter(pk=images[50].pk).exists()


@pytest.mark.django_db
def test_the_upload_lookup_reads_the_index_and_only_the_images_it_does_not_hold(dup_gallery, django_assert_num_queries):
    gallery, images, build = dup_gallery
    base = Image.objects.get(pk=images[0].pk)
    with django_assert_num_queries(1):  # the rows newer than the build: none here
        lookup = services.HashLookup(gallery)
    assert len(lookup.pks) == 300
    assert lookup.match(base.phash ^ 0b1000, None).image.pk in {images[0].pk, images[1].pk, images[2].pk}
    (late,) = vectors.add_images(
        gallery,
        np.ones((1, vectors.DIM), dtype=np.float32) / np.sqrt(vectors.DIM),
        embedded_ago=__import__("datetime").timedelta(0),
    )
    Image.objects.filter(pk=late.pk).update(phash=(1 << 61) + 12345)
    lookup = services.HashLookup(gallery)
    assert len(lookup.pks) == 301
    assert lookup.match((1 << 61) + 12344, None).image.pk == late.pk
    Image.objects.filter(pk=images[0].pk).delete()  # gone since the build: never named
    assert services.HashLookup(gallery).match(base.phash, None).image.pk != images[0].pk


@pytest.mark.django_db
def test_compare_by_content_names_the_copy_the_hash_misses_and_says_when_it_cannot(owner, dup_gallery):
    from gallery import embedding
    from gallery.search import queries

    gallery, images, _build = dup_gallery
    target = Image.objects.get(pk=images[40].pk)

    def embed(_data):  # the model's answer for a crop of images[40]: its own vector (the exact band)
        return queries.QueryVector(target.vector, embedding.version(), None)

    files = [("crop.jpg", _jpeg("food", 1)), ("other.jpg", _jpeg("flowers", 2))]
    got = services.files_compare(gallery=gallery, files=files, max_pixels=10**8, embed=embed, content_limit=1)
    assert got.results[0].status == "looks_like" and got.results[0].image.pk == target.pk
    assert got.results[0].distance == pytest.approx(0.0, abs=1e-6)
    assert "by content" in got.results[0].message and got.results[0].as_dict()["distance"] == 0.0
    assert got.results[1].status == "new"
    assert got.note == "Only the first 1 files were compared by content; the others by hash alone."

    def unavailable(_data):
        raise queries.QueryUnavailable("Search with a picture is unavailable: no query worker answered.")

    got = services.files_compare(gallery=gallery, files=files, max_pixels=10**8, embed=unavailable)
    assert [r.status for r in got.results] == ["new", "new"]
    assert got.note == "Compared by hash alone: Search with a picture is unavailable: no query worker answered."


@pytest.mark.django_db
def test_resolving_every_group_takes_a_few_queries_per_batch_not_per_group(owner, django_assert_max_num_queries):
    gallery, images, _vecs, _build = vectors.indexed_gallery(owner, "many", n=400, seed=2)
    for i, image in enumerate(images):  # 200 pairs: image 2k and 2k+1 share a hash
        Image.objects.filter(pk=image.pk).update(phash=(1 << 40) + (i // 2) * 0x9E3779B1 + 1)
    build = _rebuild(gallery)
    services.gallery_find_duplicates(gallery_id=gallery.pk, build_id=build.pk)
    assert selectors.open_groups(gallery=gallery).count() == 200
    with django_assert_max_num_queries(40):
        assert services.groups_resolve_all(gallery=gallery, actor=owner, action="trash_others") == (200, 200)
    assert Image.objects.filter(gallery=gallery).count() == 200
    assert TrashedImage.objects.filter(gallery=gallery).count() == 200
