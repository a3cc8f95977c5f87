"""Exports in the browser: the owner asks for the embeddings on the Exports page and for a result
list on a results page; a real worker builds both; the page updates itself and the files download."""

import csv
import io
import zipfile

import numpy as np
from playwright.sync_api import expect

from gallery.models import Export, Image
from tests.browser.conftest import BROWSER, log_in, screenshot

pytestmark = BROWSER


def test_ask_for_exports_watch_them_finish_and_download_them(page, owner, embedded_gallery):
    gallery, _worker = embedded_gallery
    log_in(page, "owner", "pw-owner-123")
    page.goto(gallery.get_absolute_url())
    assert page.locator("#exports-link").count() == 1  # in the toolbar's menu
    page.goto(f"/g/{gallery.slug}/exports/")
    expect(page.locator(".empty")).to_contain_text("No exports yet")
    page.get_by_role("button", name="Export embeddings").click()
    expect(page.locator(".messages")).to_contain_text("is being prepared")
    row = page.locator("tr[data-export-id]")
    expect(row).to_have_count(1)
    # The page polls its status JSON and reloads itself when the worker is done: no manual refresh.
    expect(row).to_have_attribute("data-status", "ready", timeout=90_000)
    expect(row.locator(".export-status")).to_contain_text("Ready")
    expect(row).to_contain_text("7 rows")
    screenshot(page, "exports-0-ready")
    with page.expect_download() as info:
        row.get_by_role("link", name="Download").click()
    download = info.value
    assert download.suggested_filename == f"{gallery.slug}-embeddings-{Export.objects.get().pk}.zip"
    archive = zipfile.ZipFile(download.path())
    matrix = np.load(io.BytesIO(archive.read("embeddings.npy")))
    ids = [int(r["id"]) for r in csv.DictReader(io.TextIOWrapper(archive.open("ids.csv"), encoding="utf-8"))]
    assert matrix.shape == (7, 512)
    np.testing.assert_array_equal(matrix, np.stack([Image.objects.get(pk=pk).vector for pk in ids]))

    query = Image.objects.get(gallery=gallery, original_name="scene-3-copy.jpg")
    page.goto(f"/i/{query.pk}/similar/")
    shown = page.locator("#results .result .name").all_inner_texts()
    page.locator("#export-results").get_by_role("button", name="Export CSV").click()
    page.wait_for_url(f"**/g/{gallery.slug}/exports/")
    newest = page.locator("tr[data-export-id]").first
    expect(newest).to_contain_text(f"Result list (similar to image #{query.pk})")
    expect(newest).to_have_attribute("data-status", "ready", timeout=90_000)
    with page.expect_download() as info:
        newest.get_by_role("link", name="Download").click()
    rows = list(csv.DictReader(io.StringIO(open(info.value.path(), encoding="utf-8").read())))
    assert [r["name"] for r in rows] == shown and rows[0]["name"] == "scene-3.jpg"
    screenshot(page, "exports-1-results")
