"""Files dropped on the gallery page upload one by one with their own progress and
result, and the page then follows the worker live until every image is ready."""

from django.core.files.uploadedfile import SimpleUploadedFile
from playwright.sync_api import expect

from gallery import services
from gallery.models import EmbeddingState, Image
from tests import imagegen, live
from tests.browser.conftest import BROWSER, drop_files, log_in, screenshot

pytestmark = BROWSER

NOT_AN_IMAGE = bytes(range(256)) * 8


def test_dropped_files_get_per_file_results_and_turn_ready_without_a_reload(page, owner, tmp_path):
    live.require_redis()
    live.flush_broker()
    gallery = services.gallery_create(owner=owner, title="Drops")
    services.images_upload(
        gallery=gallery, uploader=owner, files=[SimpleUploadedFile("old.jpg", imagegen.jpeg(9), "image/jpeg")]
    )
    log_in(page, "owner", "pw-owner-123")
    page.goto(gallery.get_absolute_url())
    page.evaluate("window.sameDocument = true")  # survives only if the page never reloads

    files = [(f"scene-{s}.jpg", "image/jpeg", imagegen.jpeg(s)) for s in range(5)]
    files += [("old-again.jpg", "image/jpeg", imagegen.jpeg(9)), ("notes.jpg", "image/jpeg", NOT_AN_IMAGE)]
    with live.Worker(tmp_path) as worker:
        drop_files(page, "#upload-form", files)
        items = page.locator("#upload-list .upload-item")
        expect(items).to_have_count(7)
        expect(page.locator("#upload-summary")).to_contain_text("7 files sent: 5 added, 1 duplicate, 1 rejected")

        def item(name):
            return items.filter(has=page.locator(".file-name", has_text=name))

        for s in range(5):
            expect(item(f"scene-{s}.jpg")).to_have_attribute("data-status", "added")
            expect(item(f"scene-{s}.jpg").locator(".bar")).to_have_attribute("aria-valuenow", "100")
        expect(item("old-again.jpg")).to_have_attribute("data-status", "duplicate")
        expect(item("old-again.jpg").locator(".result")).to_contain_text(
            "Duplicate: Already in this gallery as “old.jpg”"
        )
        expect(item("notes.jpg")).to_have_attribute("data-status", "rejected")
        expect(item("notes.jpg").locator(".result")).to_contain_text("not an image")
        screenshot(page, "upload-0-dropped")

        # The status card follows the worker; the grid's badges follow it too.
        expect(page.locator("[data-count=ready]")).to_have_text("6", timeout=180_000)
        expect(page.locator("#status-eta")).to_have_text("All images processed")
        expect(page.locator("#status-bar")).to_have_attribute("aria-valuenow", "6")
        expect(page.locator("#grid .card")).to_have_count(6)
        expect(page.locator("#grid .badge.state-ready")).to_have_count(6, timeout=30_000)
        assert worker.proc.poll() is None
    assert page.evaluate("window.sameDocument") is True
    assert Image.objects.filter(gallery=gallery, embedding_state=EmbeddingState.READY).count() == 6
    assert not Image.objects.filter(original_name__in=["notes.jpg", "old-again.jpg"]).exists()
    screenshot(page, "upload-1-ready")
