"""The Django admin of the app: images and the moderation queue, galleries, index builds, notices."""

from django.contrib import admin

from gallery.admin.exports import ExportAdmin
from gallery.admin.galleries import GalleryAdmin, IndexBuildAdmin, SystemNoticeAdmin
from gallery.admin.images import ImageAdmin, ModerationQueueAdmin
from gallery.models import Export, Gallery, Image, IndexBuild, ModerationQueueItem, SystemNotice

admin.site.register(Image, ImageAdmin)
admin.site.register(ModerationQueueItem, ModerationQueueAdmin)
admin.site.register(Gallery, GalleryAdmin)
admin.site.register(IndexBuild, IndexBuildAdmin)
admin.site.register(SystemNotice, SystemNoticeAdmin)
admin.site.register(Export, ExportAdmin)
