"""A small world of galleries and images in every moderation state, for permission tests.

owner: private gallery "Owner private" and public gallery "Owner public", each with an
approved image, a pending one, and a rejected near-duplicate of the approved one.
other: private gallery "Other private" with one approved image.
Every image is stored through services.image_create; embed() runs the real model.
"""

from dataclasses import dataclass, field

from gallery import services
from gallery.models import Image, ModerationState
from tests import imagegen

SPEC = [
    # (gallery key, image name, bytes factory, moderation state)
    ("private", "priv-approved.jpg", lambda: imagegen.jpeg(10), ModerationState.APPROVED),
    ("private", "priv-pending.jpg", lambda: imagegen.jpeg(11), ModerationState.PENDING),
    (
        "private",
        "priv-rejected.jpg",
        lambda: imagegen.encode(imagegen.near_duplicate(imagegen.scene(10), 1)),
        ModerationState.REJECTED,
    ),
    ("public", "pub-approved.jpg", lambda: imagegen.jpeg(20), ModerationState.APPROVED),
    ("public", "pub-pending.jpg", lambda: imagegen.jpeg(21), ModerationState.PENDING),
    (
        "public",
        "pub-rejected.jpg",
        lambda: imagegen.encode(imagegen.near_duplicate(imagegen.scene(20), 1)),
        ModerationState.REJECTED,
    ),
    ("theirs", "their-approved.jpg", lambda: imagegen.jpeg(30), ModerationState.APPROVED),
]


@dataclass
class World:
    owner: object
    other: object
    staff: object
    galleries: dict = field(default_factory=dict)
    images: dict = field(default_factory=dict)

    def image(self, name):
        return self.images[name]

    def embed(self):
        """Embed every image with the real model (in this process) and reload them."""
        services.images_embed(image_ids=[img.pk for img in self.images.values()])
        self.images = {name: Image.objects.get(pk=img.pk) for name, img in self.images.items()}


def build(owner, other, staff):
    world = World(owner=owner, other=other, staff=staff)
    world.galleries = {
        "private": services.gallery_create(owner=owner, title="Owner private", visibility="private"),
        "public": services.gallery_create(owner=owner, title="Owner public", visibility="public"),
        "theirs": services.gallery_create(owner=other, title="Other private", visibility="private"),
    }
    for key, name, data, state in SPEC:
        gallery = world.galleries[key]
        result = services.image_create(gallery=gallery, uploader=gallery.owner, data=data(), name=name)
        assert result.status == "added", result
        if state != ModerationState.PENDING:
            services.image_moderate(image=result.image, actor=staff, state=state, reason=f"{state} in setup")
        world.images[name] = Image.objects.get(pk=result.image.pk)
    return world
