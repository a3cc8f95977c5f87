"""On an image's page, "Find similar" lists the gallery nearest first: the
near-duplicate ranks first, each card shows rank, distance and a similarity bar,
and the k selector changes how many come back."""

from playwright.sync_api import expect

from gallery.models import Image
from tests.browser.conftest import BROWSER, log_in, screenshot

pytestmark = BROWSER


def test_find_similar_puts_the_near_duplicate_first(page, embedded_gallery):
    gallery, _worker = embedded_gallery
    query = Image.objects.get(gallery=gallery, original_name="scene-3-copy.jpg")
    log_in(page, "owner", "pw-owner-123")
    page.goto(gallery.get_absolute_url())
    page.get_by_role("link", name="scene-3-copy.jpg").first.click()
    expect(page).to_have_url(f"/i/{query.pk}/")
    expect(page.get_by_role("img", name="scene-3-copy.jpg")).to_be_visible()
    screenshot(page, "find-similar-0-image")

    page.get_by_role("button", name="Find similar").click()
    expect(page).to_have_url(f"/i/{query.pk}/similar/?k=12")
    cards = page.locator("#results .card")
    expect(cards).to_have_count(6)  # the other six images; never the query itself
    first = cards.first
    expect(first.locator(".name")).to_have_text("scene-3.jpg")
    expect(first.locator(".rank")).to_have_text("#1")
    ranks = cards.locator(".rank").all_inner_texts()
    assert ranks == [f"#{i}" for i in range(1, 7)]
    distances = [float(t.split()[-1]) for t in cards.locator(".distance").all_inner_texts()]
    assert distances == sorted(distances)
    assert "scene-3-copy.jpg" not in cards.locator(".name").all_inner_texts()
    widths = [
        float(w)
        for w in cards.locator(".simbar").evaluate_all("bars => bars.map(b => b.getAttribute('aria-valuenow'))")
    ]
    assert widths == sorted(widths, reverse=True) and 0 < widths[0] <= 100
    screenshot(page, "find-similar-1-results")

    page.get_by_label("Results", exact=True).select_option("6")  # applies at once with scripts on
    expect(page).to_have_url(f"/i/{query.pk}/similar/?k=6&max_distance=")
    expect(cards).to_have_count(6)
    page.get_by_label("Results", exact=True).select_option("24")
    expect(cards).to_have_count(6)
