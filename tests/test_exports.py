"""Exports: what each kind's file holds, who may ask for and download one, and how builds
behave when run twice, when they fail and when they expire."""

import base64
import csv
import hashlib
import io
import json
import zipfile
from datetime import timedelta

import numpy as np
import pytest
from annoy import AnnoyIndex
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone

from gallery import embedding, search, services
from gallery.models import EmbeddingState, Export, Gallery, Image, ModerationState, Visibility
from gallery.search import ann, cache, engine, projection, queries, store
from gallery.services import exports, outside_queries
from tests import vectors

pytestmark = pytest.mark.django_db


@pytest.fixture
def indexed(owner):
    """A private gallery of 300 clustered images with a built index: (gallery, images, vectors, build)."""
    return vectors.indexed_gallery(owner, "exported", n=300, seed=7, per_cluster=30)


def ask(user, gallery, kind, format="", **params):
    return exports.export_request(
        user=user, gallery=gallery, kind=kind, format=format, params=params, base_url="https://photos.example"
    )


def built(user, gallery, kind, format="", **params):
    export = exports.export_build(export_id=ask(user, gallery, kind, format, **params).pk)
    assert export.status == Export.Status.READY, export.error
    return export


def stored_bytes(export):
    with default_storage.open(export.file, "rb") as fh:
        return fh.read()


def unzip(export):
    return zipfile.ZipFile(io.BytesIO(stored_bytes(export)))


def ids_csv(archive):
    return list(csv.DictReader(io.TextIOWrapper(archive.open("ids.csv"), encoding="utf-8")))


# --- Embeddings ------------------------------------------------------------------


def test_the_embeddings_npy_holds_the_exact_vectors_in_the_order_of_ids_csv(owner, indexed):
    gallery, images, vecs, _build = indexed
    export = built(owner, gallery, "embeddings")
    archive = unzip(export)
    assert sorted(archive.namelist()) == ["embeddings.npy", "ids.csv", "manifest.json"]
    assert archive.getinfo("embeddings.npy").compress_type == zipfile.ZIP_STORED
    matrix = np.load(io.BytesIO(archive.read("embeddings.npy")), allow_pickle=False)
    rows = ids_csv(archive)
    assert matrix.dtype == np.float32 and matrix.shape == (300, 512)
    by_pk = {image.pk: image.vector for image in Image.objects.filter(gallery=gallery)}
    assert [int(r["id"]) for r in rows] == sorted(by_pk)
    np.testing.assert_array_equal(matrix, np.stack([by_pk[int(r["id"])] for r in rows]))  # bit for bit
    np.testing.assert_allclose(matrix, vecs[np.argsort([image.pk for image in images])], atol=1e-7)
    first = Image.objects.get(pk=int(rows[0]["id"]))
    assert rows[0] == {
        "id": str(first.pk),
        "original_name": first.original_name,
        "sha256": first.sha256,
        "width": "224",
        "height": "224",
        "created_at": first.created_at.isoformat(),
    }
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["embedding_version"] == embedding.version() == export.embedding_version
    assert (manifest["backbone"], manifest["dim"], manifest["count"]) == ("fake", 512, 300)
    assert manifest["gallery"] == gallery.slug
    assert export.row_count == 300 and export.size_bytes == len(stored_bytes(export))


def test_embeddings_leave_out_rejected_pending_trashed_and_other_version_images(owner, indexed):
    gallery, images, vecs, _build = indexed
    rejected, pending, old, trashed = images[:4]
    Image.objects.filter(pk=rejected.pk).update(moderation_state=ModerationState.REJECTED)
    Image.objects.filter(pk=pending.pk).update(embedding_state=EmbeddingState.PENDING)
    Image.objects.filter(pk=old.pk).update(embedding_version="an-earlier-model/v0")
    services.images_trash(images=[Image.objects.get(pk=trashed.pk)], actor=owner)
    # A pending upload under moderation stays in: the owner's own images, searchable as soon as approved.
    Image.objects.filter(pk=images[4].pk).update(moderation_state=ModerationState.PENDING)
    archive = unzip(built(owner, gallery, "embeddings"))
    exported = [int(r["id"]) for r in ids_csv(archive)]
    assert set(exported) == {image.pk for image in images[4:]}
    matrix = np.load(io.BytesIO(archive.read("embeddings.npy")))
    assert matrix.shape == (296, 512)
    assert json.loads(archive.read("manifest.json"))["count"] == 296


def test_an_empty_gallery_exports_an_empty_matrix(owner):
    gallery = services.gallery_create(owner=owner, title="Empty")
    archive = unzip(built(owner, gallery, "embeddings"))
    assert np.load(io.BytesIO(archive.read("embeddings.npy"))).shape == (0, 512)
    assert ids_csv(archive) == []


def test_a_name_that_looks_like_a_formula_is_quoted_in_ids_csv(owner, indexed):
    gallery, images, _vecs, _build = indexed
    Image.objects.filter(pk=images[0].pk).update(original_name="=HYPERLINK(1).jpg")
    rows = ids_csv(unzip(built(owner, gallery, "embeddings")))
    assert rows[0]["original_name"] == "'=HYPERLINK(1).jpg"


# --- Index snapshot ----------------------------------------------------------------


def test_the_index_zip_loads_in_annoy_and_answers_like_the_served_index(owner, indexed, tmp_path):
    gallery, images, vecs, build = indexed
    archive = unzip(built(owner, gallery, "index"))
    base = f"v{build.version:06d}"
    files = [base + suffix for suffix in store.SUFFIXES]
    assert sorted(archive.namelist()) == sorted([*files, "manifest.json"])
    archive.extractall(tmp_path / "snapshot")
    folder = tmp_path / "snapshot"
    # The bytes are those the build's checksum covers, in its order.
    digest = hashlib.sha256(b"".join((folder / name).read_bytes() for name in files)).hexdigest()
    manifest = json.loads(archive.read("manifest.json"))
    assert digest == build.checksum == manifest["checksum"]
    assert manifest["version"] == build.version and manifest["item_count"] == 300
    assert manifest["n_trees"] == build.n_trees and manifest["embedding_version"] == embedding.version()
    assert manifest["search"]["mode"] in ("exact", "forest") and manifest["search"]["recall_at_10"] == build.recall

    forest = AnnoyIndex(projection.INDEX_DIM, "euclidean")  # as the manifest says
    forest.load(str(folder / files[0]))
    ids = np.load(folder / files[1])
    stored = np.load(folder / files[2])
    pca = np.load(folder / files[3])
    ref = store.ref_for(build)
    pool = ann.pool_for(10, ref.item_count, ref.pool)
    search_k = ann.search_k_for(ref.n_trees, 10, ref.item_count, (ref.search_k, ref.pool))
    for i in (0, 57, 123, 299):
        query = vecs[i]
        served_pks, served_dist = engine.index_search(ref, query, 10, exact=False)
        positions = np.asarray(forest.get_nns_by_vector(((query - pca[0]) @ pca[1:].T).tolist(), pool, search_k))
        distances = 1.0 - stored[positions] @ query
        order = np.lexsort((ids[positions], distances))[:10]
        assert ids[positions][order].tolist() == served_pks.tolist()
        np.testing.assert_allclose(distances[order], served_dist, atol=1e-6)
    forest.unload()


def test_an_index_export_of_a_gallery_without_an_index_fails_with_a_clear_reason(owner):
    gallery = services.gallery_create(owner=owner, title="Not yet")
    export = exports.export_build(export_id=ask(owner, gallery, "index").pk)
    assert export.status == Export.Status.FAILED
    assert "no index yet" in export.error
    assert not export.file


def test_an_index_whose_files_are_damaged_fails_and_says_so(owner, indexed):
    gallery, _images, _vecs, build = indexed
    cache.evict()
    path = store.local_paths(gallery.pk, build.version)[2]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    export = exports.export_build(export_id=ask(owner, gallery, "index").pk)
    assert export.status == Export.Status.FAILED
    assert f"Index v{build.version} cannot be read right now" in export.error and "checksum" in export.error


# --- Result lists ----------------------------------------------------------------


def page_rows(client, url, base="https://photos.example"):
    response = client.get(url)
    assert response.status_code == 200
    return [
        {
            "rank": m.rank,
            "id": m.image.pk,
            "name": m.image.original_name,
            "distance": round(m.distance, 6),
            "band": m.band or None,
            "url": base + m.image.get_absolute_url(),
        }
        for m in response.context["matches"]
    ]


def test_results_csv_and_json_hold_the_pages_results_and_the_rest_of_the_list(client, owner, indexed):
    gallery, images, _vecs, _build = indexed
    client.force_login(owner)
    query = images[5]
    pages = []
    for page in (1, 2, 3):
        pages += page_rows(client, reverse("image_similar", args=[query.pk]) + f"?k=100&page={page}")
    assert len(pages) == 299  # everything but the query, as the owner pages through it
    payload = json.loads(stored_bytes(built(owner, gallery, "results", "json", image=query.pk)))
    assert payload["count"] == 299 and payload["query"] == {"image": query.pk}
    assert payload["results"] == pages
    assert any(row["band"] for row in pages)  # the gallery's bands are fitted: they are exported too
    export = built(owner, gallery, "results", "csv", image=query.pk)
    rows = list(csv.DictReader(io.StringIO(stored_bytes(export).decode())))
    assert list(rows[0]) == ["rank", "id", "name", "distance", "band", "url"]
    assert [(int(r["rank"]), int(r["id"]), float(r["distance"])) for r in rows] == [
        (p["rank"], p["id"], p["distance"]) for p in pages
    ]
    assert rows[0]["url"] == f"https://photos.example/i/{pages[0]['id']}/"
    assert export.row_count == 299


def test_results_keep_the_pages_band_and_distance_filter(client, owner, indexed):
    gallery, images, _vecs, _build = indexed
    client.force_login(owner)
    query = images[9]
    page = page_rows(client, reverse("image_similar", args=[query.pk]) + "?k=100&band=related")
    payload = json.loads(stored_bytes(built(owner, gallery, "results", "json", image=query.pk, band="related")))
    assert payload["results"] == page and 0 < len(page) < 299
    page = page_rows(client, reverse("image_similar", args=[query.pk]) + "?k=100&max_distance=0.9")
    payload = json.loads(stored_bytes(built(owner, gallery, "results", "json", image=query.pk, max_distance="0.9")))
    assert payload["results"] == page and all(r["distance"] <= 0.9 for r in page)


def test_results_of_an_outside_search_match_its_results_page(client, owner, indexed):
    gallery, _images, vecs, _build = indexed
    client.force_login(owner)
    vector = vecs[11] + 0.3 * vecs[200]
    vector = (vector / np.linalg.norm(vector)).astype(np.float32)
    stored = outside_queries.outside_query_create(
        gallery=gallery,
        user=owner,
        name="holiday.jpg",
        query=queries.QueryVector(vector, embedding.version()),
        picture=b"",
    )
    token = queries.token_for(stored)
    page = page_rows(client, reverse("gallery_search_results", args=[gallery.slug, token]) + "?k=100")
    payload = json.loads(stored_bytes(built(owner, gallery, "results", "json", outside=token)))
    assert payload["results"][:100] == page and payload["count"] == 300


def test_results_of_a_multi_image_query_match_the_search(owner, indexed):
    gallery, images, _vecs, _build = indexed
    pos, neg = [images[1].pk, images[2].pk], [images[3].pk]
    expected = search.similar_to_images(user=owner, gallery=gallery, positives=pos, negatives=neg, k=1000).matches
    payload = json.loads(stored_bytes(built(owner, gallery, "results", "json", pos=pos, neg=neg)))
    assert [(r["id"], r["distance"]) for r in payload["results"]] == [
        (m.image.pk, round(m.distance, 6)) for m in expected
    ]
    assert payload["count"] == 297 and payload["query"] == {"pos": pos, "neg": neg}


def test_results_are_those_the_owner_sees(owner, indexed):
    """Rejected images are in no result list, the owner's included."""
    gallery, images, _vecs, _build = indexed
    Image.objects.filter(pk__in=[images[20].pk, images[21].pk]).update(moderation_state=ModerationState.REJECTED)
    payload = json.loads(stored_bytes(built(owner, gallery, "results", "json", image=images[0].pk)))
    ids = {row["id"] for row in payload["results"]}
    assert len(ids) == 297 and not ids & {images[20].pk, images[21].pk}


def test_a_result_list_whose_query_is_gone_fails_with_the_reason(owner, indexed):
    gallery, images, _vecs, _build = indexed
    export = ask(owner, gallery, "results", "csv", image=images[0].pk)
    Image.objects.filter(pk=images[0].pk).delete()
    export = exports.export_build(export_id=export.pk)
    assert export.status == Export.Status.FAILED
    assert export.error == f"Image {images[0].pk} is no longer in this gallery."


# --- Asking --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "format", "params", "message"),
    [
        ("photos", "", {}, "Unknown export 'photos'"),
        ("embeddings", "csv", {}, "is a ZIP file, not 'csv'"),
        ("results", "zip", {"image": 1}, "is a CSV or JSON file"),
        ("index", "", {"image": 1}, "takes no query"),
        ("results", "csv", {}, "Name the result list"),
        ("results", "csv", {"image": 1, "outside": "x"}, "Name the result list"),
        ("results", "csv", {"image": "one"}, "image is an image id"),
        ("results", "csv", {"image": 10**9}, "is not in this gallery"),
        ("results", "csv", {"outside": "forged:token"}, "This search link is not valid"),
        ("results", "csv", {"pos": []}, "at least one positive"),
        ("results", "csv", {"pos": [10**9]}, "Not images of this gallery"),
        ("results", "csv", {"image": "IMAGE", "band": "close"}, "Unknown band 'close'"),
        ("results", "csv", {"image": "IMAGE", "max_distance": "3"}, "max_distance is a number from 0 to 2"),
    ],
)
def test_bad_requests_are_refused_with_a_readable_reason_and_record_nothing(
    owner, indexed, kind, format, params, message
):
    gallery, images, _vecs, _build = indexed
    params = {k: (images[0].pk if v == "IMAGE" else v) for k, v in params.items()}
    with pytest.raises(exports.ExportError, match=message.replace("(", r"\(")):
        exports.export_request(user=owner, gallery=gallery, kind=kind, format=format, params=params)
    assert not Export.objects.exists()


def test_only_the_owner_may_ask(owner, other, staff, indexed):
    gallery = indexed[0]
    for user in (other, staff):
        with pytest.raises(exports.ExportError, match="Only the gallery's owner"):
            exports.export_request(user=user, gallery=gallery, kind="embeddings")
    assert not Export.objects.exists()


def test_an_identical_pending_request_is_the_same_export_and_is_queued_once(owner, indexed, monkeypatch):
    gallery, images, _vecs, _build = indexed
    queued = []
    monkeypatch.setattr("gallery.jobs.publish_export", queued.append)
    from django.test import TestCase

    with TestCase.captureOnCommitCallbacks(execute=True):
        first = ask(owner, gallery, "results", "csv", image=str(images[0].pk))
        again = ask(owner, gallery, "results", "csv", image=images[0].pk)  # the same query, spelled differently
        other_format = ask(owner, gallery, "results", "json", image=images[0].pk)
        multi = ask(owner, gallery, "results", "csv", pos=f"{images[2].pk},{images[1].pk}")
        multi_again = ask(owner, gallery, "results", "csv", pos=[images[1].pk, images[2].pk], neg=[])
    assert first.pk == again.pk and multi.pk == multi_again.pk
    assert len({first.pk, other_format.pk, multi.pk}) == 3
    assert queued == [first.pk, other_format.pk, multi.pk]
    exports.export_build(export_id=first.pk)
    assert ask(owner, gallery, "results", "csv", image=images[0].pk).pk != first.pk  # ready: a new one


def test_too_many_exports_at_once_are_refused(owner, indexed):
    gallery, images, _vecs, _build = indexed
    for image in images[: exports.MAX_ACTIVE]:
        ask(owner, gallery, "results", "csv", image=image.pk)
    with pytest.raises(exports.ExportError, match="still being built"):
        ask(owner, gallery, "embeddings")


# --- Building twice, failing -------------------------------------------------------


def test_building_twice_leaves_the_first_file_and_makes_no_second(owner, indexed):
    gallery = indexed[0]
    export = built(owner, gallery, "embeddings")
    again = exports.export_build(export_id=export.pk)
    assert (again.status, again.file, again.finished_at) == (export.status, export.file, export.finished_at)
    _dirs, files = default_storage.listdir(f"exports/{gallery.pk}")
    assert files == [export.file.rsplit("/", 1)[1]]


def test_a_delivery_while_another_builds_does_nothing(owner, indexed):
    from gallery import locks

    gallery = indexed[0]
    export = ask(owner, gallery, "embeddings")
    with locks.export_lock(export.pk) as held:
        assert held
        assert exports.export_build(export_id=export.pk) is None
    export.refresh_from_db()
    assert export.status == Export.Status.PENDING and not export.file


def test_an_unexpected_error_is_recorded_on_the_row_and_raised_for_the_worker_log(owner, indexed, monkeypatch):
    gallery = indexed[0]
    export = ask(owner, gallery, "embeddings")

    def broken(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setitem(exports.BUILDERS, Export.Kind.EMBEDDINGS, broken)
    with pytest.raises(OSError):
        exports.export_build(export_id=export.pk)
    export.refresh_from_db()
    assert export.status == Export.Status.FAILED
    assert export.error == "The export failed: OSError: No space left on device"
    assert exports.export_build(export_id=export.pk).status == Export.Status.FAILED  # not built again
    assert not list((exports.scratch_dir()).iterdir())  # its scratch files are gone


def test_an_export_deleted_while_it_was_built_keeps_no_file(owner, indexed, monkeypatch):
    gallery = indexed[0]
    export = ask(owner, gallery, "embeddings")
    real = exports.BUILDERS[Export.Kind.EMBEDDINGS]

    def and_delete(row, tmp):
        result = real(row, tmp)
        Export.objects.filter(pk=row.pk).delete()
        return result

    monkeypatch.setitem(exports.BUILDERS, Export.Kind.EMBEDDINGS, and_delete)
    assert exports.export_build(export_id=export.pk) is None
    assert default_storage.listdir(f"exports/{gallery.pk}")[1] == []


# --- Expiry ----------------------------------------------------------------------


def test_beat_purges_expired_exports_rows_and_files(owner, indexed, settings, django_capture_on_commit_callbacks):
    settings.IMAGESEARCH_EXPORT_DAYS = 7
    gallery = indexed[0]
    old = built(owner, gallery, "embeddings")
    fresh = built(owner, gallery, "index")
    Export.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=7, minutes=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert exports.exports_purge_expired() == 1
    assert list(Export.objects.values_list("pk", flat=True)) == [fresh.pk]
    assert not default_storage.exists(old.file) and default_storage.exists(fresh.file)
    from django.conf import settings as conf

    assert conf.CELERY_BEAT_SCHEDULE["purge-exports"]["task"] == "gallery.tasks.purge_exports"


def test_an_expired_export_is_no_longer_downloadable_before_the_purge(client, owner, indexed):
    gallery = indexed[0]
    export = built(owner, gallery, "embeddings")
    client.force_login(owner)
    url = reverse("gallery_export_download", args=[gallery.slug, export.pk])
    assert client.get(url).status_code == 200
    Export.objects.filter(pk=export.pk).update(created_at=timezone.now() - timedelta(days=8))
    assert client.get(url).status_code == 404
    assert client.get(reverse("api_export", args=[export.pk])).json()["status"] == "expired"


def test_exports_lost_on_the_way_are_queued_again_by_beat(owner, indexed, monkeypatch):
    gallery = indexed[0]
    lost, recent = ask(owner, gallery, "embeddings"), ask(owner, gallery, "index")
    Export.objects.filter(pk=lost.pk).update(created_at=timezone.now() - timedelta(minutes=11))
    queued = []
    monkeypatch.setattr("gallery.jobs.publish_export", queued.append)
    assert exports.exports_requeue_stuck() == [lost.pk]
    assert queued == [lost.pk] and recent.pk not in queued


def test_deleting_the_gallery_deletes_its_export_files(owner, indexed, django_capture_on_commit_callbacks):
    gallery = indexed[0]
    export = built(owner, gallery, "embeddings")
    with django_capture_on_commit_callbacks(execute=True):
        services.gallery_delete(gallery=gallery)
    assert not default_storage.exists(export.file) and not Export.objects.exists()


# --- Pages, download, API ----------------------------------------------------------


def test_the_exports_page_lists_and_requests_exports_and_downloads_them(client, owner, indexed):
    gallery = indexed[0]
    client.force_login(owner)
    response = client.post(reverse("gallery_export_create", args=[gallery.slug]), {"kind": "embeddings"})
    assert response.status_code == 302 and response["Location"] == reverse("gallery_exports", args=[gallery.slug])
    export = Export.objects.get()
    page = client.get(reverse("gallery_exports", args=[gallery.slug]))
    assert page.status_code == 200
    assert f'data-export-id="{export.pk}" data-status="pending"' in page.content.decode()
    assert 'data-poll="' in page.content.decode()  # pending: the page polls its status
    status = client.get(reverse("gallery_exports_status", args=[gallery.slug])).json()
    assert status["exports"][0]["status"] == "pending" and status["exports"][0]["download_url"] is None
    exports.export_build(export_id=export.pk)
    page = client.get(reverse("gallery_exports", args=[gallery.slug])).content.decode()
    download = reverse("gallery_export_download", args=[gallery.slug, export.pk])
    assert f'href="{download}"' in page and "data-poll" not in page
    response = client.get(download)
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == f'attachment; filename="{gallery.slug}-embeddings-{export.pk}.zip"'
    body = b"".join(response.streaming_content)
    assert zipfile.ZipFile(io.BytesIO(body)).namelist()[0] == "embeddings.npy"


def test_a_refused_request_from_a_results_page_goes_back_there_with_the_reason(client, owner, indexed):
    gallery, images, _vecs, _build = indexed
    client.force_login(owner)
    back = reverse("image_similar", args=[images[0].pk]) + "?k=24"
    response = client.post(
        reverse("gallery_export_create", args=[gallery.slug]),
        {"kind": "results", "format": "xlsx", "image": images[0].pk, "next": back},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == back
    assert "Nothing was exported: A results export is a CSV or JSON file" in response.content.decode()
    response = client.post(
        reverse("gallery_export_create", args=[gallery.slug]),
        {"kind": "results", "format": "xlsx", "image": images[0].pk, "next": "https://elsewhere.example/"},
    )
    assert response["Location"] == reverse("gallery_exports", args=[gallery.slug])  # never off-site


def test_the_export_buttons_of_result_pages_are_the_owners_alone(client, owner, other, staff, indexed):
    gallery, images, _vecs, _build = indexed
    Gallery.objects.filter(pk=gallery.pk).update(visibility=Visibility.PUBLIC)
    Image.objects.filter(gallery=gallery).update(moderation_state=ModerationState.APPROVED)
    url = reverse("image_similar", args=[images[0].pk]) + "?band=related"
    client.force_login(owner)
    page = client.get(url).content.decode()
    assert 'id="export-results"' in page and f'name="image" value="{images[0].pk}"' in page
    assert 'name="band" value="related"' in page
    for user in (other, staff):
        client.force_login(user)
        response = client.get(url)
        assert response.status_code == 200 and 'id="export-results"' not in response.content.decode()
    client.logout()
    assert 'id="export-results"' not in client.get(url).content.decode()


def test_the_export_button_of_a_results_page_asks_for_that_list(client, owner, indexed):
    gallery, images, _vecs, _build = indexed
    client.force_login(owner)
    client.post(
        reverse("gallery_export_create", args=[gallery.slug]),
        {"kind": "results", "format": "json", "image": str(images[3].pk), "band": "related", "max_distance": ""},
    )
    export = Export.objects.get()
    assert (export.kind, export.format) == ("results", "json")
    assert export.params == {"image": images[3].pk, "band": "related", "base_url": "http://testserver"}


def test_the_api_asks_lists_and_describes_exports(client, owner, other, indexed):
    gallery, images, _vecs, _build = indexed
    client.force_login(owner)
    url = reverse("api_exports", args=[gallery.slug])
    response = client.post(
        url, {"kind": "results", "format": "csv", "params": {"image": images[0].pk}}, content_type="application/json"
    )
    assert response.status_code == 202, response.content
    made = response.json()
    assert (made["status"], made["params"], made["download_url"]) == ("pending", {"image": images[0].pk}, None)
    response = client.post(url, {"kind": "embeddings"})  # a form works too
    assert response.status_code == 202
    assert client.post(url, b"{not json", content_type="application/json").status_code == 400
    error = client.post(url, {"kind": "index", "format": "json"}, content_type="application/json")
    assert error.status_code == 400 and "is a ZIP file" in error.json()["error"]
    listed = client.get(url).json()["exports"]
    assert [e["kind"] for e in listed] == ["embeddings", "results"]
    exports.export_build(export_id=made["id"])
    detail = client.get(reverse("api_export", args=[made["id"]])).json()
    assert detail["status"] == "ready" and detail["rows"] == 299
    download = detail["download_url"]
    assert download == "http://testserver" + reverse("api_export_download", args=[made["id"]])
    client.logout()
    basic = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"owner:pw-owner-123").decode()}
    response = client.get(download, **basic)
    assert response.status_code == 200 and b"".join(response.streaming_content).startswith(b"rank,id,name")
    assert client.get(download).status_code == 404  # anonymous: the API's 404
    other = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"other:pw-other-123").decode()}
    assert client.get(download, **other).status_code == 404


def test_the_download_is_the_owners_alone_staff_included(client, owner, other, staff, indexed):
    gallery = indexed[0]
    export = built(owner, gallery, "embeddings")
    url = reverse("gallery_export_download", args=[gallery.slug, export.pk])
    for user in (other, staff):
        client.force_login(user)
        assert client.get(url).status_code == 404
        assert client.get(reverse("api_export", args=[export.pk])).status_code == 404
    client.logout()
    assert client.get(url).status_code == 302  # to the login page
    client.force_login(owner)
    wrong_slug = reverse("gallery_export_download", args=["another-slug", export.pk])
    assert client.get(wrong_slug).status_code == 404


def test_a_missing_file_is_a_404_not_an_error(client, owner, indexed):
    gallery = indexed[0]
    export = built(owner, gallery, "embeddings")
    default_storage.delete(export.file)
    client.force_login(owner)
    assert client.get(reverse("gallery_export_download", args=[gallery.slug, export.pk])).status_code == 404


def test_staff_see_exports_in_the_admin_without_a_way_to_the_file(client, owner, staff, indexed):
    gallery = indexed[0]
    export = built(owner, gallery, "embeddings")
    client.force_login(staff)
    listing = client.get(reverse("admin:gallery_export_changelist"))
    assert listing.status_code == 200 and gallery.title in listing.content.decode()
    detail = client.get(reverse("admin:gallery_export_change", args=[export.pk])).content.decode()
    assert "Embeddings" in detail and export.file not in detail and "download" not in detail
    assert client.post(reverse("admin:gallery_export_change", args=[export.pk]), {}).status_code == 403


def test_a_ready_export_with_a_file_in_storage_serves_that_file(client, owner, indexed):
    """The download streams what storage holds, whatever built it (here: written by hand)."""
    gallery = indexed[0]
    name = default_storage.save(f"exports/{gallery.pk}/hand.csv", ContentFile(b"rank,id\n1,2\n"))
    export = Export.objects.create(
        gallery=gallery, requested_by=owner, kind="results", format="csv", status="ready", file=name
    )
    client.force_login(owner)
    response = client.get(reverse("gallery_export_download", args=[gallery.slug, export.pk]))
    assert b"".join(response.streaming_content) == b"rank,id\n1,2\n"
    assert response["Content-Type"] == "text/csv; charset=utf-8"


def test_the_multi_image_results_page_offers_its_list_to_the_owner(client, owner, indexed):
    gallery, images, _vecs, _build = indexed
    client.force_login(owner)
    pos, neg = f"{images[1].pk},{images[2].pk}", str(images[3].pk)
    url = reverse("gallery_similar_many", args=[gallery.slug]) + f"?pos={pos}&neg={neg}&k=100"
    page = client.get(url)
    body = page.content.decode()
    assert f'name="pos" value="{pos}"' in body and 'id="export-results"' in body
    shown = page_rows(client, url, base="http://testserver")
    client.post(
        reverse("gallery_export_create", args=[gallery.slug]),
        {"kind": "results", "format": "json", "pos": pos, "neg": neg},
    )
    export = exports.export_build(export_id=Export.objects.get().pk)
    payload = json.loads(stored_bytes(export))
    assert payload["query"] == {"pos": [images[1].pk, images[2].pk], "neg": [images[3].pk]}
    assert payload["results"][:100] == shown and len(shown) == 100 and payload["count"] == 297


def test_the_gallery_page_links_its_owner_to_the_exports(client, owner, other, indexed):
    gallery = indexed[0]
    Gallery.objects.filter(pk=gallery.pk).update(visibility=Visibility.PUBLIC)
    url = reverse("gallery_detail", args=[gallery.slug])
    client.force_login(owner)
    assert f'href="{reverse("gallery_exports", args=[gallery.slug])}"' in client.get(url).content.decode()
    client.force_login(other)
    assert 'id="exports-link"' not in client.get(url).content.decode()


def test_the_exports_page_says_what_each_result_list_is_of(client, owner, indexed):
    gallery, images, _vecs, _build = indexed
    ask(owner, gallery, "results", "csv", image=images[0].pk, band="similar")
    ask(owner, gallery, "results", "json", pos=[images[1].pk, images[2].pk], neg=[images[3].pk], max_distance="0.5")
    client.force_login(owner)
    page = client.get(reverse("gallery_exports", args=[gallery.slug])).content.decode()
    assert f"(similar to image #{images[0].pk}, similar or closer)" in page
    assert "(nearest to 2 images, less like 1, distance &lt;= 0.5)" in page
