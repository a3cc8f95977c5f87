"""What each build's calibration chose and measured is shown where people look:
the index builds in the admin (mode, recall@10 with its query count, time), the
gallery admin (the current build's mode and recall, from the list's own join),
and the gallery's status (page and JSON) in one short line."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from gallery import embedding, services
from gallery.models import Gallery, IndexBuild
from tests import vectors

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


def recorded_build(gallery, version=1, *, items=300, exact=False, search_k=0, pool=0, recall=None, queries=0, **extra):
    """An IndexBuild row as gallery_rebuild_index records one, made the gallery's current build."""
    build = IndexBuild.objects.create(
        gallery=gallery,
        version=version,
        status=IndexBuild.Status.READY,
        embedding_version=embedding.version(),
        item_count=items,
        n_trees=32,
        checksum="0" * 64,
        snapshot_at=timezone.now(),
        exact=exact,
        search_k=search_k,
        pool=pool,
        recall=recall,
        recall_queries=queries,
        calibration_seconds=1.25 if queries else 0,
        **extra,
    )
    Gallery.objects.filter(pk=gallery.pk).update(current_index=build)
    gallery.refresh_from_db()
    return build


def status(client, gallery):
    response = client.get(reverse("gallery_status", args=[gallery.slug]))
    assert response.status_code == 200
    return response.json()


@pytest.fixture
def small(owner):
    return services.gallery_create(owner=owner, title="Small", visibility="public")


@pytest.fixture
def large(owner):
    return services.gallery_create(owner=owner, title="Large", visibility="public")


# --- Index builds in the admin --------------------------------------------------------


def test_the_build_list_shows_mode_recall_with_its_queries_and_calibration_time(staff_client, small, large):
    recorded_build(small, items=300, exact=True, search_k=1024, pool=128, recall=1.0, queries=300)
    recorded_build(large, items=100_000, search_k=4096, pool=256, recall=0.9962, queries=400)
    old = recorded_build(large, 2, items=90_000)  # built before calibration: search_k 0, no recall

    page = staff_client.get(reverse("admin:gallery_indexbuild_changelist")).content.decode()

    assert "exact" in page and "1.000 on 300 queries" in page
    assert "forest: pool 256, search_k 4096" in page and "0.996 on 400 queries" in page
    assert "1.2 s" in page  # calibration time, to a tenth of a second
    assert f"forest: fixed rule ({old.n_trees} trees; built before calibration)" in page
    assert "not measured" in page


def test_a_build_page_groups_its_calibration(staff_client, large):
    build = recorded_build(large, items=100_000, search_k=4096, pool=256, recall=0.9962, queries=400)

    response = staff_client.get(reverse("admin:gallery_indexbuild_change", args=[build.pk]))

    assert response.status_code == 200
    fieldsets = response.context["adminform"].fieldsets
    assert [name for name, _ in fieldsets] == [None, "Calibration", "Similarity bands", "Near-duplicate groups"]
    shown = [f for _, options in fieldsets for f in options["fields"]]
    # Every field of the model is on the page, once.
    assert sorted(f.name for f in IndexBuild._meta.fields) == sorted(
        set(shown) & {f.name for f in IndexBuild._meta.fields}
    )
    assert len(shown) == len(set(shown))
    page = response.content.decode()
    assert "forest: pool 256, search_k 4096" in page and "0.996 on 400 queries" in page and "1.2 s" in page


def test_a_failed_build_shows_no_search_mode(staff_client, large):
    IndexBuild.objects.create(
        gallery=large, version=1, status=IndexBuild.Status.FAILED, snapshot_at=timezone.now(), error="OSError: disk"
    )
    page = staff_client.get(reverse("admin:gallery_indexbuild_changelist")).content.decode()
    assert "forest:" not in page and "not measured" in page


# --- Galleries in the admin ------------------------------------------------------------


def test_the_gallery_list_shows_the_current_builds_mode_and_recall(staff_client, small, large, owner):
    recorded_build(small, items=300, exact=True, search_k=1024, pool=128, recall=1.0, queries=300)
    recorded_build(large, items=100_000, search_k=4096, pool=256, recall=0.9962, queries=400)
    Gallery.objects.create(owner=owner, title="Empty", slug="empty")

    response = staff_client.get(reverse("admin:gallery_gallery_changelist"))

    rows = {g.title: g for g in response.context["cl"].result_list}
    page = response.content.decode()
    assert (rows["Small"].index_exact, rows["Small"].index_recall) == (True, 1.0)
    assert (rows["Large"].index_exact, rows["Large"].index_search_k) == (False, 4096)
    assert "exact, 1.000" in page and "forest, 0.996" in page


def test_the_gallery_list_reads_the_builds_in_its_own_query(staff_client, owner, small):
    recorded_build(small, exact=True, search_k=1024, pool=128, recall=1.0, queries=300)
    url = reverse("admin:gallery_gallery_changelist")
    staff_client.get(url)  # session, content types: read once
    with CaptureQueriesContext(connection) as one:
        staff_client.get(url)
    for i in range(3):
        more = Gallery.objects.create(owner=owner, title=f"More {i}", slug=f"more-{i}")
        recorded_build(more, items=50_000 + i, search_k=2048, pool=128, recall=0.995, queries=400)
    with CaptureQueriesContext(connection) as four:
        page = staff_client.get(url).content.decode()
    assert page.count("forest, 0.995") == 3
    assert len(four) == len(one)


def test_the_gallery_page_in_the_admin_says_how_it_is_searched(staff_client, large):
    recorded_build(large, 3, items=100_000, search_k=4096, pool=256, recall=0.9962, queries=400)
    page = staff_client.get(reverse("admin:gallery_gallery_change", args=[large.pk])).content.decode()
    assert "Version 3, 100000 items" in page
    assert "Index v3: recall@10 0.996 measured on 400 of its images." in page


# --- The gallery's status ---------------------------------------------------------------


def test_a_small_gallery_says_it_is_searched_exactly(client, staff, owner, small):
    recorded_build(small, items=300, exact=True, search_k=1024, pool=128, recall=1.0, queries=300)
    client.force_login(staff)  # the build's internals are for staff

    index = status(client, small)["index"]

    assert index["mode"] == "exact"
    assert index["recall"] == 1.0 and index["recall_queries"] == 300
    assert index["search"] == "Search: exact (all 300 images)"
    assert "Search: exact (all 300 images)" in client.get(small.get_absolute_url()).content.decode()


def test_a_large_gallery_gives_its_measured_recall(client, staff, owner, other, large):
    recorded_build(large, 3, items=100_000, search_k=4096, pool=256, recall=0.9962, queries=400)
    client.force_login(other)  # a visitor of the public gallery reads only whether search is ready
    assert set(status(client, large)["index"]) == {"ready", "items", "built_at", "stale", "label"}
    assert "recall@10" not in client.get(large.get_absolute_url()).content.decode()
    client.force_login(staff)

    index = status(client, large)["index"]

    assert (index["mode"], index["search_k"], index["pool"]) == ("forest", 4096, 256)
    assert index["recall"] == 0.9962 and index["recall_queries"] == 400
    assert index["search"] == "Index v3: recall@10 0.996 measured on 400 of its images"
    assert index == client.get(reverse("api_status", args=[large.slug])).json()["index"]
    assert index["search"] in client.get(large.get_absolute_url()).content.decode()


def test_a_build_before_calibration_says_its_recall_was_not_measured(client, staff, owner, large):
    recorded_build(large, 2, items=90_000)
    client.force_login(staff)  # the build's internals are for staff
    index = status(client, large)["index"]
    assert (index["mode"], index["recall"], index["recall_queries"]) == ("fixed", None, 0)
    assert index["search"] == "Index v2: recall not measured (built before calibration)"


def test_a_build_of_another_model_is_served_as_measured_while_the_switch_runs(client, staff, owner, large):
    # A change of backbone does not stop search: the gallery serves its build until the flip.
    recorded_build(large, 4, items=100_000, search_k=4096, pool=256, recall=0.9962, queries=400)
    IndexBuild.objects.filter(gallery=large).update(embedding_version="an-older-model")
    IndexBuild.forget_cached()
    client.force_login(staff)  # the build's internals are for staff
    body = status(client, large)
    assert (body["index"]["mode"], body["index"]["recall"]) == ("forest", 0.9962)
    assert body["index"]["search"] == "Index v4: recall@10 0.996 measured on 400 of its images"
    assert (body["switch"]["from_version"], body["switch"]["to_version"]) == ("an-older-model", embedding.version())


def test_a_gallery_without_an_index_shows_no_search_line(client, staff, owner, small):
    client.force_login(staff)  # the build's internals are for staff
    index = status(client, small)["index"]
    assert (index["mode"], index["recall"], index["search"]) == ("exact", None, None)
    assert 'id="status-search"' not in client.get(small.get_absolute_url()).content.decode()


def test_the_status_reads_the_current_build_from_the_process_cache(client, staff, owner, large):
    recorded_build(large, items=100_000, search_k=4096, pool=256, recall=0.9962, queries=400)
    client.force_login(staff)  # the build's internals are for staff
    status(client, large)
    with CaptureQueriesContext(connection) as queries:
        assert status(client, large)["index"]["recall"] == 0.9962
    assert not [q["sql"] for q in queries if "gallery_indexbuild" in q["sql"]]


def test_a_real_build_shows_what_its_calibration_chose(client, staff, owner):
    gallery, _images, _vecs, build = vectors.indexed_gallery(owner, "calibrated-status", n=300, seed=8)
    client.force_login(staff)  # the build's internals are for staff

    index = status(client, gallery)["index"]

    assert build.recall_queries == 300 and build.recall is not None
    if build.exact:  # chosen by timing: a scan of 300 vectors is usually as fast as the forest
        assert index["search"] == "Search: exact (all 300 images)"
    else:
        assert index["search"] == f"Index v1: recall@10 {build.recall:.3f} measured on 300 of its images"
    assert index["recall"] == build.recall
