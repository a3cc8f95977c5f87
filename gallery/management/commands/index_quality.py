"""Report recall@k of served similarity results against exact search."""

from django.core.management.base import BaseCommand, CommandError

from gallery import search
from gallery.models import Gallery

TARGET = 0.98


class Command(BaseCommand):
    help = "Measure recall@10 of a gallery's served search results against exact (brute-force) search."

    def add_arguments(self, parser):
        parser.add_argument("--gallery", required=True, metavar="SLUG")
        parser.add_argument("--sample", type=int, default=200, metavar="N", help="query images sampled (default 200)")
        parser.add_argument("--k", type=int, default=10)
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, gallery, sample, k, seed, **options):
        found = Gallery.objects.filter(slug=gallery).select_related("owner").first()
        if found is None:
            raise CommandError(f"No gallery with slug {gallery!r}.")
        if sample < 1 or k < 1:
            raise CommandError("--sample and --k must be positive.")
        r = search.index_recall(gallery=found, sample=sample, k=k, seed=seed)
        if not r["queries"]:
            self.stdout.write(f"{found.slug}: fewer than two searchable images; nothing to measure.")
            return
        index = (
            f"index v{r['index_version']} ({r['index_items']} items)"
            if r["index_version"]
            else "no index (exact search)"
        )
        verdict = "ok" if r["recall"] >= TARGET else f"BELOW TARGET {TARGET}"
        self.stdout.write(
            f"{found.slug}: recall@{k} = {r['recall']:.4f} (worst query {r['worst']:.2f}) "
            f"over {r['queries']} queries; {index}; {verdict}"
        )
