from django.core.checks import run_checks


def ids(messages):
    return {m.id for m in messages}


def test_unwritable_index_dir_is_an_error(settings, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    settings.IMAGESEARCH_INDEX_DIR = blocker / "index"  # a directory under a file cannot exist
    assert "gallery.E001" in ids(run_checks())


def test_eager_tasks_with_debug_off_are_warned_about(settings):
    settings.DEBUG = False
    settings.CELERY_TASK_ALWAYS_EAGER = True
    assert "gallery.W001" in ids(run_checks())
    settings.CELERY_TASK_ALWAYS_EAGER = False
    assert "gallery.W001" not in ids(run_checks())


def test_random_weights_in_production_are_warned_about(settings):
    settings.DEBUG = False
    settings.IMAGESEARCH_VGG16_WEIGHTS = "none"
    assert "gallery.W002" in ids(run_checks())
