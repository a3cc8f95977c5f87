"""Error pages wear the site's style; an oversized upload gets a 413 page, and JSON for scripts."""

from django.urls import reverse
from playwright.sync_api import expect

from gallery import services
from tests.browser.conftest import BROWSER, log_in, screenshot

pytestmark = BROWSER


def test_a_missing_page_is_a_styled_404(page, owner):
    log_in(page, "owner", "pw-owner-123")
    response = page.goto("/g/no-such-gallery/")
    assert response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    expect(page.locator(".brand")).to_be_visible()  # the site's header: base layout and stylesheet
    assert page.locator(".error-code").evaluate("e => getComputedStyle(e).fontSize") == "76px"
    page.get_by_role("link", name="Go to my galleries").click()
    expect(page).to_have_url("/")
    screenshot(page, "errors-0-after-404")


def test_an_upload_over_the_request_limit_is_a_413_page_or_json(new_page, owner, settings):
    settings.IMAGESEARCH_MAX_REQUEST_BYTES = 64 * 1024
    gallery = services.gallery_create(owner=owner, title="Limits")
    # Without scripts the form posts the files itself and the server answers with its page.
    plain = new_page(java_script_enabled=False)
    log_in(plain, "owner", "pw-owner-123")
    plain.goto(gallery.get_absolute_url())
    plain.set_input_files("#upload-input", [{"name": "big.jpg", "mimeType": "image/jpeg", "buffer": b"\xff" * 200_000}])
    with plain.expect_navigation() as nav:
        plain.get_by_role("button", name="Upload").click()
    assert nav.value.status == 413
    expect(plain.get_by_role("heading", level=1)).to_have_text("Upload too large")
    expect(plain.locator(".lead")).to_contain_text("nothing was saved")
    screenshot(plain, "errors-1-413")

    # The upload script asks for JSON and gets the reason to show next to the file.
    page = new_page()
    log_in(page, "owner", "pw-owner-123")
    page.goto(gallery.get_absolute_url())
    url = reverse("gallery_upload", args=[gallery.slug])
    status, body = page.evaluate(
        """async (url) => {
            const data = new FormData();
            data.append("images", new File([new Uint8Array(200000)], "big.jpg", {type: "image/jpeg"}));
            const token = document.cookie.match(/csrftoken=([^;]+)/)[1];
            const r = await fetch(url, {method: "POST", body: data, headers: {Accept: "application/json", "X-CSRFToken": token}});
            return [r.status, await r.json()];
        }""",
        url,
    )
    assert status == 413 and "larger than this server accepts" in body["error"]
