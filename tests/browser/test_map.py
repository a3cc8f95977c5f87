"""The map: a real worker lays the gallery out after its build; the page draws its points, zooms,
names the point under the cursor, opens "find similar" on a click, and a lasso selection (as
positives, and one as negatives) becomes a search with several images, refined on its results page."""

import math

from playwright.sync_api import expect

from gallery.models import Gallery, Image, MapBuild
from tests import live
from tests.browser.conftest import BROWSER, log_in, screenshot

pytestmark = BROWSER


def _positions(page):
    return page.evaluate(
        "() => Object.fromEntries(window.imagesearchMap.ids().map(id => [id, window.imagesearchMap.screenPosition(id)]))"
    )


def _lasso_around(page, box, centre, radius, shift=False):
    """Draw a 12-sided lasso of `radius` CSS pixels around `centre` (canvas coordinates)."""
    points = [
        (box["x"] + centre["x"] + radius * math.cos(a), box["y"] + centre["y"] + radius * math.sin(a))
        for a in (2 * math.pi * i / 12 for i in range(13))
    ]
    if shift:
        page.keyboard.down("Shift")
    page.mouse.move(*points[0])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(x, y, steps=2)
    page.mouse.up()
    if shift:
        page.keyboard.up("Shift")


def _radius_alone(positions, pk):
    """Half the distance from `pk`'s point to its nearest other point (capped): a lasso that holds it alone."""
    me = positions[str(pk)]
    others = [math.dist((me["x"], me["y"]), (p["x"], p["y"])) for k, p in positions.items() if k != str(pk)]
    return max(3.0, min(40.0, min(others) / 2))


def test_the_map_draws_zooms_opens_similar_and_lasso_searches_with_several_images(page, embedded_gallery):
    gallery, worker = embedded_gallery
    live.wait_for(
        lambda: MapBuild.objects.filter(
            build_id=Gallery.objects.get(pk=gallery.pk).current_index_id, status=MapBuild.Status.READY
        ).exists(),
        timeout=60,
        message="the worker's map of the current build",
        worker=worker,
    )
    images = {i.original_name: i for i in Image.objects.filter(gallery=gallery)}
    log_in(page, "owner", "pw-owner-123")
    page.goto(gallery.get_absolute_url())
    page.locator("#map-link").click()
    expect(page).to_have_url(f"/g/{gallery.slug}/map/")
    root = page.locator("#map")
    expect(root).to_have_attribute("data-ready", "1")
    expect(root).to_have_attribute("data-points", "7")
    expect(root).to_have_attribute("data-thumbs", "1")  # seven points: drawn as their thumbnails
    page.wait_for_timeout(500)  # thumbnails load
    screenshot(page, "map-0-points")

    # Points are drawn: the canvas is not one flat colour.
    colours = page.evaluate(
        """() => { const c = document.getElementById('map-canvas'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                   const seen = new Set(); for (let i = 0; i < d.length; i += 4 * 97) seen.add(d[i] << 16 | d[i + 1] << 8 | d[i + 2]); return seen.size; }"""
    )
    assert colours > 20

    # Zoom in with the wheel at the centre: the scale grows and the point under the cursor stays put.
    canvas = page.locator("#map-canvas")
    box = canvas.bounding_box()
    before = page.evaluate("() => window.imagesearchMap.view().scale")
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(3):
        page.mouse.wheel(0, -200)
    page.wait_for_timeout(200)
    after = page.evaluate("() => window.imagesearchMap.view().scale")
    assert after > before * 1.5
    page.locator("#map-reset").click()
    page.wait_for_timeout(100)
    assert abs(page.evaluate("() => window.imagesearchMap.view().scale") - before) < 1e-3
    # The keyboard: + zooms, an arrow pans, 0 resets.
    canvas.evaluate("c => c.focus({preventScroll: true})")
    page.keyboard.press("+")
    assert page.evaluate("() => window.imagesearchMap.view().scale") > before * 1.5
    tx = page.evaluate("() => window.imagesearchMap.view().tx")
    page.keyboard.press("ArrowLeft")
    assert page.evaluate("() => window.imagesearchMap.view().tx") > tx
    page.keyboard.press("0")
    assert abs(page.evaluate("() => window.imagesearchMap.view().scale") - before) < 1e-3

    # Hover names the image; a click opens its "find similar".
    box = canvas.bounding_box()
    positions = _positions(page)
    target = images["scene-3.jpg"]
    at = positions[str(target.pk)]
    page.mouse.move(box["x"] + at["x"] + 1, box["y"] + at["y"] + 1)
    expect(page.locator("#map-tip")).to_be_visible()
    expect(page.locator("#map-tip")).to_have_text("scene-3.jpg")
    screenshot(page, "map-1-hover")
    # Nearest point wins when points overlap: click where only this one is within reach.
    page.mouse.click(box["x"] + at["x"], box["y"] + at["y"])
    expect(page).to_have_url(f"/i/{target.pk}/similar/")
    expect(page.locator("#results .card")).to_have_count(6)

    # Lasso: scene-0 with the lasso tool, made a negative; then scene-3 by Shift-drag, as the positive.
    page.go_back()
    expect(root).to_have_attribute("data-ready", "1")
    box = canvas.bounding_box()
    positions = _positions(page)
    negative = images["scene-0.jpg"]
    page.locator("#map-tool-lasso").click()
    _lasso_around(page, box, positions[str(negative.pk)], _radius_alone(positions, negative.pk))
    expect(root).to_have_attribute("data-selected", "1")
    assert page.evaluate("() => window.imagesearchMap.selected()") == [negative.pk]
    page.get_by_role("button", name="…as negatives").click()
    expect(root).to_have_attribute("data-negatives", "1")
    expect(root).to_have_attribute("data-selected", "0")
    page.locator("#map-tool-pan").click()
    _lasso_around(page, box, positions[str(target.pk)], _radius_alone(positions, target.pk), shift=True)
    expect(root).to_have_attribute("data-selected", "1")
    expect(page.locator("#map-selection")).to_contain_text("1 selected, 1 as negatives")
    screenshot(page, "map-2-lasso-selection")
    page.get_by_role("button", name="Find similar to these").click()
    expect(page).to_have_url(f"/g/{gallery.slug}/similar/?pos={target.pk}&neg={negative.pk}")

    # The results of several images: the query images shown and left out of the results.
    expect(page.locator(".multi-positive")).to_have_count(1)
    expect(page.locator(".multi-negative")).to_have_count(1)
    cards = page.locator("#results .card")
    expect(cards).to_have_count(5)
    names = cards.locator(".name").all_inner_texts()
    assert names[0] == "scene-3-copy.jpg" and "scene-0.jpg" not in names and "scene-3.jpg" not in names
    screenshot(page, "map-3-several-images-results")

    # Mark a result as a positive and run again; then remove the negative.
    copy = images["scene-3-copy.jpg"]
    cards.first.get_by_role("link", name="More like scene-3-copy.jpg").click()
    expect(page).to_have_url(f"/g/{gallery.slug}/similar/?pos={target.pk},{copy.pk}&neg={negative.pk}&k=12")
    expect(page.locator(".multi-positive")).to_have_count(2)
    expect(cards).to_have_count(4)
    page.get_by_role("link", name="Remove scene-0.jpg from the query").click()
    expect(page.locator(".multi-negative")).to_have_count(0)
    expect(cards).to_have_count(5)
    assert "scene-0.jpg" in cards.locator(".name").all_inner_texts()
    screenshot(page, "map-4-refined")
