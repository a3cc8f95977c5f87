"""The full-screen viewer: a photo of the grid opens over the page with the image's own address
(Back closes it, the address opens the image page for anyone), arrow keys and a swipe step through
the page, Esc closes and gives focus back to the photo, double-click / wheel / pinch zoom and a drag
pans, Download fetches the original, and a strip of nearest neighbours (from the API) jumps on."""

import re

from django.core.files.uploadedfile import SimpleUploadedFile
from playwright.sync_api import expect

from gallery import services
from gallery.models import Image
from gallery.views import pages
from tests import imagegen
from tests.browser.axe import assert_no_serious
from tests.browser.conftest import ARTIFACTS, BROWSER, log_in

pytestmark = BROWSER


def window_shot(page, name):
    """The window as the person sees it (the viewer covers it; a full-page shot would show the page below)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def grid_order(gallery):
    return list(Image.objects.filter(gallery=gallery).order_by("-created_at", "-id"))


def focus_in_viewer(page):
    return page.evaluate("() => !!document.activeElement.closest('dialog.viewer')")


def touch(cdp, kind, *points):
    cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [{"x": x, "y": y} for x, y in points]})


def test_the_viewer_on_a_desktop(page, embedded_gallery):
    gallery, _worker = embedded_gallery
    images = grid_order(gallery)
    first, second = images[0], images[1]
    log_in(page, "owner", "pw-owner-123")
    page.goto(gallery.get_absolute_url())
    page.evaluate("window.sameDocument = true")
    page.locator(f'#grid .card[data-image-id="{first.pk}"] a.thumb').click()

    expect(page.get_by_role("dialog", name=first.original_name)).to_be_visible()
    viewer = page.locator("dialog.viewer")
    expect(page).to_have_url(f"/i/{first.pk}/")  # the image's own address, pushed
    expect(viewer.locator(".viewer-pos")).to_have_text(f"1 of {len(images)}")
    picture = viewer.get_by_role("img", name=first.original_name)
    expect(picture).to_have_attribute("src", f"/i/{first.pk}/file")
    page.wait_for_function("() => document.querySelector('.viewer-img').naturalWidth > 0")
    # The grid behind is inert: only the viewer's picture has this name now.
    expect(page.get_by_role("img", name=first.original_name)).to_have_count(1)
    for name in (
        "Previous image",
        "Next image",
        "Zoom in",
        "Zoom out",
        "Close viewer",
        "Find similar",
        "Move to trash",
    ):
        expect(viewer.get_by_role("button", name=name)).to_have_count(1)
    expect(viewer.get_by_role("button", name="Previous image")).to_be_disabled()

    # The nearest neighbours, from /api/images/<pk>/similar, nearest first.
    strip = viewer.locator(".viewer-strip .viewer-sim")
    expect(strip).to_have_count(len(images) - 1)
    api = page.evaluate(
        "url => fetch(url, {headers: {Accept: 'application/json'}}).then(r => r.json())",
        f"/api/images/{first.pk}/similar?k=12",
    )
    assert [int(i) for i in strip.evaluate_all("bs => bs.map(b => b.dataset.imageId)")] == [
        r["id"] for r in api["results"]
    ]
    window_shot(page, "viewer-desktop")
    assert_no_serious(page, "the viewer (light, desktop)")

    # Arrow keys step through the grid's page; the address follows without piling up history.
    page.keyboard.press("ArrowRight")
    expect(page.get_by_role("dialog", name=second.original_name)).to_be_visible()
    expect(page).to_have_url(f"/i/{second.pk}/")
    expect(viewer.locator(".viewer-pos")).to_have_text(f"2 of {len(images)}")
    page.keyboard.press("ArrowLeft")
    expect(page.get_by_role("dialog", name=first.original_name)).to_be_visible()

    # Zoom: double-click, wheel, buttons, "0"; a drag pans while zoomed.
    stage = viewer.locator(".viewer-stage")
    dialog = page.locator("dialog.viewer")
    box = stage.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    stage.dblclick(position={"x": box["width"] / 2, "y": box["height"] / 2})
    expect(dialog).to_have_attribute("data-zoom", "2.50")
    before = picture.evaluate("img => img.style.transform")
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 80, cy + 40, steps=4)
    page.mouse.up()
    after = picture.evaluate("img => img.style.transform")
    assert before != after and "scale(2.5)" in after
    page.keyboard.press("0")
    expect(dialog).to_have_attribute("data-zoom", "1.00")
    page.mouse.move(cx, cy)
    page.mouse.wheel(0, -300)
    page.wait_for_function("() => parseFloat(document.querySelector('dialog.viewer').dataset.zoom) > 1.5")
    viewer.get_by_role("button", name="Zoom out").click()
    zoom = float(dialog.get_attribute("data-zoom"))
    assert 1 <= zoom < 1.5
    page.keyboard.press("0")

    # Download: the original file, byte for byte, under its own name.
    with page.expect_download() as download:
        viewer.get_by_role("link", name=f"Download the original of {first.original_name}").click()
    assert download.value.suggested_filename == first.original_name
    with first.file.open("rb") as fh:
        assert open(download.value.path(), "rb").read() == fh.read()

    # A neighbour opens in the viewer, at its place in the grid's page.
    neighbour_id = int(strip.first.get_attribute("data-image-id"))
    neighbour = Image.objects.get(pk=neighbour_id)
    strip.first.click()
    expect(page.get_by_role("dialog", name=neighbour.original_name)).to_be_visible()
    expect(page).to_have_url(f"/i/{neighbour_id}/")
    at = [i.pk for i in images].index(neighbour_id) + 1
    expect(viewer.locator(".viewer-pos")).to_have_text(f"{at} of {len(images)}")
    expect(viewer.locator(".viewer-strip .viewer-sim")).to_have_count(len(images) - 1)
    assert neighbour_id not in [int(i) for i in strip.evaluate_all("bs => bs.map(b => b.dataset.imageId)")]

    # Focus stays inside while it is open.
    for _ in range(len(images) + 12):
        page.keyboard.press("Tab")
        assert focus_in_viewer(page)
    page.keyboard.press("Shift+Tab")
    assert focus_in_viewer(page)

    # Esc closes: back at the gallery's address, focus on the photo it showed.
    page.keyboard.press("Escape")
    expect(page.locator("dialog.viewer")).to_be_hidden()
    expect(page).to_have_url(gallery.get_absolute_url())
    assert page.evaluate("() => document.activeElement.closest('.card').dataset.imageId") == str(neighbour_id)

    # Back closes it too, Forward opens it again.
    page.locator(f'#grid .card[data-image-id="{second.pk}"] a.thumb').click()
    expect(page).to_have_url(f"/i/{second.pk}/")
    page.go_back()
    expect(page.locator("dialog.viewer")).to_be_hidden()
    expect(page).to_have_url(gallery.get_absolute_url())
    page.go_forward()
    expect(page.get_by_role("dialog", name=second.original_name)).to_be_visible()
    assert page.evaluate("window.sameDocument") is True  # all of it without leaving the page

    # "Find similar" goes to the results page of the image shown.
    viewer.get_by_role("button", name="Find similar").click()
    expect(page).to_have_url(f"/i/{second.pk}/similar/?k=12")

    # The address works on its own: the image page, no script needed.
    page.goto(f"/i/{first.pk}/")
    expect(page.get_by_role("heading", name=first.original_name)).to_be_visible()
    expect(page.locator("dialog.viewer")).to_have_count(0)


def test_the_viewer_on_a_phone_swipes_and_pinches(new_page, embedded_gallery):
    gallery, _worker = embedded_gallery
    images = grid_order(gallery)
    page = new_page(width=390, height=844, is_mobile=True, has_touch=True, color_scheme="dark")
    log_in(page, "owner", "pw-owner-123")
    page.goto(gallery.get_absolute_url())
    page.locator(f'#grid .card[data-image-id="{images[0].pk}"] a.thumb').tap()
    expect(page.get_by_role("dialog", name=images[0].original_name)).to_be_visible()
    viewer = page.locator("dialog.viewer")
    expect(viewer.locator(".viewer-strip .viewer-sim")).to_have_count(len(images) - 1)
    page.wait_for_function("() => document.querySelector('.viewer-img').naturalWidth > 0")
    cdp = page.context.new_cdp_session(page)
    box = page.locator(".viewer-stage").bounding_box()
    y = box["y"] + box["height"] / 2
    left, right = box["x"] + box["width"] * 0.25, box["x"] + box["width"] * 0.75  # clear of the nav buttons

    def swipe(x0, x1):
        touch(cdp, "touchStart", (x0, y))
        for i in range(1, 6):
            touch(cdp, "touchMove", (x0 + (x1 - x0) * i / 5, y))
        touch(cdp, "touchEnd")

    swipe(right, left)  # finger to the left: the next image
    expect(page.get_by_role("dialog", name=images[1].original_name)).to_be_visible()
    expect(page).to_have_url(f"/i/{images[1].pk}/")
    swipe(left, right)
    expect(page.get_by_role("dialog", name=images[0].original_name)).to_be_visible()
    window_shot(page, "viewer-phone")
    assert_no_serious(page, "the viewer (dark, phone)")

    # Two fingers apart: zoom in; the picture is not swiped away meanwhile.
    cx = box["x"] + box["width"] / 2
    touch(cdp, "touchStart", (cx - 30, y), (cx + 30, y))
    for i in range(1, 6):
        touch(cdp, "touchMove", (cx - 30 - 20 * i, y), (cx + 30 + 20 * i, y))
    touch(cdp, "touchEnd")
    zoom = float(page.locator("dialog.viewer").get_attribute("data-zoom"))
    assert zoom > 2, zoom
    expect(page.get_by_role("dialog", name=images[0].original_name)).to_be_visible()
    window_shot(page, "viewer-phone-zoomed")
    page.get_by_role("button", name="Close viewer").tap()
    expect(page.locator("dialog.viewer")).to_be_hidden()
    expect(page).to_have_url(gallery.get_absolute_url())


def test_a_visitor_sees_download_and_similar_but_no_delete(new_page, embedded_gallery):
    gallery, _worker = embedded_gallery
    gallery.visibility = "public"
    gallery.save(update_fields=["visibility"])
    image = grid_order(gallery)[0]
    page = new_page()  # anonymous
    page.goto(gallery.get_absolute_url())
    page.locator(f'#grid .card[data-image-id="{image.pk}"] a.thumb').click()
    expect(page.get_by_role("dialog", name=image.original_name)).to_be_visible()
    viewer = page.locator("dialog.viewer")
    expect(viewer.get_by_role("link", name=re.compile("^Download the original"))).to_be_visible()
    expect(viewer.locator(".viewer-strip .viewer-sim").first).to_be_visible()
    expect(viewer.get_by_role("button", name="Move to trash")).to_have_count(0)
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Select").click()
    bar = page.get_by_role("region", name="Selection")
    expect(bar.get_by_role("button", name="Download")).to_be_visible()
    expect(bar.get_by_role("button", name="Find similar to these")).to_be_visible()
    expect(bar.get_by_role("button", name="Delete")).to_have_count(0)


def test_previous_and_next_go_on_past_the_grid_page(page, owner, monkeypatch):
    monkeypatch.setattr(pages, "PAGE_SIZE", 4)  # the live server runs in this process
    gallery = services.gallery_create(owner=owner, title="Pages")
    files = [SimpleUploadedFile(f"p{s}.jpg", imagegen.jpeg(90 + s), "image/jpeg") for s in range(6)]
    services.images_upload(gallery=gallery, uploader=owner, files=files)
    images = grid_order(gallery)
    log_in(page, "owner", "pw-owner-123")
    page.goto(gallery.get_absolute_url())
    expect(page.locator("#grid .card")).to_have_count(4)
    page.locator(f'#grid .card[data-image-id="{images[3].pk}"] a.thumb').click()
    viewer = page.locator("dialog.viewer")
    expect(viewer.locator(".viewer-pos")).to_have_text("4 of 4")
    expect(viewer.get_by_role("button", name="Next image")).to_be_enabled()  # page 2 is there
    page.keyboard.press("ArrowRight")
    expect(page.get_by_role("dialog", name=images[4].original_name)).to_be_visible()
    expect(page).to_have_url(f"/i/{images[4].pk}/")
    expect(viewer.locator(".viewer-pos")).to_have_text("5 of 6")
    page.keyboard.press("ArrowRight")
    expect(viewer.locator(".viewer-pos")).to_have_text("6 of 6")
    expect(viewer.get_by_role("button", name="Next image")).to_be_disabled()  # the last page's last image
    for _ in range(5):
        page.keyboard.press("ArrowLeft")
    expect(page.get_by_role("dialog", name=images[0].original_name)).to_be_visible()
    expect(viewer.get_by_role("button", name="Previous image")).to_be_disabled()
    page.keyboard.press("Escape")
    expect(page).to_have_url(gallery.get_absolute_url())
    expect(page.locator("#grid .card")).to_have_count(4)  # the grid behind stayed on its page

    # From page 2, Previous goes back into page 1.
    page.goto(gallery.get_absolute_url() + "?page=2")
    page.locator(f'#grid .card[data-image-id="{images[4].pk}"] a.thumb').click()
    expect(viewer.locator(".viewer-pos")).to_have_text("1 of 2")
    page.keyboard.press("ArrowLeft")
    expect(page.get_by_role("dialog", name=images[3].original_name)).to_be_visible()
    expect(viewer.locator(".viewer-pos")).to_have_text("4 of 6")
    page.keyboard.press("Escape")
    expect(page).to_have_url(gallery.get_absolute_url() + "?page=2")
