"""IMAGESEARCH_MODERATION: "pre" keeps new uploads to their owner and staff until
approved; "post" shows them at once, until rejected. Rejected images are shown to
no one but staff and (marked as rejected) their owner, in either mode."""

import pytest
from django.contrib.auth.models import AnonymousUser
from django.urls import reverse

from gallery import services
from gallery.models import Image, ModerationState
from tests import imagegen

pytestmark = pytest.mark.django_db


@pytest.fixture
def public_gallery(owner):
    return services.gallery_create(owner=owner, title="Open", visibility="public")


def add(gallery, name, seed):
    return services.image_create(gallery=gallery, uploader=gallery.owner, data=imagegen.jpeg(seed), name=name).image


def listed(client, gallery):
    response = client.get(reverse("gallery_detail", args=[gallery.slug]))
    return {img.original_name for img in response.context["page"].object_list}


def test_pre_moderation_shows_a_new_upload_only_to_its_owner_and_staff(
    settings, client, public_gallery, owner, other, staff
):
    settings.IMAGESEARCH_MODERATION = "pre"
    new = add(public_gallery, "new.jpg", 1)
    for user in (other, None):
        client.logout()
        if user:
            client.force_login(user)
        assert listed(client, public_gallery) == set()
        for view in ("image_detail", "image_file", "image_thumb", "api_similar"):
            assert client.get(reverse(view, args=[new.pk])).status_code == 404
    for user in (owner, staff):
        client.force_login(user)
        assert listed(client, public_gallery) == {"new.jpg"}
        assert client.get(reverse("image_file", args=[new.pk])).status_code == 200
    client.force_login(owner)
    assert "Awaiting review" in client.get(reverse("gallery_detail", args=[public_gallery.slug])).content.decode()

    services.image_moderate(image=new, actor=staff, state=ModerationState.APPROVED)
    client.force_login(other)
    assert listed(client, public_gallery) == {"new.jpg"}
    client.logout()
    assert client.get(reverse("image_file", args=[new.pk])).status_code == 200


def test_post_moderation_shows_a_new_upload_at_once_until_it_is_rejected(
    settings, client, public_gallery, other, staff
):
    settings.IMAGESEARCH_MODERATION = "post"
    new = add(public_gallery, "new.jpg", 2)
    client.force_login(other)
    assert listed(client, public_gallery) == {"new.jpg"}
    assert client.get(reverse("image_detail", args=[new.pk])).status_code == 200

    services.image_moderate(image=new, actor=staff, state=ModerationState.REJECTED, reason="Off topic")
    assert listed(client, public_gallery) == set()
    assert client.get(reverse("image_detail", args=[new.pk])).status_code == 404
    client.logout()
    assert client.get(reverse("image_file", args=[new.pk])).status_code == 404


@pytest.mark.parametrize("mode", ["pre", "post"])
def test_the_owner_sees_a_rejected_image_marked_as_rejected_in_either_mode(
    settings, client, public_gallery, owner, staff, mode
):
    settings.IMAGESEARCH_MODERATION = mode
    image = add(public_gallery, "bad.jpg", 3)
    services.image_moderate(image=image, actor=staff, state=ModerationState.REJECTED, reason="Copyrighted")
    client.force_login(owner)
    assert listed(client, public_gallery) == {"bad.jpg"}
    page = client.get(reverse("image_detail", args=[image.pk])).content.decode()
    assert "Rejected" in page or "rejected" in page
    assert "Copyrighted" in page


@pytest.mark.parametrize("mode", ["pre", "post"])
def test_visible_to_follows_the_mode_for_every_state(settings, public_gallery, owner, other, staff, mode):
    settings.IMAGESEARCH_MODERATION = mode
    add(public_gallery, "pending.jpg", 4)
    approved = add(public_gallery, "approved.jpg", 5)
    rejected = add(public_gallery, "rejected.jpg", 6)
    services.image_moderate(image=approved, actor=staff, state=ModerationState.APPROVED)
    services.image_moderate(image=rejected, actor=staff, state=ModerationState.REJECTED)

    def names(user):
        return set(Image.objects.visible_to(user).values_list("original_name", flat=True))

    strangers = {"approved.jpg", "pending.jpg"} if mode == "post" else {"approved.jpg"}
    assert names(other) == strangers
    assert names(AnonymousUser()) == strangers
    assert names(owner) == {"pending.jpg", "approved.jpg", "rejected.jpg"}
    assert names(staff) == {"pending.jpg", "approved.jpg", "rejected.jpg"}


def test_a_bad_moderation_mode_stops_start_up(monkeypatch):
    import subprocess
    import sys

    code = "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='imagesearch.settings'; django.setup()"
    env = {"IMAGESEARCH_MODERATION": "sometimes", "DJANGO_SECRET_KEY": "x", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=settings_dir())
    assert result.returncode != 0
    assert "IMAGESEARCH_MODERATION must be 'pre' or 'post'" in result.stderr


def settings_dir():
    from pathlib import Path

    return str(Path(__file__).resolve().parent.parent)
