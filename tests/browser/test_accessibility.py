"""axe-core on every main page, in the light and the dark theme, at desktop and phone widths:
no serious and no critical violation anywhere (each found one is printed with its elements).

The gallery is embedded by a real worker (conftest.embedded_gallery), so the gallery page has
photos, the image page its "Find similar" button, and both result pages real neighbours; the map
page has the build's map and the exports page a finished export. On the gallery page the selection
bar, the open viewer and its delete dialog are checked too.
"""

import re

from django.contrib.auth.tokens import default_token_generator
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from playwright.sync_api import expect

from gallery import services
from gallery.models import Export, Gallery, GroupingRun, Image, MapBuild
from gallery.services import exports
from tests import imagegen, live
from tests.browser.axe import describe, violations
from tests.browser.conftest import BROWSER, drop_files, log_in, screenshot

pytestmark = BROWSER

WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}
THEMES = ("light", "dark")


def _outside_results_url(page, gallery):
    """Search the gallery with an outside picture in the browser; return the results' URL."""
    page.goto(gallery.get_absolute_url())
    outside = imagegen.encode(imagegen.near_duplicate(imagegen.scene(5), 7), "PNG")
    with page.expect_navigation(timeout=120_000):
        drop_files(page, "#search-form", [("holiday-shot.png", "image/png", outside)])
    expect(page.locator("#results .card").first).to_be_visible()
    return page.url.replace(page.url.split("/g/")[0], "")


def _gallery_overlays(page, image):
    """Open the selection bar, the viewer and the delete dialog on the gallery page in turn; after each
    yield (name, axe's serious/critical violations)."""
    page.get_by_role("button", name="Select").click()
    page.get_by_role("checkbox", name=f"Select {image.original_name}").check()
    bar = page.get_by_role("region", name="Selection")
    expect(bar).to_be_visible()
    yield "selection-bar", violations(page)
    page.get_by_role("button", name="Done").click()  # leave Select mode: a click opens the viewer again
    expect(bar).to_be_hidden()
    page.locator(f'#grid .card[data-image-id="{image.pk}"] a.thumb').click()
    viewer = page.get_by_role("dialog", name=image.original_name)
    expect(viewer).to_be_visible()
    page.wait_for_function("() => document.querySelector('.viewer-img').naturalWidth > 0")
    yield "viewer", violations(page)
    viewer.get_by_role("button", name="Move to trash").click()
    ask = page.get_by_role("dialog", name=f"Move “{image.original_name}” to the trash?")
    expect(ask).to_be_visible()
    yield "delete-dialog", violations(page)
    ask.get_by_role("button", name="Cancel").click()
    expect(ask).to_have_count(0)
    page.keyboard.press("Escape")
    expect(page.locator("dialog.viewer[open]")).to_have_count(0)


def test_every_main_page_has_no_serious_or_critical_violation(new_page, owner, staff, make_user, embedded_gallery):
    gallery, worker = embedded_gallery
    live.wait_for(
        lambda: GroupingRun.objects.filter(gallery=gallery, build__item_count=7).exists(),
        timeout=60,
        message="the build's near-duplicate groups",
        worker=worker,
    )
    # The map of the build and a finished export, so the map and exports pages show what they hold.
    live.wait_for(
        lambda: MapBuild.objects.filter(
            build_id=Gallery.objects.get(pk=gallery.pk).current_index_id, status=MapBuild.Status.READY
        ).exists(),
        timeout=60,
        message="the build's map",
        worker=worker,
    )
    export = exports.export_request(user=owner, gallery=gallery, kind="embeddings")
    live.wait_for(
        lambda: Export.objects.filter(pk=export.pk, status=Export.Status.READY).exists(),
        timeout=60,
        message="the embeddings export",
        worker=worker,
    )
    image = Image.objects.get(gallery=gallery, original_name="scene-3.jpg")
    # One image in the trash, so the trash page lists something.
    extra = services.images_upload(
        gallery=gallery,
        uploader=owner,
        files=[SimpleUploadedFile("spare.jpg", imagegen.jpeg(9), "image/jpeg")],
    )[0]
    services.images_trash(images=[extra.image], actor=owner)
    # A reset link of someone who never signs in here (a sign-in would void the token).
    forgetful = make_user("forgetful", email="forgetful@example.org")
    uid = urlsafe_base64_encode(force_bytes(forgetful.pk))
    confirm = reverse("password_reset_confirm", args=[uid, default_token_generator.make_token(forgetful)])

    first = new_page()
    log_in(first, "owner", "pw-owner-123")
    outside = _outside_results_url(first, gallery)

    owner_pages = {
        "home": reverse("home"),
        "gallery": gallery.get_absolute_url(),
        "image": image.get_absolute_url(),
        "similar": reverse("image_similar", args=[image.pk]),
        "outside-search": outside,
        "duplicates": reverse("gallery_duplicates", args=[gallery.slug]),
        "trash": reverse("gallery_trash", args=[gallery.slug]),
        "compare": reverse("gallery_compare", args=[gallery.slug]),
        "new-gallery": reverse("gallery_create"),
        "edit-gallery": reverse("gallery_edit", args=[gallery.slug]),
        "map": reverse("gallery_map", args=[gallery.slug]),
        "exports": reverse("gallery_exports", args=[gallery.slug]),
        "delete-image": reverse("image_delete", args=[image.pk]),
    }
    anonymous_pages = {
        "home-anonymous": reverse("home"),
        "login": reverse("login"),
        "signup": reverse("signup"),
        "password-reset": reverse("password_reset"),
        "password-reset-sent": reverse("password_reset_done"),
        "password-reset-confirm": confirm,
        "password-reset-complete": reverse("password_reset_complete"),
        "not-found": "/g/no-such-gallery/",
    }
    staff_pages = {
        "gallery-staff": gallery.get_absolute_url(),
        "image-staff": image.get_absolute_url(),
        "map-staff": reverse("gallery_map", args=[gallery.slug]),
    }

    report, checked = [], 0
    for theme in THEMES:
        for width_name, (width, height) in WIDTHS.items():
            for who, pages in (("owner", owner_pages), ("anonymous", anonymous_pages), ("staff", staff_pages)):
                page = new_page(width=width, height=height, color_scheme=theme)
                if who != "anonymous":
                    log_in(page, who, f"pw-{who}-123")
                for name, url in pages.items():
                    page.goto(url)
                    if name == "password-reset-confirm":
                        expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
                    # The theme really is the one asked for (the page follows the browser's preference).
                    scheme = page.evaluate("getComputedStyle(document.documentElement).colorScheme")
                    assert scheme == theme, (name, theme, scheme)
                    found = violations(page)
                    checked += 1
                    if found:
                        report.append(f"--- {name} ({theme}, {width_name}) {url}\n{describe(found)}")
                    if width_name == "desktop" or name in ("gallery", "image", "similar"):
                        screenshot(page, f"a11y-{name}-{theme}-{width_name}")
                    if name == "gallery":
                        # The gallery page's overlays, as a person opens them: the selection bar, the viewer
                        # and its delete dialog (cancelled: nothing is deleted).
                        for state, found in _gallery_overlays(page, image):
                            checked += 1
                            if found:
                                report.append(f"--- {state} ({theme}, {width_name})\n{describe(found)}")
                            if width_name == "desktop":
                                screenshot(page, f"a11y-{state}-{theme}-{width_name}")
    print(f"axe-core checked {checked} page views")
    print("\n".join(report) or "no serious or critical violations")
    assert not report, "\n".join(report)


def test_the_header_switch_overrides_the_browser_and_is_remembered(new_page, owner):
    page = new_page(color_scheme="light")
    page.goto(reverse("login"))
    toggle = page.locator("#theme-toggle")
    expect(toggle).to_have_text("Auto")
    scheme = "getComputedStyle(document.documentElement).colorScheme"
    assert page.evaluate(scheme) == "light"
    toggle.click()  # auto -> light
    expect(toggle).to_have_text("Light")
    toggle.click()  # light -> dark
    expect(toggle).to_have_text("Dark")
    assert page.evaluate(scheme) == "dark"
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(15, 18, 23)", background

    # Remembered, and applied before the first paint: the first frame of the next page is dark.
    page.goto(reverse("signup"))
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    first_paint = page.evaluate(
        """() => new Promise(r => requestAnimationFrame(() => r(getComputedStyle(document.body).backgroundColor)))"""
    )
    assert first_paint == "rgb(15, 18, 23)"
    screenshot(page, "theme-dark-chosen")
    toggle.click()  # dark -> auto: the browser's (light) preference again
    expect(toggle).to_have_text("Auto")
    assert page.evaluate(scheme) == "light"
    assert page.evaluate("localStorage.getItem('imagesearch-theme')") is None

    # A dark browser with "Light" chosen stays light.
    dark = new_page(color_scheme="dark")
    dark.goto(reverse("login"))
    assert dark.evaluate(scheme) == "dark"
    dark.locator("#theme-toggle").click()
    expect(dark.locator("#theme-toggle")).to_have_text("Light")
    assert dark.evaluate(scheme) == "light"
    assert re.match(r"rgb\(244, 245, 248\)", dark.evaluate("getComputedStyle(document.body).backgroundColor"))
