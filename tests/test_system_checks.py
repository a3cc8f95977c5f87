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


def test_an_unknown_backbone_is_an_error(settings):
    settings.IMAGESEARCH_BACKBONE = "resnet9000"
    errors = [m for m in run_checks() if m.id == "gallery.E002"]
    assert errors and "resnet9000" in errors[0].msg and "vgg16" in errors[0].msg


def test_a_missing_weights_file_is_an_error(settings, tmp_path):
    settings.IMAGESEARCH_BACKBONE = "vgg16"
    settings.IMAGESEARCH_VGG16_WEIGHTS = str(tmp_path / "gone.h5")
    assert "gallery.E003" in ids(run_checks())
    settings.IMAGESEARCH_VGG16_WEIGHTS = "imagenet"
    assert "gallery.E003" not in ids(run_checks())


def test_the_hot_path_sql_warns_on_another_django_release(monkeypatch):
    from gallery.search import reads

    assert "gallery.W003" not in ids(run_checks())
    monkeypatch.setattr(reads, "DJANGO_VERSION", (4, 2))
    assert "gallery.W003" in ids(run_checks())
