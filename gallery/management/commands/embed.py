"""Embed a gallery's images again: `manage.py embed --gallery SLUG [--failed]`."""

from django.core.management.base import BaseCommand, CommandError

from gallery import services
from gallery.models import Gallery


class Command(BaseCommand):
    help = "Queue a gallery's images for embedding again (all of them, or only the failed ones)."

    def add_arguments(self, parser):
        parser.add_argument("--gallery", required=True, metavar="SLUG", help="The gallery to embed again.")
        parser.add_argument("--failed", action="store_true", help="Only retry the images whose embedding failed.")

    def handle(self, *args, gallery, failed, **options):
        found = Gallery.objects.filter(slug=gallery).first()
        if found is None:
            raise CommandError(f"No gallery {gallery!r}.")
        if failed:
            n = services.images_retry(images=found.images.all())
            self.stdout.write(f"Gallery “{found.slug}”: {n} failed image(s) queued again.")
        else:
            n = services.images_reembed(images=found.images.all())
            self.stdout.write(
                f"Gallery “{found.slug}”: {n} image(s) queued for embedding; they leave search results "
                "until their new vector is stored (images being embedded right now are left as they are)."
            )
