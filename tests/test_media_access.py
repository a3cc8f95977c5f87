"""Image files are reachable only through a permission check: streamed by a view on
local disk (nosniff, a sandboxing CSP, a Content-Disposition that cannot be
injected), or as a redirect to a short-lived signed URL on a private S3 bucket."""

import re
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from django.urls import reverse

from gallery import services
from gallery.models import Image
from tests import imagegen

pytestmark = pytest.mark.django_db


@pytest.fixture
def private(owner):
    return services.gallery_create(owner=owner, title="Family", visibility="private")


def add(gallery, name, data):
    result = services.image_create(gallery=gallery, uploader=gallery.owner, data=data, name=name)
    assert result.status == "added", result
    return result.image


# --- Local disk -----------------------------------------------------------------


def test_the_owner_gets_the_stored_bytes_with_safe_headers(client, owner, private):
    data = imagegen.jpeg(1)
    image = add(private, "holiday.jpg", data)
    client.force_login(owner)
    response = client.get(reverse("image_file", args=[image.pk]))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == data
    assert response["Content-Type"] == "image/jpeg"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"] == 'inline; filename="holiday.jpg"'
    assert "sandbox" in response["Content-Security-Policy"]
    assert response["Cache-Control"].startswith("private")

    thumb = client.get(reverse("image_thumb", args=[image.pk]))
    assert thumb.status_code == 200 and thumb["Content-Type"] == "image/jpeg"
    assert b"".join(thumb.streaming_content)[:3] == b"\xff\xd8\xff"


def test_a_hostile_file_name_cannot_change_the_headers_or_the_type(client, owner, private):
    png = imagegen.encode(imagegen.scene(2), "PNG")
    image = add(private, 'x";filename=evil.html\r\nSet-Cookie: a=b.html.png', png)
    client.force_login(owner)
    response = client.get(reverse("image_file", args=[image.pk]))
    # One quoted parameter of plain characters, with the stored type's extension.
    assert re.fullmatch(r'inline; filename="[A-Za-z0-9._-]+\.png"', response["Content-Disposition"])
    assert "Set-Cookie" not in response
    assert response["Content-Type"] == "image/png"  # from the decoded image, never from the name


def test_a_non_ascii_name_is_sent_as_an_rfc_5987_filename(client, owner, private):
    image = add(private, "Ünïcödé été.jpg", imagegen.jpeg(3))
    client.force_login(owner)
    disposition = client.get(reverse("image_file", args=[image.pk]))["Content-Disposition"]
    assert disposition.isascii()
    assert disposition.startswith("inline; filename=")


def test_strangers_and_guessed_paths_get_404(client, other, private):
    image = add(private, "secret.jpg", imagegen.jpeg(4))
    for user in (other, None):
        client.logout()
        if user:
            client.force_login(user)
        assert client.get(reverse("image_file", args=[image.pk])).status_code == 404
        assert client.get(reverse("image_thumb", args=[image.pk])).status_code == 404
        for path in (image.file.name, image.thumbnail.name):
            assert client.get("/media-direct/" + path).status_code == 404
            assert client.get("/media/" + path).status_code == 404


def test_a_file_missing_from_storage_is_a_404_not_a_crash(client, owner, private):
    image = add(private, "gone.jpg", imagegen.jpeg(5))
    image.file.storage.delete(image.file.name)
    client.force_login(owner)
    assert client.get(reverse("image_file", args=[image.pk])).status_code == 404


# --- S3 (moto's in-process S3) ---------------------------------------------------

BUCKET = "imagesearch-media-test"


@pytest.fixture
def s3(settings, monkeypatch):
    import moto

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(var, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with moto.mock_aws():
        import boto3

        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        settings.S3_BUCKET = BUCKET
        settings.STORAGES = {
            **settings.STORAGES,
            "default": {
                "BACKEND": "storages.backends.s3.S3Storage",
                "OPTIONS": {
                    "bucket_name": BUCKET,
                    "region_name": "us-east-1",
                    "default_acl": None,
                    "querystring_auth": True,
                    "querystring_expire": 300,
                    "file_overwrite": False,
                    "signature_version": "s3v4",
                },
            },
        }
        yield boto3.client("s3", region_name="us-east-1")


def test_on_s3_the_owner_is_redirected_to_a_short_lived_signed_url(client, owner, private, s3):
    data = imagegen.jpeg(6)
    image = add(private, "beach.jpg", data)
    assert s3.get_object(Bucket=BUCKET, Key=image.file.name)["Body"].read() == data
    client.force_login(owner)

    response = client.get(reverse("image_file", args=[image.pk]))
    assert response.status_code == 302
    assert response["Cache-Control"] == "private, no-store"
    url = urlparse(response["Location"])
    query = parse_qs(url.query)
    assert BUCKET in url.netloc + url.path and image.file.name in url.path
    assert query["X-Amz-Expires"] == ["300"]
    assert query["X-Amz-Signature"][0]
    assert query["response-content-type"] == ["image/jpeg"]
    assert query["response-content-disposition"] == ['inline; filename="beach.jpg"']

    fetched = requests.get(response["Location"], timeout=10)
    assert fetched.status_code == 200 and fetched.content == data
    assert fetched.headers["Content-Type"] == "image/jpeg"


def test_on_s3_the_object_has_no_public_url_and_strangers_get_no_signature(client, other, private, s3):
    image = add(private, "secret.jpg", imagegen.jpeg(7))
    unsigned = f"https://{BUCKET}.s3.amazonaws.com/{image.file.name}"
    assert requests.get(unsigned, timeout=10).status_code == 403
    acl = s3.get_object_acl(Bucket=BUCKET, Key=image.file.name)
    assert not [g for g in acl["Grants"] if g["Grantee"].get("URI", "").endswith("AllUsers")]

    client.force_login(other)
    response = client.get(reverse("image_file", args=[image.pk]))
    assert response.status_code == 404 and "Location" not in response
    assert Image.objects.filter(pk=image.pk).exists()
