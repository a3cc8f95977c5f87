"""Browser tests: Playwright driving Debian's Chromium against the real app.

The app is pytest-django's live_server (a threaded WSGI server on 127.0.0.1,
transactional database); embeddings come from a real `celery worker` process
(tests/live.py) that shares the test database and this test's media and index
directories: the live server runs in this process, so it reads the same
settings the autouse `isolated_files` fixture points at tmp_path.
Every flow leaves a full-page screenshot in test-artifacts/browser/.
"""

import base64
import os
from pathlib import Path

# Playwright's sync API keeps an asyncio loop in this thread; the test body
# still queries the ORM synchronously, which Django would otherwise refuse.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
# Loopback by address: "localhost" may resolve to ::1 in Chromium but not in the server.
os.environ.setdefault("DJANGO_LIVE_TEST_SERVER_ADDRESS", "127.0.0.1")

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from gallery import services
from gallery.models import EmbeddingState, Image, IndexBuild
from tests import imagegen, live

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"

# Each test module sets: pytestmark = BROWSER
BROWSER = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the session (never downloaded: Debian's package)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).is_file():
        raise AssertionError(f"The browser tests need Chromium at {CHROMIUM}: apt-get install chromium")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(browser, live_server):
    """Open pages in fresh browser contexts (separate cookies); fail the test on any script error."""
    contexts, errors = [], []

    def make(width=1280, height=900, **options):
        context = browser.new_context(base_url=live_server.url, viewport={"width": width, "height": height}, **options)
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))
        return page

    yield make
    for context in contexts:
        context.close()
    assert not errors, f"script errors in the page: {errors}"


@pytest.fixture
def page(new_page):
    return new_page()


def screenshot(page, name):
    """Save a full-page screenshot under test-artifacts/browser/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def log_in(page, username, password):
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/accounts/login/" not in url)


def drop_files(page, selector, files, events=("dragenter", "dragover", "drop")):
    """Drop `files` [(name, mime, bytes)] on `selector` the way a desktop drag does:
    a DataTransfer holding real File objects, built in the page, carried by
    dragenter, dragover and drop events dispatched on the element (`events`: some of them)."""
    payload = [{"name": n, "type": t, "b64": base64.b64encode(d).decode()} for n, t, d in files]
    transfer = page.evaluate_handle(
        """(files) => {
            const dt = new DataTransfer();
            for (const f of files) {
                const bin = atob(f.b64);
                const bytes = new Uint8Array(bin.length);
                for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
                dt.items.add(new File([bytes], f.name, { type: f.type }));
            }
            return dt;
        }""",
        payload,
    )
    for event in events:
        page.dispatch_event(selector, event, {"dataTransfer": transfer})


SCENES = (0, 1, 2, 3, 4, 5)


def scene_files():
    """Six distinct scenes and a near-duplicate of scene 3, as uploaded files."""
    files = [SimpleUploadedFile(f"scene-{s}.jpg", imagegen.jpeg(s), "image/jpeg") for s in SCENES]
    copy = imagegen.encode(imagegen.near_duplicate(imagegen.scene(3), 1))
    files.append(SimpleUploadedFile("scene-3-copy.jpg", copy, "image/jpeg"))
    return files


@pytest.fixture
def embedded_gallery(owner, tmp_path):
    """A gallery of `owner` whose seven images a real worker has embedded and indexed.

    The uploads go through the upload service (the browser upload itself is
    tested in test_drag_and_drop_upload.py); yields (gallery, worker)."""
    live.require_redis()
    live.flush_broker()
    gallery = services.gallery_create(owner=owner, title="Field cameras", description="Trail camera shots.")
    results = services.images_upload(gallery=gallery, uploader=owner, files=scene_files())
    assert [r.status for r in results] == ["added"] * 7
    with live.Worker(tmp_path) as worker:
        live.wait_for(
            lambda: Image.objects.filter(gallery=gallery, embedding_state=EmbeddingState.READY).count() == 7,
            timeout=240,
            message="7 images embedded",
            worker=worker,
        )
        live.wait_for(
            lambda: IndexBuild.objects.filter(gallery=gallery, status="ready", item_count=7).exists(),
            timeout=60,
            message="an index build with 7 items",
            worker=worker,
        )
        yield gallery, worker
