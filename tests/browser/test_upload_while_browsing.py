"""Uploads keep running while the person pages through the gallery: the grid's
pages are swapped in place, so the page (and its uploads) is never unloaded."""

from django.core.files.uploadedfile import SimpleUploadedFile
from playwright.sync_api import expect

from gallery import services
from gallery.models import Image
from gallery.views import pages
from tests import imagegen
from tests.browser.conftest import BROWSER, drop_files, log_in, screenshot

pytestmark = BROWSER


def test_paging_the_grid_during_an_upload_does_not_interrupt_it(page, owner, monkeypatch):
    monkeypatch.setattr(pages, "PAGE_SIZE", 4)  # the live server runs in this process
    gallery = services.gallery_create(owner=owner, title="Big drop")
    existing = [SimpleUploadedFile(f"old-{s}.jpg", imagegen.jpeg(100 + s), "image/jpeg") for s in range(6)]
    services.images_upload(gallery=gallery, uploader=owner, files=existing)
    log_in(page, "owner", "pw-owner-123")
    page.goto(gallery.get_absolute_url())
    page.evaluate("window.sameDocument = true")
    # A slow uplink (about 40 KB/s), so the uploads are still running while we browse.
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 20, "downloadThroughput": -1, "uploadThroughput": 40 * 1024},
    )

    files = [(f"new-{s}.jpg", "image/jpeg", imagegen.jpeg(200 + s, size=(640, 480))) for s in range(6)]
    drop_files(page, "#upload-form", files)
    expect(page.locator("#upload-summary")).to_contain_text("Uploading")
    page.get_by_role("link", name="Older →").click()
    expect(page).to_have_url(f"/g/{gallery.slug}/?page=2")
    expect(page.locator(".pager-pos")).to_contain_text("Page 2 of")
    assert "Uploading" in page.locator("#upload-summary").inner_text()  # still sending while on page 2
    screenshot(page, "browse-0-paging-during-upload")

    expect(page.locator("#upload-summary")).to_contain_text("6 files sent: 6 added", timeout=60_000)
    assert page.evaluate("window.sameDocument") is True
    assert Image.objects.filter(gallery=gallery, original_name__startswith="new-").count() == 6
    page.go_back()
    expect(page.locator(".pager-pos")).to_contain_text("Page 1 of")
    screenshot(page, "browse-1-uploads-done")
