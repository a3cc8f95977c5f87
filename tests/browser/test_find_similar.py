"""On an image's page, "Find similar" lists the gallery copies first, then nearest first: the
near-duplicate ranks first with its band, each card shows rank, band, distance and a bar of the
share of the gallery's pairs farther apart, the Show control filters by band, and the k selector
changes how many come back."""

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
    expect(first.locator(".band")).to_have_text("Near-duplicate")
    screenshot(page, "find-similar-1-results")

    show = page.get_by_label("Show", exact=True)
    expect(show.locator("option:checked")).to_have_text("Any distance")
    expect(show.locator("option[value=near]")).to_have_text("Near-duplicate (1)")
    show.select_option("near")  # applies at once with scripts on
    expect(page).to_have_url(f"/i/{query.pk}/similar/?k=12&band=near")
    expect(cards).to_have_count(1)
    expect(first.locator(".name")).to_have_text("scene-3.jpg")
    screenshot(page, "find-similar-2-near-duplicates")
    page.get_by_label("Show", exact=True).select_option("")
    expect(cards).to_have_count(6)

    page.get_by_label("Results", exact=True).select_option("6")
    expect(page).to_have_url(f"/i/{query.pk}/similar/?k=6&band=")
    expect(cards).to_have_count(6)
    page.get_by_label("Results", exact=True).select_option("24")
    expect(cards).to_have_count(6)
