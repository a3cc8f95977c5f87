"""A moderator rejects an image in the admin; it leaves the owner's results at once."""

from playwright.sync_api import expect

from gallery.models import Image, ModerationState
from tests.browser.conftest import BROWSER, log_in, screenshot

pytestmark = BROWSER


def test_an_image_rejected_in_the_admin_disappears_from_results(new_page, embedded_gallery, staff):
    gallery, _worker = embedded_gallery
    copy = Image.objects.get(gallery=gallery, original_name="scene-3-copy.jpg")
    owner_page = new_page()
    log_in(owner_page, "owner", "pw-owner-123")
    owner_page.goto(f"/i/{copy.pk}/similar/")
    names = owner_page.locator("#results .card .name")
    expect(names.first).to_have_text("scene-3.jpg")

    moderator = new_page()
    log_in(moderator, "staff", "pw-staff-123")
    moderator.goto("/admin/gallery/image/?q=scene-3.jpg")
    moderator.get_by_role("link", name="scene-3.jpg", exact=True).first.click()
    moderator.get_by_label("Reason").fill("Duplicate of a private photo.")
    moderator.get_by_role("button", name="Reject").click()
    expect(moderator.locator(".messagelist")).to_be_visible()
    screenshot(moderator, "moderation-0-admin")
    rejected = Image.objects.get(gallery=gallery, original_name="scene-3.jpg")
    assert rejected.moderation_state == ModerationState.REJECTED

    owner_page.reload()
    expect(names).to_have_count(5)
    assert "scene-3.jpg" not in names.all_inner_texts()
    screenshot(owner_page, "moderation-1-results-without-rejected")
    owner_page.goto(f"/i/{rejected.pk}/")
    expect(owner_page.locator(".note-bad")).to_contain_text("rejected by a moderator")
    expect(owner_page.get_by_role("button", name="Find similar")).to_have_count(0)
