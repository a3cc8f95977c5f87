"""Index files now carry a PCA projection (vNNNNNN.pca.npy). Versions built
before it are unusable (search treats them as missing and is exact meanwhile),
so every gallery that has an index is marked stale: the next periodic pass
rebuilds each one in the new layout."""

from django.db import migrations
from django.utils import timezone


def mark_indexed_galleries_stale(apps, schema_editor):
    Gallery = apps.get_model("gallery", "Gallery")
    IndexBuild = apps.get_model("gallery", "IndexBuild")
    indexed = IndexBuild.objects.filter(status="ready").values("gallery_id")
    Gallery.objects.filter(pk__in=indexed, index_dirty=False).update(index_dirty=True, index_dirty_since=timezone.now())


class Migration(migrations.Migration):
    dependencies = [("gallery", "0003_image_gallery_embedded_at_index")]

    operations = [migrations.RunPython(mark_indexed_galleries_stale, migrations.RunPython.noop)]
