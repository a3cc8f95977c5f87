from django.db import models


class CopyProbe(models.Model):
    """How far one generated copy of an image (re-encoded, resized, cropped...) lies from the image.

    The embed worker makes a few copies of a sample of each gallery's images and
    embeds them (gallery.services.probes); where this backbone puts copies of
    this gallery's pictures is what the near-duplicate band is fitted to.
    """

    gallery = models.ForeignKey("gallery.Gallery", on_delete=models.CASCADE, related_name="+")
    image = models.ForeignKey("gallery.Image", on_delete=models.CASCADE, related_name="+")
    embedding_version = models.CharField(max_length=120)
    transform = models.CharField(max_length=40)
    vector = models.BinaryField()  # the copy's embedding (gallery.vectors): bands are refitted in each build's space
    distance = models.FloatField()  # cosine distance to the image's vector
    hash_distance = models.PositiveSmallIntegerField()  # Hamming distance of the perceptual hashes (64: none)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["image", "embedding_version", "transform"], name="unique_copy_probe")
        ]
        indexes = [models.Index(fields=["gallery", "embedding_version"], name="copyprobe_gallery_version")]

    def __str__(self):
        return f"{self.image_id} {self.transform} {self.distance:.5f}"
