"""Staff's health panel on the gallery page, in the browser: staff sees coverage, the index and
the latest failure, clicks Repair, reads what was queued, and the real worker redoes the failed
image; the gallery's own owner sees none of it (nor the repair URL)."""

import shutil

from django.utils import timezone
from playwright.sync_api import expect

from gallery.models import EmbeddingState, Image
from tests import live
from tests.browser.axe import assert_no_serious
from tests.browser.conftest import ARTIFACTS, BROWSER, log_in, screenshot

pytestmark = BROWSER


def test_staff_repairs_from_the_panel_and_the_owner_never_sees_it(new_page, owner, staff, embedded_gallery):
    gallery, worker = embedded_gallery
    broken = Image.objects.get(gallery=gallery, original_name="scene-2.jpg")
    # As a worker records a failure: the state, the reason, and when.
    Image.objects.filter(pk=broken.pk).update(
        embedding_state=EmbeddingState.FAILED,
        embedding_error="OSError: image file is truncated (12 bytes not processed)",
        embedded_at=timezone.now(),
    )

    page = new_page()
    log_in(page, "staff", "pw-staff-123")
    page.goto(gallery.get_absolute_url())
    panel = page.locator("#health")
    expect(panel).to_be_visible()
    expect(panel.get_by_role("heading", name="Gallery health")).to_be_visible()
    expect(page.locator("#health-coverage")).to_contain_text("6 ready")
    expect(page.locator("#health-coverage")).to_contain_text("1 failed, of 7")
    expect(page.locator("#health-index")).to_contain_text("7 items")
    expect(page.locator("#health-failures")).to_contain_text("scene-2.jpg")
    expect(page.locator("#health-failures")).to_contain_text("image file is truncated")
    assert_no_serious(page, "gallery page with the health panel")
    panel.scroll_into_view_if_needed()
    panel.screenshot(path=str(ARTIFACTS / "health-panel-only.png"))
    path = screenshot(page, "health-panel")
    shutil.copyfile(path, ARTIFACTS.parent / "health-panel.png")

    page.get_by_role("button", name="Repair").click()
    page.wait_for_url(lambda url: url.endswith("#health"))
    message = page.locator(".messages .msg").first
    expect(message).to_contain_text("Repair queued: 1 failed image retried")
    expect(message).to_contain_text("index rebuild requested")
    screenshot(page, "health-panel-repaired")

    # What was queued really runs: the worker embeds the retried image again.
    live.wait_for(
        lambda: Image.objects.filter(pk=broken.pk, embedding_state=EmbeddingState.READY).exists(),
        timeout=120,
        message="the retried image embedded again",
        worker=worker,
    )
    page.reload()
    expect(page.locator("#health-coverage")).to_contain_text("7 ready")
    expect(page.locator("#health-failures")).to_have_count(0)

    # The owner of the gallery sees the page without the panel, and cannot repair.
    mine = new_page()
    log_in(mine, "owner", "pw-owner-123")
    mine.goto(gallery.get_absolute_url())
    expect(mine.locator("#status")).to_be_visible()
    expect(mine.locator("#health")).to_have_count(0)
    expect(mine.get_by_role("button", name="Repair")).to_have_count(0)
    html = mine.content()
    assert "Gallery health" not in html and "/repair/" not in html
    token = mine.locator("input[name=csrfmiddlewaretoken]").first.get_attribute("value")
    response = mine.request.post(
        f"/g/{gallery.slug}/repair/", headers={"X-CSRFToken": token, "Referer": mine.url}, max_redirects=0
    )
    assert response.status == 404
    screenshot(mine, "health-panel-owner-view")
