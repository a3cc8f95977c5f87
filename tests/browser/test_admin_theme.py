"""The admin's own bits (static/gallery/admin.css: the image preview, the auto-flag, the
moderation panel's Reject button, the gallery's "Rebuild index now") follow Django admin's
dark mode like the rest of the admin, and stay readable in the light one."""

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from gallery import services
from gallery.models import Image, ModerationState
from tests import imagegen
from tests.browser.conftest import BROWSER, log_in, screenshot

pytestmark = BROWSER


# The colour an element's text is read on: its nearest ancestor's with an opaque background.
BEHIND = """e => {
    for (let n = e; n; n = n.parentElement) {
        const bg = getComputedStyle(n).backgroundColor;
        if (!bg.startsWith("rgba") || !bg.endsWith(", 0)")) return bg;
    }
    return getComputedStyle(document.body).backgroundColor;
}"""


def channels(css):
    """'rgb(1, 2, 3)' -> (1, 2, 3)."""
    return tuple(int(float(v)) for v in css[css.index("(") + 1 : css.index(")")].split(",")[:3])


def luminance(rgb):
    def lin(c):
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (lin(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a, b):
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.fixture
def flagged(owner, queued):
    gallery = services.gallery_create(owner=owner, title="Moderated")
    image = services.image_create(gallery=gallery, uploader=owner, data=imagegen.jpeg(4), name="flagged.jpg").image
    Image.objects.filter(pk=image.pk).update(
        moderation_state=ModerationState.PENDING,
        flagged=True,
        flag_reason="Looks like a copy of an image rejected before",
    )
    return gallery, image


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_admins_own_bits_follow_its_theme(new_page, staff, flagged, scheme):
    gallery, image = flagged
    page = new_page(color_scheme=scheme)
    log_in(page, "staff", "pw-staff-123")
    page.goto(reverse("admin:gallery_image_change", args=[image.pk]))
    expect(page.locator("#moderation-panel")).to_be_visible()
    body_bg = channels(page.evaluate("getComputedStyle(document.body).backgroundColor"))
    assert (luminance(body_bg) < 0.1) == (scheme == "dark"), body_bg

    flag = page.locator("#moderation-panel .gallery-flag")
    flag_fg = channels(flag.evaluate("e => getComputedStyle(e).color"))
    panel_bg = channels(flag.evaluate(BEHIND))
    assert contrast(flag_fg, panel_bg) >= 4.5, (flag_fg, panel_bg)

    reject = page.get_by_role("button", name="Reject")
    fg = channels(reject.evaluate("e => getComputedStyle(e).color"))
    bg = channels(reject.evaluate("e => getComputedStyle(e).backgroundColor"))
    assert contrast(fg, bg) >= 4.5, (fg, bg)

    preview = page.locator("img.gallery-preview")
    preview_bg = channels(preview.evaluate("e => getComputedStyle(e).backgroundColor"))
    assert (luminance(preview_bg) < 0.1) == (scheme == "dark"), preview_bg
    screenshot(page, f"admin-image-{scheme}")

    page.goto(reverse("admin:gallery_gallery_change", args=[gallery.pk]))
    rebuild = page.get_by_role("button", name="Rebuild index now")
    expect(rebuild).to_be_visible()
    fg = channels(rebuild.evaluate("e => getComputedStyle(e).color"))
    bg = channels(rebuild.evaluate("e => getComputedStyle(e).backgroundColor"))
    assert contrast(fg, bg) >= 4.5, (fg, bg)
    screenshot(page, f"admin-gallery-{scheme}")
