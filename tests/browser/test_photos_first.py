"""The gallery page puts its photos first: a one-line toolbar (with a "More" menu on phones) above
the grid, the upload and search forms open from it, and files dropped anywhere on the window upload
with their own rows, which fold into the summary when done while problems stay in view."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from playwright.sync_api import expect

from gallery import services
from gallery.models import Image
from tests import imagegen
from tests.browser.conftest import BROWSER, drop_files, log_in, screenshot

pytestmark = BROWSER

NOT_AN_IMAGE = bytes(range(256)) * 8


@pytest.fixture
def gallery(owner):
    g = services.gallery_create(owner=owner, title="Field cameras", description="Trail camera shots.")
    files = [SimpleUploadedFile(f"shot-{s}.jpg", imagegen.jpeg(s), "image/jpeg") for s in range(8)]
    services.images_upload(gallery=g, uploader=owner, files=files)
    return g


def first_photo_top(page):
    return page.locator("#grid .card .thumb img").first.evaluate("img => img.getBoundingClientRect().top")


@pytest.mark.parametrize(
    ("width", "height", "limit", "name"),
    [(1280, 800, 200, "desktop"), (390, 844, 300, "phone")],
    ids=["desktop", "phone"],
)
def test_the_first_photo_is_near_the_top(new_page, gallery, width, height, limit, name):
    page = new_page(width=width, height=height, **({"is_mobile": True, "has_touch": True} if name == "phone" else {}))
    log_in(page, "owner", "pw-owner-123")
    page.goto(gallery.get_absolute_url())
    expect(page.locator("#grid .card")).to_have_count(8)
    top = first_photo_top(page)
    assert top <= limit, f"the first photo starts {top:.0f} px down at {width}x{height}"
    # The forms are one click away, not in the way.
    expect(page.locator("#upload-form")).to_be_hidden()
    expect(page.locator("#search-form")).to_be_hidden()
    toggle = page.get_by_role("button", name="Upload")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    if name == "phone":
        # Secondary actions live in "More".
        expect(page.get_by_role("link", name="Compare files")).to_be_hidden()
        page.get_by_role("button", name="More").click()
        expect(page.get_by_role("link", name="Compare files")).to_be_visible()
        expect(page.get_by_role("link", name="Trash")).to_be_visible()
        page.keyboard.press("Escape")
        expect(page.get_by_role("link", name="Compare files")).to_be_hidden()
    else:
        expect(page.locator("#duplicates-link")).to_be_visible()
        expect(page.locator("#trash-link")).to_be_visible()
    screenshot(page, f"photos-first-{name}")
    toggle.click()
    expect(page.locator("#upload-form")).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    page.get_by_role("button", name="Search with a picture").click()
    expect(page.locator("#search-form")).to_be_visible()
    screenshot(page, f"photos-first-{name}-panels")


def test_files_dropped_anywhere_upload_and_finished_rows_fold_into_the_summary(page, owner, gallery):
    log_in(page, "owner", "pw-owner-123")
    page.goto(gallery.get_absolute_url())
    page.evaluate("window.sameDocument = true")
    overlay = page.locator("#drop-overlay")
    expect(overlay).to_be_hidden()
    files = [(f"new-{s}.jpg", "image/jpeg", imagegen.jpeg(50 + s)) for s in range(3)]
    files += [("shot-0-again.jpg", "image/jpeg", imagegen.jpeg(0)), ("notes.jpg", "image/jpeg", NOT_AN_IMAGE)]
    # A drag over the grid shows the full-window drop target...
    drop_files(page, "#grid .card >> nth=2", files, events=("dragenter",))
    expect(overlay).to_be_visible()
    expect(overlay).to_contain_text("Drop to upload to “Field cameras”")
    screenshot(page, "drop-anywhere-0-overlay")
    # ... and the drop, on a photo far from any form, uploads through the usual per-file rows.
    drop_files(page, "#grid .card >> nth=2", files, events=("dragover", "drop"))
    expect(overlay).to_be_hidden()
    expect(page.locator("#upload-form")).to_be_visible()  # the panel opens to show the progress
    items = page.locator("#upload-list .upload-item")
    expect(items).to_have_count(5)
    expect(page.locator("#upload-summary")).to_contain_text("5 files sent: 3 added, 1 duplicate, 1 rejected")

    def item(name):
        return items.filter(has=page.locator(".file-name", has_text=name))

    # Done: the added rows fold away; the duplicate and the rejected file keep their reasons in view.
    for s in range(3):
        expect(item(f"new-{s}.jpg")).to_be_hidden()
        expect(item(f"new-{s}.jpg")).to_have_attribute("data-status", "added")
    expect(item("notes.jpg")).to_be_visible()
    expect(item("notes.jpg").locator(".result")).to_contain_text("not an image")
    expect(item("shot-0-again.jpg")).to_be_visible()
    expect(item("shot-0-again.jpg").locator(".result")).to_contain_text("Already in this gallery")
    fold = page.locator("#upload-collapse")
    expect(fold).to_have_text("Show the 3 uploaded files")
    screenshot(page, "drop-anywhere-1-folded")
    fold.click()
    expect(item("new-1.jpg")).to_be_visible()
    expect(fold).to_have_text("Hide the 3 uploaded files")
    assert page.evaluate("window.sameDocument") is True
    assert Image.objects.filter(gallery=gallery, original_name__startswith="new-").count() == 3
