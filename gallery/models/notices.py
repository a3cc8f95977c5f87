from django.db import models


class SystemNotice(models.Model):
    """A problem the workers report to people (e.g. the model weights cannot be loaded)."""

    # The one notice the embedding pipeline raises and clears.
    WEIGHTS = "embedding-weights"

    key = models.CharField(max_length=50, unique=True)
    message = models.TextField()
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return self.key

    @classmethod
    def post(cls, key, message):
        cls.objects.update_or_create(key=key, defaults={"message": message})

    @classmethod
    def clear(cls, key):
        cls.objects.filter(key=key).delete()
