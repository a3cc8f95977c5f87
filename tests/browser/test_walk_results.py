"""A click on a result makes it the new query, so a person walks through the collection."""

from playwright.sync_api import expect

from gallery.models import Image
from tests.browser.conftest import BROWSER, log_in, screenshot

pytestmark = BROWSER


def test_clicking_a_result_card_searches_from_that_image(page, embedded_gallery):
    gallery, _worker = embedded_gallery
    start = Image.objects.get(gallery=gallery, original_name="scene-3.jpg")
    copy = Image.objects.get(gallery=gallery, original_name="scene-3-copy.jpg")
    log_in(page, "owner", "pw-owner-123")
    page.goto(f"/i/{copy.pk}/similar/")
    expect(page.locator("#query-title")).to_have_text("scene-3-copy.jpg")

    # Step 1: the top result (the original) becomes the query; its nearest is the copy.
    page.locator("#results .card").first.locator("a.thumb").click()
    expect(page).to_have_url(f"/i/{start.pk}/similar/?k=12")
    expect(page.locator("#query-title")).to_have_text("scene-3.jpg")
    expect(page.locator("#results .card").first.locator(".name")).to_have_text("scene-3-copy.jpg")
    screenshot(page, "walk-0-step-one")

    # Step 2: walk on to another result, by keyboard this time.
    third = page.locator("#results .card").nth(2)
    name = third.locator(".name").inner_text()
    third.locator("a.thumb").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#query-title")).to_have_text(name)
    expect(page.locator("#results .card")).to_have_count(6)
    assert name not in page.locator("#results .card .name").all_inner_texts()
    screenshot(page, "walk-1-step-two")

    page.go_back()
    expect(page.locator("#query-title")).to_have_text("scene-3.jpg")
