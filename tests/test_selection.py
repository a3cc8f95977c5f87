"""Acting on several images: the image's delete asks first, a selection moves to the trash in one
request, Undo restores it with new ids (JSON), and a ZIP holds exactly the selected originals the
person may see, within its caps."""

import io
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from gallery import services
from gallery.models import Image, TrashedImage
from tests import imagegen

pytestmark = pytest.mark.django_db

JSON = {"HTTP_ACCEPT": "application/json"}


@pytest.fixture
def gallery(owner):
    g = services.gallery_create(owner=owner, title="Shots", visibility="public")
    files = [SimpleUploadedFile(f"shot-{s}.jpg", imagegen.jpeg(s), "image/jpeg") for s in range(4)]
    assert [r.status for r in services.images_upload(gallery=g, uploader=owner, files=files)] == ["added"] * 4
    return g


def names(gallery):
    return sorted(gallery.images.values_list("original_name", flat=True))


def test_the_image_delete_page_asks_first_and_only_a_post_trashes(client, owner, gallery):
    image = gallery.images.get(original_name="shot-1.jpg")
    client.force_login(owner)
    page = client.get(reverse("image_delete", args=[image.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Move “shot-1.jpg” to the trash?" in html and 'method="post"' in html
    assert Image.objects.filter(pk=image.pk).exists()  # asking deleted nothing
    image_page = client.get(image.get_absolute_url()).content.decode()
    assert f'href="{reverse("image_delete", args=[image.pk])}"' in image_page  # a link to the question, not a form
    done = client.post(reverse("image_delete", args=[image.pk]))
    assert done.status_code == 302 and done["Location"] == gallery.get_absolute_url()
    assert not Image.objects.filter(pk=image.pk).exists()
    assert TrashedImage.objects.get(gallery=gallery).original_name == "shot-1.jpg"


def test_delete_then_undo_in_json_gives_back_the_image_with_a_new_id(client, owner, gallery):
    image = gallery.images.get(original_name="shot-2.jpg")
    client.force_login(owner)
    answer = client.post(reverse("image_delete", args=[image.pk]), **JSON).json()
    (item,) = TrashedImage.objects.filter(gallery=gallery)
    assert answer["trashed"] == [item.pk]
    assert answer["undo"] == reverse("gallery_trash_undo", args=[gallery.slug])
    assert answer["message"] == "“shot-2.jpg” moved to the trash."

    undone = client.post(answer["undo"], {"item": answer["trashed"]}, **JSON)
    assert undone.status_code == 200
    body = undone.json()
    (restored,) = body["restored"]
    new = Image.objects.get(gallery=gallery, original_name="shot-2.jpg")
    assert restored == {
        "trash_id": item.pk,
        "id": new.pk,
        "name": "shot-2.jpg",
        "url": f"/i/{new.pk}/",
        "thumbnail": f"/i/{new.pk}/thumb",
        "file": f"/i/{new.pk}/file",
    }
    assert new.created_at == image.created_at  # back in its place in the grid
    assert body["kept"] == [] and body["missing"] == [] and body["message"] == "1 image restored."
    assert not TrashedImage.objects.exists()
    # A second Undo of the same rows finds nothing to restore, and says so.
    again = client.post(answer["undo"], {"item": answer["trashed"]}, **JSON).json()
    assert again["restored"] == [] and again["missing"] == [item.pk] and again["message"] == "Nothing was restored."


def test_undo_keeps_in_the_trash_a_picture_uploaded_again_meanwhile(client, owner, gallery):
    image = gallery.images.get(original_name="shot-0.jpg")
    client.force_login(owner)
    answer = client.post(reverse("image_delete", args=[image.pk]), **JSON).json()
    services.images_upload(
        gallery=gallery, uploader=owner, files=[SimpleUploadedFile("again.jpg", imagegen.jpeg(0), "image/jpeg")]
    )
    body = client.post(answer["undo"], {"item": answer["trashed"]}, **JSON).json()
    assert body["restored"] == []
    assert (
        body["kept"][0]["message"] == "“shot-0.jpg” is already in this gallery as “again.jpg”; it stays in the trash."
    )
    assert TrashedImage.objects.filter(pk=answer["trashed"][0]).exists()


def test_bulk_trash_moves_the_selection_and_one_undo_restores_all(client, owner, gallery):
    chosen = list(gallery.images.filter(original_name__in=["shot-0.jpg", "shot-3.jpg"]).values_list("pk", flat=True))
    client.force_login(owner)
    answer = client.post(
        reverse("gallery_images_trash", args=[gallery.slug]), {"image": ",".join(map(str, chosen))}, **JSON
    ).json()
    assert answer["count"] == 2 and answer["message"] == "2 images moved to the trash."
    assert names(gallery) == ["shot-1.jpg", "shot-2.jpg"]
    assert sorted(TrashedImage.objects.values_list("original_name", flat=True)) == ["shot-0.jpg", "shot-3.jpg"]
    body = client.post(answer["undo"], {"item": answer["trashed"]}, **JSON).json()
    assert sorted(r["name"] for r in body["restored"]) == ["shot-0.jpg", "shot-3.jpg"]
    assert body["message"] == "2 images restored."
    assert names(gallery) == ["shot-0.jpg", "shot-1.jpg", "shot-2.jpg", "shot-3.jpg"]


def test_bulk_trash_ignores_ids_of_other_galleries_and_refuses_an_empty_or_huge_selection(
    client, owner, other, gallery
):
    theirs = services.gallery_create(owner=other, title="Theirs")
    foreign = services.image_create(gallery=theirs, uploader=other, data=imagegen.jpeg(40), name="x.jpg").image
    mine = gallery.images.get(original_name="shot-1.jpg")
    client.force_login(owner)
    url = reverse("gallery_images_trash", args=[gallery.slug])
    answer = client.post(url, {"image": [str(foreign.pk), str(mine.pk)]}, **JSON).json()
    assert answer["count"] == 1
    assert Image.objects.filter(pk=foreign.pk).exists()
    empty = client.post(url, {"image": ""}, **JSON)
    assert empty.status_code == 400 and empty.json()["error"] == "Select at least one image."
    huge = client.post(url, {"image": ",".join(str(n) for n in range(1, 202))}, **JSON)
    assert huge.status_code == 400 and "At most 200 images at once" in huge.json()["error"]
    # A form post (no JSON) lands back on the gallery with a message.
    page = client.post(url, {"image": str(gallery.images.first().pk)}, follow=True)
    assert "moved to the trash" in page.content.decode()


def test_strangers_cannot_trash_or_undo(client, owner, other, gallery):
    image = gallery.images.first()
    client.force_login(owner)
    answer = client.post(reverse("image_delete", args=[image.pk]), **JSON).json()
    client.force_login(other)  # the gallery is public: they see it, but it is not theirs
    assert client.get(reverse("image_delete", args=[gallery.images.first().pk])).status_code == 404
    assert client.post(answer["undo"], {"item": answer["trashed"]}, **JSON).status_code == 404
    assert client.post(reverse("gallery_images_trash", args=[gallery.slug]), {"image": "1"}).status_code == 404
    assert TrashedImage.objects.filter(pk=answer["trashed"][0]).exists()


def read_zip(response):
    data = b"".join(response.streaming_content)
    return zipfile.ZipFile(io.BytesIO(data))


def test_the_zip_holds_the_selected_originals_byte_for_byte(client, owner, gallery):
    chosen = list(gallery.images.order_by("original_name")[:3])
    client.force_login(owner)
    ids = ",".join(str(i.pk) for i in chosen)
    response = client.get(reverse("gallery_images_zip", args=[gallery.slug]) + f"?ids={ids}")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == f'attachment; filename="{gallery.slug}-3-images.zip"'
    archive = read_zip(response)
    assert archive.testzip() is None
    assert archive.namelist() == ["shot-0.jpg", "shot-1.jpg", "shot-2.jpg"]
    for image in chosen:
        with image.file.open("rb") as fh:
            assert archive.read(image.original_name) == fh.read()
    check = client.get(reverse("gallery_images_zip", args=[gallery.slug]) + f"?ids={ids}&check=1").json()
    assert check == {"count": 3, "bytes": sum(i.byte_size for i in chosen), "ok": True}


def test_the_zip_gives_same_named_files_distinct_names(client, owner, gallery):
    extra = services.image_create(gallery=gallery, uploader=owner, data=imagegen.jpeg(9), name="shot-0.JPG").image
    first = gallery.images.get(original_name="shot-0.jpg")
    client.force_login(owner)
    url = reverse("gallery_images_zip", args=[gallery.slug]) + f"?ids={first.pk},{extra.pk}"
    assert read_zip(client.get(url)).namelist() == ["shot-0.jpg", "shot-0-2.jpg"]


def test_the_zip_holds_only_what_the_person_may_see(client, owner, other, staff, gallery):
    hidden = gallery.images.get(original_name="shot-3.jpg")
    services.image_moderate(image=hidden, actor=staff, state="rejected", reason="not for strangers")
    ids = ",".join(str(pk) for pk in gallery.images.order_by("pk").values_list("pk", flat=True))
    url = reverse("gallery_images_zip", args=[gallery.slug]) + f"?ids={ids}"
    client.force_login(other)
    assert "shot-3.jpg" not in read_zip(client.get(url)).namelist()
    assert len(read_zip(client.get(url)).namelist()) == 3
    client.logout()
    assert len(read_zip(client.get(url)).namelist()) == 3  # a public gallery: anonymous visitors too
    client.force_login(owner)
    assert "shot-3.jpg" in read_zip(client.get(url)).namelist()
    private = services.gallery_create(owner=owner, title="Private")
    client.force_login(other)
    assert client.get(reverse("gallery_images_zip", args=[private.slug]) + f"?ids={ids}").status_code == 404


def test_the_zip_is_refused_over_its_caps_with_a_readable_reason(client, owner, gallery, settings):
    ids = ",".join(str(pk) for pk in gallery.images.values_list("pk", flat=True))
    url = reverse("gallery_images_zip", args=[gallery.slug]) + f"?ids={ids}"
    client.force_login(owner)
    settings.IMAGESEARCH_ZIP_MAX_IMAGES = 3
    refused = client.get(url)
    assert refused.status_code == 400
    assert "4 images selected; a download holds at most 3." in refused.content.decode()
    check = client.get(url + "&check=1")
    assert check.status_code == 400 and check.json()["ok"] is False
    settings.IMAGESEARCH_ZIP_MAX_IMAGES = 500
    settings.IMAGESEARCH_ZIP_MAX_MB = 1
    gallery.images.update(byte_size=400_000)
    too_big = client.get(url, **JSON)
    assert too_big.status_code == 400
    assert too_big.json()["error"].startswith("The selected originals add up to 2 MB; a download holds at most 1 MB.")
    empty = client.get(reverse("gallery_images_zip", args=[gallery.slug]))
    assert empty.status_code == 400 and "Select at least one image" in empty.content.decode()


def test_the_zip_streams_one_file_at_a_time(client, owner, gallery, monkeypatch):
    """The first bytes go out before the last original is opened: no archive is built in memory first."""
    from django.core.files.storage import FileSystemStorage

    opened = []
    real_open = FileSystemStorage.open

    def spy(self, name, mode="rb"):
        opened.append(name)
        return real_open(self, name, mode)

    monkeypatch.setattr(FileSystemStorage, "open", spy)
    images = list(gallery.images.order_by("original_name"))
    client.force_login(owner)
    url = reverse("gallery_images_zip", args=[gallery.slug]) + "?ids=" + ",".join(str(i.pk) for i in images)
    chunks = iter(client.get(url).streaming_content)
    first = next(chunk for chunk in chunks if chunk)
    assert first.startswith(b"PK\x03\x04")  # a local file header: the archive has started
    assert len(opened) == 1  # ... while only the first original has been opened
    rest = b"".join(chunks)
    assert len(opened) == len(images)
    assert zipfile.ZipFile(io.BytesIO(first + rest)).namelist() == [i.original_name for i in images]
