"""Selecting photos on the grid: Select mode, the hover checkbox, shift-click ranges, "Select all on
page", Esc, long-press on a phone; and the selection's actions: Delete (asks, one Undo for all),
Download (a ZIP of the originals, refused with a reason over the cap) and Find similar to these."""

import io
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from playwright.sync_api import expect

from gallery import services
from gallery.models import Image, TrashedImage
from tests import imagegen, live
from tests.browser.axe import assert_no_serious
from tests.browser.conftest import ARTIFACTS, BROWSER, log_in, screenshot

pytestmark = BROWSER


@pytest.fixture
def gallery(owner):
    live.require_redis()
    live.flush_broker()
    g = services.gallery_create(owner=owner, title="Picks")
    files = [SimpleUploadedFile(f"p{s}.jpg", imagegen.jpeg(70 + s), "image/jpeg") for s in range(8)]
    services.images_upload(gallery=g, uploader=owner, files=files)
    return g


def ordered(gallery):
    return list(Image.objects.filter(gallery=gallery).order_by("-created_at", "-id"))


def window_shot(page, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def thumb(page, image):
    return page.locator(f'#grid .card[data-image-id="{image.pk}"] a.thumb')


def test_select_ranges_clear_and_bulk_delete_with_one_undo(page, gallery):
    images = ordered(gallery)
    log_in(page, "owner", "pw-owner-123")
    page.goto(gallery.get_absolute_url())
    bar = page.get_by_role("region", name="Selection")
    count = page.locator("#select-count")
    expect(bar).to_be_hidden()

    # The checkbox shows on hover; ticking it starts selecting.
    box = page.get_by_role("checkbox", name=f"Select {images[1].original_name}")
    page.locator(f'#grid .card[data-image-id="{images[1].pk}"]').hover()
    expect(box).to_be_visible()
    box.check()
    expect(bar).to_be_visible()
    expect(count).to_have_text("1 selected")
    # A click on a photo now selects it instead of opening it; shift-click takes the range.
    thumb(page, images[2]).click()
    expect(count).to_have_text("2 selected")
    expect(page.locator("dialog.viewer[open]")).to_have_count(0)
    thumb(page, images[5]).click(modifiers=["Shift"])
    expect(count).to_have_text("5 selected")  # 1, 2, and 3..5
    selected = page.locator("#grid .card.selected").evaluate_all("cs => cs.map(c => +c.dataset.imageId)")
    assert selected == [i.pk for i in images[1:6]]
    window_shot(page, "select-0-range")
    assert_no_serious(page, "the grid while selecting, with its selection bar")
    page.keyboard.press("Escape")
    expect(bar).to_be_hidden()
    expect(page.locator("#grid .card.selected")).to_have_count(0)

    page.get_by_role("button", name="Select").click()
    expect(page.get_by_role("button", name="Done")).to_have_attribute("aria-pressed", "true")
    bar.get_by_role("button", name="Select all on page").click()
    expect(count).to_have_text("8 selected")
    bar.get_by_role("button", name="Clear").click()
    expect(bar).to_be_hidden()

    # Delete three at once: one question, one Undo.
    page.get_by_role("button", name="Select").click()
    for image in images[:3]:
        thumb(page, image).click()
    expect(count).to_have_text("3 selected")
    bar.get_by_role("button", name="Delete").click()
    ask = page.get_by_role("dialog", name="Move these 3 images to the trash?")
    expect(ask).to_be_visible()
    window_shot(page, "select-1-bulk-confirm")
    ask.get_by_role("button", name="Move to trash").click()
    toast = page.locator("#toast")
    expect(toast).to_contain_text("3 images moved to the trash —")
    expect(page.locator("#grid .card")).to_have_count(5)
    assert TrashedImage.objects.filter(gallery=gallery).count() == 3
    window_shot(page, "select-2-bulk-undo-offered")
    assert_no_serious(page, "the grid with the Undo notice")
    toast.get_by_role("button", name="Undo").click()
    expect(toast).to_contain_text("3 images restored.")
    expect(page.locator("#grid .card")).to_have_count(8)
    assert not TrashedImage.objects.exists()
    names = page.locator("#grid .card .name").all_inner_texts()
    assert names == [i.original_name for i in images]
    screenshot(page, "select-3-restored")


def test_download_a_zip_of_the_selection_and_the_cap(page, gallery, settings):
    settings.IMAGESEARCH_ZIP_MAX_IMAGES = 3  # the live server runs in this process
    images = ordered(gallery)
    log_in(page, "owner", "pw-owner-123")
    page.goto(gallery.get_absolute_url())
    page.get_by_role("button", name="Select").click()
    for image in images[:2]:
        thumb(page, image).click()
    bar = page.get_by_role("region", name="Selection")
    with page.expect_download() as download:
        bar.get_by_role("button", name="Download").click()
    assert download.value.suggested_filename == f"{gallery.slug}-2-images.zip"
    archive = zipfile.ZipFile(io.BytesIO(open(download.value.path(), "rb").read()))
    assert sorted(archive.namelist()) == sorted(i.original_name for i in images[:2])
    for image in images[:2]:
        with image.file.open("rb") as fh:
            assert archive.read(image.original_name) == fh.read()

    for image in images[2:4]:
        thumb(page, image).click()
    expect(page.locator("#select-count")).to_have_text("4 selected")
    bar.get_by_role("button", name="Download").click()
    expect(page.locator("#toast")).to_contain_text("4 images selected; a download holds at most 3.")
    window_shot(page, "select-4-zip-over-cap")


def test_find_similar_to_the_selection(page, gallery):
    images = ordered(gallery)
    log_in(page, "owner", "pw-owner-123")
    page.goto(gallery.get_absolute_url())
    page.get_by_role("button", name="Select").click()
    thumb(page, images[4]).click()
    thumb(page, images[1]).click()
    page.get_by_role("region", name="Selection").get_by_role("button", name="Find similar to these").click()
    page.wait_for_url(lambda url: "/similar/" in url)
    assert page.url.endswith(f"/g/{gallery.slug}/similar/?pos={images[4].pk},{images[1].pk}")


def test_long_press_selects_on_a_phone(new_page, gallery):
    images = ordered(gallery)
    page = new_page(width=390, height=844, is_mobile=True, has_touch=True)
    log_in(page, "owner", "pw-owner-123")
    page.goto(gallery.get_absolute_url())
    target = page.locator(f'#grid .card[data-image-id="{images[0].pk}"]').bounding_box()
    x, y = target["x"] + target["width"] / 2, target["y"] + 60
    cdp = page.context.new_cdp_session(page)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
    page.wait_for_timeout(800)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    expect(page.locator("#select-count")).to_have_text("1 selected")
    expect(page.locator("dialog.viewer[open]")).to_have_count(0)  # the press selected, it did not open
    thumb(page, images[3]).tap()
    expect(page.locator("#select-count")).to_have_text("2 selected")
    expect(page.get_by_role("checkbox", name=f"Select {images[3].original_name}")).to_be_checked()
    window_shot(page, "select-5-phone")
