from django.urls import include, path

from gallery.api import maps as api_maps
from gallery.api import views as api
from gallery.views import duplicates, media, pages, results, selection
from gallery.views import exports as export_views
from gallery.views import maps as map_views

api_urlpatterns = [
    path("images/<int:pk>/similar", api.similar, name="api_similar"),
    path("galleries/<slug:slug>/search", api.search_gallery, name="api_search"),
    path("galleries/<slug:slug>/status", api.status, name="api_status"),
    path("galleries/<slug:slug>/similar", api_maps.similar_many, name="api_similar_many"),
    path("galleries/<slug:slug>/images", api.upload, name="api_upload"),
    path("galleries/<slug:slug>/duplicates", api.duplicates, name="api_duplicates"),
    path("galleries/<slug:slug>/duplicates/resolve", api.duplicates_resolve_all, name="api_duplicates_resolve_all"),
    path(
        "galleries/<slug:slug>/duplicates/<int:group_id>/resolve", api.duplicates_resolve, name="api_duplicates_resolve"
    ),
    path("galleries/<slug:slug>/compare", api.compare, name="api_compare"),
    path("images/<int:pk>/keep", api.image_keep, name="api_image_keep"),
    path("images/<int:pk>/skip", api.image_skip, name="api_image_skip"),
    path("galleries/<slug:slug>/exports", api.exports, name="api_exports"),
    path("exports/<int:pk>", api.export_detail, name="api_export"),
    path("exports/<int:pk>/download", api.export_download, name="api_export_download"),
]

urlpatterns = [
    path("api/", include(api_urlpatterns)),  # first: the most requested, and one prefix test skips it for pages
    path("", pages.home, name="home"),
    path("signup/", pages.signup, name="signup"),
    path("g/new/", pages.gallery_create, name="gallery_create"),
    path("g/<slug:slug>/", pages.gallery_detail, name="gallery_detail"),
    path("g/<slug:slug>/edit/", pages.gallery_edit, name="gallery_edit"),
    path("g/<slug:slug>/delete/", pages.gallery_delete, name="gallery_delete"),
    path("g/<slug:slug>/upload/", pages.gallery_upload, name="gallery_upload"),
    path("g/<slug:slug>/retry/", pages.gallery_retry_failed, name="gallery_retry"),
    path("g/<slug:slug>/repair/", pages.gallery_repair, name="gallery_repair"),
    path("g/<slug:slug>/duplicates/", duplicates.review, name="gallery_duplicates"),
    path("g/<slug:slug>/duplicates/all/", duplicates.resolve_all, name="gallery_duplicates_resolve_all"),
    path("g/<slug:slug>/duplicates/<int:group_id>/", duplicates.resolve, name="gallery_duplicates_resolve"),
    path("g/<slug:slug>/duplicates.csv", duplicates.export, {"fmt": "csv"}, name="gallery_duplicates_csv"),
    path("g/<slug:slug>/duplicates.json", duplicates.export, {"fmt": "json"}, name="gallery_duplicates_json"),
    path("g/<slug:slug>/compare/", duplicates.compare, name="gallery_compare"),
    path("g/<slug:slug>/trash/", duplicates.trash, name="gallery_trash"),
    path("g/<slug:slug>/trash/restore/", duplicates.trash_restore, name="gallery_trash_restore"),
    path("g/<slug:slug>/trash/purge/", duplicates.trash_purge, name="gallery_trash_purge"),
    path("g/<slug:slug>/trash/<int:pk>/thumb", duplicates.trash_thumbnail, name="gallery_trash_thumb"),
    path("g/<slug:slug>/trash/undo/", selection.trash_undo, name="gallery_trash_undo"),
    path("g/<slug:slug>/images/trash/", selection.images_trash, name="gallery_images_trash"),
    path("g/<slug:slug>/images.zip", selection.images_zip, name="gallery_images_zip"),
    path("g/<slug:slug>/exports/", export_views.exports_page, name="gallery_exports"),
    path("g/<slug:slug>/exports/new/", export_views.export_create, name="gallery_export_create"),
    path("g/<slug:slug>/exports/status.json", export_views.exports_status, name="gallery_exports_status"),
    path("g/<slug:slug>/exports/<int:pk>/download", export_views.export_download, name="gallery_export_download"),
    path("g/<slug:slug>/status.json", pages.gallery_status, name="gallery_status"),
    path("g/<slug:slug>/map/", map_views.gallery_map, name="gallery_map"),
    path("g/<slug:slug>/map/points.bin", map_views.gallery_map_points, name="gallery_map_points"),
    path("g/<slug:slug>/map/names.json", map_views.gallery_map_names, name="gallery_map_names"),
    path("g/<slug:slug>/similar/", map_views.gallery_similar_many, name="gallery_similar_many"),
    path("g/<slug:slug>/search/", results.gallery_search, name="gallery_search"),
    path("g/<slug:slug>/search/<str:token>/", results.gallery_search_results, name="gallery_search_results"),
    path("i/<int:pk>/", pages.image_detail, name="image_detail"),
    path("i/<int:pk>/similar/", results.image_similar, name="image_similar"),
    path("i/<int:pk>/delete/", pages.image_delete, name="image_delete"),
    path("i/<int:pk>/keep/", duplicates.upload_keep, name="image_upload_keep"),
    path("i/<int:pk>/skip/", duplicates.upload_skip, name="image_upload_skip"),
    path("i/<int:pk>/file", media.image_file, name="image_file"),
    path("i/<int:pk>/thumb", media.image_thumbnail, name="image_thumb"),
]
