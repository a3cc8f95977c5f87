"""Deleting asks first (a dialog, not window.confirm), moves the image to the trash, and offers Undo
for a few seconds; Undo restores it and the photo comes back. Without scripts the image page's
delete goes through a page that asks, never one click."""

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
    live.flush_broker()  # restored images are queued for embedding again: nothing stale in the queue
    g = services.gallery_create(owner=owner, title="Keepers")
    files = [SimpleUploadedFile(f"pic-{s}.jpg", imagegen.jpeg(60 + s), "image/jpeg") for s in range(5)]
    services.images_upload(gallery=g, uploader=owner, files=files)
    return g


def window_shot(page, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def card(page, name):
    return page.locator("#grid .card", has=page.locator(".name", has_text=name))


def test_delete_in_the_viewer_asks_then_undo_brings_the_photo_back(page, gallery):
    never_confirm = []
    page.on("dialog", lambda d: (never_confirm.append(d.message), d.dismiss()))  # window.confirm/alert
    log_in(page, "owner", "pw-owner-123")
    page.goto(gallery.get_absolute_url())
    expect(page.locator("#grid .card")).to_have_count(5)
    card(page, "pic-2.jpg").locator("a.thumb").click()
    viewer = page.locator("dialog.viewer")
    expect(page.get_by_role("dialog", name="pic-2.jpg")).to_be_visible()

    # Cancel: nothing happens, focus goes back to the button.
    viewer.get_by_role("button", name="Move to trash").click()
    ask = page.get_by_role("dialog", name="Move “pic-2.jpg” to the trash?")
    expect(ask).to_be_visible()
    ask.get_by_role("button", name="Cancel").click()
    expect(ask).to_have_count(0)
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "Move to trash"
    assert Image.objects.filter(gallery=gallery, original_name="pic-2.jpg").exists()

    viewer.get_by_role("button", name="Move to trash").click()
    expect(ask).to_be_visible()
    window_shot(page, "delete-0-confirm")
    assert_no_serious(page, "the confirm dialog over the viewer")
    ask.get_by_role("button", name="Move to trash").click()
    toast = page.locator("#toast")
    expect(toast).to_contain_text("“pic-2.jpg” moved to the trash —")
    expect(toast.get_by_role("button", name="Undo")).to_be_visible()
    # The viewer goes on with the next photo; the grid behind has lost the trashed one.
    expect(page.get_by_role("dialog", name="pic-1.jpg")).to_be_visible()
    expect(card(page, "pic-2.jpg")).to_have_count(0)
    assert TrashedImage.objects.get(gallery=gallery).original_name == "pic-2.jpg"
    assert not Image.objects.filter(gallery=gallery, original_name="pic-2.jpg").exists()
    window_shot(page, "delete-1-undo-offered")
    assert_no_serious(page, "the viewer with its Undo notice")

    toast.get_by_role("button", name="Undo").click()
    expect(toast).to_contain_text("1 image restored.")
    restored = Image.objects.get(gallery=gallery, original_name="pic-2.jpg")
    assert not TrashedImage.objects.exists()
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()
    expect(page.locator(f'#grid .card[data-image-id="{restored.pk}"]')).to_have_count(1)
    expect(page.locator("#grid .card")).to_have_count(5)
    # Back in its place: newest first, pic-2 between pic-3 and pic-1.
    names = page.locator("#grid .card .name").all_inner_texts()
    assert names == ["pic-4.jpg", "pic-3.jpg", "pic-2.jpg", "pic-1.jpg", "pic-0.jpg"]
    screenshot(page, "delete-2-restored")
    assert never_confirm == []


def test_the_notice_goes_away_by_itself(page, gallery):
    log_in(page, "owner", "pw-owner-123")
    page.goto(gallery.get_absolute_url())
    page.clock.install()
    card(page, "pic-0.jpg").locator("a.thumb").click()
    page.locator("dialog.viewer").get_by_role("button", name="Move to trash").click()
    page.get_by_role("dialog", name="Move “pic-0.jpg” to the trash?").get_by_role(
        "button", name="Move to trash"
    ).click()
    toast = page.locator("#toast")
    expect(toast).to_be_visible()
    page.clock.run_for(9_000)
    expect(toast).to_be_visible()
    page.clock.run_for(2_000)
    expect(toast).to_be_hidden()
    assert TrashedImage.objects.filter(gallery=gallery).count() == 1  # it stays in the trash


def test_the_image_page_asks_and_undo_opens_the_restored_image(page, gallery):
    image = Image.objects.get(gallery=gallery, original_name="pic-3.jpg")
    log_in(page, "owner", "pw-owner-123")
    page.goto(image.get_absolute_url())
    page.get_by_role("link", name="Move to trash").click()
    ask = page.get_by_role("dialog", name="Move “pic-3.jpg” to the trash?")
    expect(ask).to_be_visible()
    ask.get_by_role("button", name="Move to trash").click()
    expect(page.locator("#trashed-note")).to_contain_text("“pic-3.jpg” is in the trash.")
    expect(page.locator("#toast")).to_contain_text("moved to the trash")
    screenshot(page, "delete-3-image-page")
    page.locator("#toast").get_by_role("button", name="Undo").click()
    page.wait_for_url(lambda url: f"/i/{image.pk}/" not in url)
    restored = Image.objects.get(gallery=gallery, original_name="pic-3.jpg")
    expect(page).to_have_url(f"/i/{restored.pk}/")
    expect(page.get_by_role("heading", name="pic-3.jpg")).to_be_visible()


def test_without_scripts_delete_goes_through_a_page_that_asks(new_page, gallery):
    image = Image.objects.get(gallery=gallery, original_name="pic-1.jpg")
    page = new_page(java_script_enabled=False)
    log_in(page, "owner", "pw-owner-123")
    page.goto(image.get_absolute_url())
    page.get_by_role("link", name="Move to trash").click()
    expect(page).to_have_url(f"/i/{image.pk}/delete/")
    expect(page.get_by_role("heading", name="Move “pic-1.jpg” to the trash?")).to_be_visible()
    assert Image.objects.filter(pk=image.pk).exists()  # the click only asked
    screenshot(page, "delete-4-no-script-confirm")
    page.get_by_role("button", name="Move to trash").click()
    expect(page).to_have_url(gallery.get_absolute_url())
    expect(page.locator(".messages")).to_contain_text("“pic-1.jpg” moved to the trash")
    assert not Image.objects.filter(pk=image.pk).exists()
    # Without scripts the panels are simply shown, and the grid's photos are plain links.
    expect(page.locator("#upload-form")).to_be_visible()
    expect(page.locator("#grid .card .pick").first).to_be_hidden()
