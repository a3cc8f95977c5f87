import pytest
from django.contrib.auth import get_user_model

from tests import imagegen


@pytest.fixture(autouse=True)
def isolated_files(settings, tmp_path):
    """Media and index files of each test live in its own tmp_path."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
        # No collectstatic in tests: plain names instead of the hashed manifest.
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    settings.IMAGESEARCH_INDEX_DIR = tmp_path / "index"
    settings.IMAGESEARCH_VGG16_WEIGHTS = "none"
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.IMAGESEARCH_COPY_PROBES = 0  # as scripts/test.sh: the band tests turn copy probes on
    # Caches, the model and the broker back-off are per process: each test starts
    # clean (IndexBuild's cache especially: SQLite reuses the pks of rolled-back rows).
    from gallery.signals import reset_process_state

    reset_process_state()
    yield tmp_path
    reset_process_state()


REAL_MODEL_MARKERS = {"model", "integration"}


@pytest.fixture(autouse=True)
def backbone(request, settings):
    """Unit tests embed with tests.fake_backbone (no TensorFlow), outside pictures too (in the
    test process: no query worker runs); tests marked `model` or `integration` run the real
    VGG16 with seeded random weights, as the workers they talk to do."""
    if REAL_MODEL_MARKERS.isdisjoint(m.name for m in request.node.iter_markers()):
        settings.IMAGESEARCH_BACKBONE = "tests.fake_backbone.FakeBackbone"
        settings.IMAGESEARCH_QUERY_IN_PROCESS = True


@pytest.fixture
def queued(monkeypatch):
    """Capture the image ids that would be sent to the broker (the broker is not under test)."""
    from gallery import jobs

    sent = []
    monkeypatch.setattr(jobs, "send_embed_task", lambda ids: sent.append(list(ids)))
    return sent


@pytest.fixture
def make_user(db):
    def make(username, **extra):
        return get_user_model().objects.create_user(username=username, password="pw-" + username + "-123", **extra)

    return make


@pytest.fixture
def owner(make_user):
    return make_user("owner")


@pytest.fixture
def other(make_user):
    return make_user("other")


@pytest.fixture
def staff(make_user):
    return make_user("staff", is_staff=True, is_superuser=True)


@pytest.fixture
def jpeg():
    return imagegen.jpeg
