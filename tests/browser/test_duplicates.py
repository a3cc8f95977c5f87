"""Near-duplicates in the browser: the review page after a real worker grouped a build, resolving a
group into the trash and restoring from it, and the look-alike warning with keep / skip at upload."""

import io

from django.core.files.uploadedfile import SimpleUploadedFile
from playwright.sync_api import expect

from gallery import services
from gallery.models import DuplicateDecision, GroupingRun, Image, TrashedImage
from tests import imagegen, live
from tests.browser.conftest import BROWSER, drop_files, log_in, screenshot

pytestmark = BROWSER


def test_review_a_group_keep_the_copy_trash_the_original_then_restore_it(page, owner, embedded_gallery):
    gallery, worker = embedded_gallery
    live.wait_for(
        lambda: GroupingRun.objects.filter(gallery=gallery, build__item_count=7, group_count=1).exists(),
        timeout=60,
        message="the build's near-duplicate groups",
        worker=worker,
    )
    log_in(page, "owner", "pw-owner-123")
    page.goto(gallery.get_absolute_url())
    expect(page.locator("#duplicates-link .count")).to_have_text("1")
    page.locator("#duplicates-link").click()
    expect(page.locator("#dup-summary")).to_contain_text("1 group to review")
    group = page.locator(".dup-group")
    expect(group).to_have_count(1)
    expect(group.locator(".dup-member")).to_have_count(2)
    keeper = group.locator(".dup-member.keeper")
    expect(keeper.locator(".name")).to_have_text("scene-3.jpg")  # the larger picture is suggested
    expect(keeper).to_contain_text("320 × 240 px")
    copy = group.locator(".dup-member", has_text="scene-3-copy.jpg")
    expect(copy).to_contain_text("312 × 234 px")
    screenshot(page, "duplicates-0-review")

    copy.get_by_label("Keep this one").check()  # the owner prefers the copy
    group.get_by_role("button", name="Keep selected, trash the others").click()
    expect(page.locator(".messages")).to_contain_text("1 group resolved: 1 image moved to the trash.")
    expect(page.locator("#dup-summary")).to_contain_text("No near-duplicates to review")
    assert not Image.objects.filter(gallery=gallery, original_name="scene-3.jpg").exists()
    assert Image.objects.filter(gallery=gallery, original_name="scene-3-copy.jpg").exists()

    page.get_by_role("link", name="Trash").first.click()
    card = page.locator("#trash-grid .card")
    expect(card).to_have_count(1)
    expect(card).to_contain_text("scene-3.jpg")
    expect(card).to_contain_text("Duplicate of “scene-3-copy.jpg”")
    # The trashed picture's thumbnail loads (waited for: a busy machine serves it a little later).
    page.wait_for_function(
        "() => { const i = document.querySelector('#trash-grid .card img'); return i && i.complete && i.naturalWidth > 0; }"
    )
    screenshot(page, "duplicates-1-trash")
    card.get_by_role("checkbox").check()
    page.get_by_role("button", name="Restore selected").click()
    expect(page.locator(".messages")).to_contain_text("1 image restored.")
    expect(page.locator("#trash-summary")).to_contain_text("The trash is empty")
    restored = Image.objects.get(gallery=gallery, original_name="scene-3.jpg")
    assert restored.embedding_state == "ready"  # its embedding came back with it
    assert not TrashedImage.objects.exists()


def _resized(seed, size):
    img = imagegen.scene(seed).resize(size)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return out.getvalue()


def test_an_upload_that_looks_like_an_image_offers_keep_or_skip(page, owner):
    gallery = services.gallery_create(owner=owner, title="Look-alikes")
    services.images_upload(
        gallery=gallery, uploader=owner, files=[SimpleUploadedFile("lake.jpg", imagegen.jpeg(2), "image/jpeg")]
    )
    log_in(page, "owner", "pw-owner-123")
    page.goto(gallery.get_absolute_url())
    files = [("lake-small.jpg", "image/jpeg", _resized(2, (240, 180))), ("forest.jpg", "image/jpeg", imagegen.jpeg(4))]
    drop_files(page, "#upload-form", files)
    items = page.locator("#upload-list .upload-item")
    expect(items).to_have_count(2)

    def item(name):
        return items.filter(has=page.locator(".file-name", has_text=name))

    expect(item("forest.jpg")).to_have_attribute("data-status", "added")
    expect(item("forest.jpg").locator(".look-alike")).to_have_count(0)
    small = item("lake-small.jpg")
    expect(small.locator(".result")).to_contain_text("Looks like “lake.jpg” (distance")
    expect(small.locator(".look-alike-thumb img")).to_have_attribute("alt", "lake.jpg")
    screenshot(page, "duplicates-2-upload-warning")
    small.get_by_role("button", name="Skip this file").click()
    expect(small.locator(".look-alike")).to_contain_text("“lake-small.jpg” moved to the trash.")
    expect(page.locator("#grid .card", has_text="lake-small.jpg")).to_have_count(0)
    assert not Image.objects.filter(gallery=gallery, original_name="lake-small.jpg").exists()
    assert TrashedImage.objects.get(gallery=gallery).original_name == "lake-small.jpg"

    # A second drop: the skipped file is gone, so this one looks like lake.jpg; keep both.
    drop_files(page, "#upload-form", [("lake-smaller.jpg", "image/jpeg", _resized(2, (200, 150)))])
    smaller = item("lake-smaller.jpg")
    expect(smaller.locator(".result")).to_contain_text("Looks like “lake.jpg”")
    smaller.get_by_role("button", name="Keep both").click()
    expect(smaller.locator(".look-alike")).to_contain_text("Kept “lake-smaller.jpg” beside “lake.jpg”.")
    (decision,) = DuplicateDecision.objects.filter(gallery=gallery, kind="keep")
    assert {decision.low.original_name, decision.high.original_name} == {"lake.jpg", "lake-smaller.jpg"}
    screenshot(page, "duplicates-3-upload-resolved")
