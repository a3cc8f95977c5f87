"""Gallery pages: create, edit, delete, and who may see or change what."""

import pytest
from django.urls import reverse

from gallery import services
from gallery.models import Gallery

pytestmark = pytest.mark.django_db


def test_a_signed_in_user_creates_a_gallery_with_a_unique_slug(client, owner):
    client.force_login(owner)
    for _ in range(2):
        response = client.post(
            reverse("gallery_create"), {"title": "Beach Photos", "description": "", "visibility": "private"}
        )
        assert response.status_code == 302
    slugs = sorted(Gallery.objects.filter(owner=owner).values_list("slug", flat=True))
    assert slugs == ["beach-photos", "beach-photos-2"]


def test_a_slug_taken_between_the_check_and_the_insert_is_chosen_again(owner, monkeypatch):
    from gallery.services import galleries

    Gallery.objects.create(owner=owner, title="Beach", slug="beach")
    real = galleries._unique_slug
    answers = iter(["beach"])  # what a concurrent request would have seen free a moment ago
    monkeypatch.setattr(galleries, "_unique_slug", lambda title: next(answers, None) or real(title))
    assert services.gallery_create(owner=owner, title="Beach").slug == "beach-2"


def test_anonymous_visitors_are_sent_to_log_in_to_create(client):
    response = client.get(reverse("gallery_create"))
    assert response.status_code == 302
    assert reverse("login") in response["Location"]


def test_the_owner_edits_and_deletes_a_gallery(client, owner):
    gallery = services.gallery_create(owner=owner, title="Old title")
    client.force_login(owner)
    response = client.post(
        reverse("gallery_edit", args=[gallery.slug]), {"title": "New title", "description": "d", "visibility": "public"}
    )
    assert response.status_code == 302
    gallery.refresh_from_db()
    assert (gallery.title, gallery.visibility) == ("New title", "public")
    response = client.post(reverse("gallery_delete", args=[gallery.slug]))
    assert response.status_code == 302
    assert not Gallery.objects.filter(pk=gallery.pk).exists()


@pytest.mark.parametrize("name", ["gallery_edit", "gallery_delete"])
def test_another_user_cannot_edit_or_delete_and_gets_404(client, owner, other, name):
    gallery = services.gallery_create(owner=owner, title="Mine", visibility="public")
    client.force_login(other)
    assert client.get(reverse(name, args=[gallery.slug])).status_code == 404
    assert client.post(reverse(name, args=[gallery.slug]), {"title": "x", "visibility": "public"}).status_code == 404
    gallery.refresh_from_db()
    assert gallery.title == "Mine"


def test_private_galleries_are_404_to_strangers_and_public_ones_are_open(client, owner, other):
    private = services.gallery_create(owner=owner, title="Private one")
    public = services.gallery_create(owner=owner, title="Public one", visibility="public")
    assert client.get(reverse("gallery_detail", args=[private.slug])).status_code == 404
    assert client.get(reverse("gallery_detail", args=[public.slug])).status_code == 200
    client.force_login(other)
    assert client.get(reverse("gallery_detail", args=[private.slug])).status_code == 404
    client.force_login(owner)
    assert client.get(reverse("gallery_detail", args=[private.slug])).status_code == 200


def test_home_lists_my_galleries_and_public_ones_but_not_others_private(client, owner, other):
    services.gallery_create(owner=owner, title="Owner private")
    services.gallery_create(owner=owner, title="Owner public", visibility="public")
    services.gallery_create(owner=other, title="Other private")
    client.force_login(owner)
    html = client.get(reverse("home")).content.decode()
    assert "Owner private" in html and "Owner public" in html
    assert "Other private" not in html
    client.logout()
    html = client.get(reverse("home")).content.decode()
    assert "Owner public" in html and "Owner private" not in html


def test_signing_up_logs_the_new_user_in(client):
    response = client.post(
        reverse("signup"),
        {"username": "newbie", "password1": "a-long-passphrase-7", "password2": "a-long-passphrase-7"},
    )
    assert response.status_code == 302
    assert client.get(reverse("gallery_create")).status_code == 200
