"""A signed-in person creates a gallery and sees its empty page, ready for uploads."""

from playwright.sync_api import expect

from gallery.models import Gallery
from tests.browser.conftest import BROWSER, log_in, screenshot

pytestmark = BROWSER


def test_a_person_creates_a_private_gallery_and_lands_on_it(page, owner):
    log_in(page, "owner", "pw-owner-123")
    page.get_by_role("link", name="New gallery").first.click()
    page.get_by_label("Title").fill("Garden birds")
    page.get_by_label("Description").fill("Feeder camera, spring.")
    page.get_by_label("Visibility").select_option("private")
    screenshot(page, "create-gallery-0-form")
    page.get_by_role("button", name="Create gallery").click()

    gallery = Gallery.objects.get(owner=owner)
    assert (gallery.title, gallery.visibility) == ("Garden birds", "private")
    expect(page).to_have_url(f"/g/{gallery.slug}/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Garden birds")
    expect(page.locator("#upload-form")).to_be_visible()
    expect(page.locator("#grid-empty")).to_contain_text("No images yet")
    screenshot(page, "create-gallery-1-empty")

    page.goto("/")
    expect(page.locator(".gallery-card")).to_have_count(1)
    expect(page.locator(".gallery-card")).to_contain_text("Garden birds")
