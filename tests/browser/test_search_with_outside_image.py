"""A picture dropped on the gallery's search zone is embedded (not stored) and its
neighbours are listed nearest first."""

import re

from playwright.sync_api import expect

from gallery.models import Image
from tests import imagegen
from tests.browser.conftest import BROWSER, drop_files, log_in, screenshot

pytestmark = BROWSER


def test_dropping_an_outside_picture_lists_its_neighbours(page, embedded_gallery):
    gallery, _worker = embedded_gallery
    before = Image.objects.filter(gallery=gallery).count()
    outside = imagegen.encode(imagegen.near_duplicate(imagegen.scene(5), 7), "PNG")
    log_in(page, "owner", "pw-owner-123")
    page.goto(gallery.get_absolute_url())
    page.get_by_role("button", name="Search with a picture").click()  # the toolbar opens the search panel
    page.get_by_label("results").select_option("6")

    with page.expect_navigation(timeout=120_000):
        drop_files(page, "#search-form", [("holiday-shot.png", "image/png", outside)])
    # Redirected to the results' signed GET URL: a reload shows them again, without posting.
    expect(page).to_have_url(re.compile(rf"/g/{gallery.slug}/search/[^/]+/\?k=6$"))
    expect(page.locator("#query-title")).to_have_text("holiday-shot.png")
    expect(page.get_by_role("img", name="Your picture: holiday-shot.png")).to_be_visible()
    cards = page.locator("#results .card")
    expect(cards).to_have_count(6)
    expect(cards.first.locator(".name")).to_have_text("scene-5.jpg")
    distances = [float(t.split()[-1]) for t in cards.locator(".distance").all_inner_texts()]
    assert distances == sorted(distances)
    assert Image.objects.filter(gallery=gallery).count() == before  # searched with, never stored
    screenshot(page, "outside-search-0-results")
    page.reload()
    expect(cards.first.locator(".name")).to_have_text("scene-5.jpg")

    # A result is a way in: its card starts a search from that image.
    cards.first.locator("a.thumb").click()
    expect(page.locator("#query-title")).to_have_text("scene-5.jpg")


def test_a_file_that_is_not_a_picture_gets_a_readable_error(page, embedded_gallery):
    gallery, _worker = embedded_gallery
    log_in(page, "owner", "pw-owner-123")
    page.goto(gallery.get_absolute_url())
    with page.expect_navigation(timeout=120_000):
        drop_files(page, "#search-form", [("notes.jpg", "image/jpeg", bytes(range(256)) * 8)])
    expect(page.locator(".note-bad[role=alert]")).to_contain_text("not an image")
    expect(page.locator("#results")).to_have_count(0)
    screenshot(page, "outside-search-1-error")
