"""HTML pages: parse input, call one service or selector, respond."""

import base64

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count, OuterRef, Subquery
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from gallery import imaging, selectors, services
from gallery.forms import GalleryForm, QueryImageForm, SearchControlsForm, SignupForm
from gallery.models import EmbeddingState, Gallery, Image
from gallery.views.common import QueryImageError, embed_query_file, wants_json

PAGE_SIZE = 48
K_CHOICES = [6, 12, 24, 48, 100]


def _preview_data_uri(upload):
    """Return a small JPEG of the (unstored) query picture as a data: URI, or None."""
    upload.seek(0)
    try:
        return "data:image/jpeg;base64," + base64.b64encode(imaging.thumbnail_jpeg(upload.read(), 160)).decode()
    except Exception:  # the search already succeeded; a missing preview is not worth an error
        return None


def _with_cover(galleries, user):
    """Annotate each gallery with its newest visible image (the cover) and how many `user` may see."""
    visible = Image.objects.visible_to(user).filter(gallery=OuterRef("pk"))
    return galleries.annotate(
        cover_id=Subquery(visible.order_by("-created_at", "-id").values("pk")[:1]),
        n_images=Subquery(visible.order_by().values("gallery").annotate(n=Count("pk")).values("n")[:1]),
    )


def home(request):
    mine = Gallery.objects.filter(owner=request.user) if request.user.is_authenticated else Gallery.objects.none()
    public = Gallery.objects.filter(visibility="public").exclude(pk__in=mine.values("pk")).select_related("owner")
    return render(
        request,
        "gallery/home.html",
        {"mine": _with_cover(mine, request.user), "public": _with_cover(public, request.user)[:100]},
    )


@require_http_methods(["GET", "POST"])
def signup(request):
    if request.user.is_authenticated:
        return redirect("home")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend=settings.AUTHENTICATION_BACKENDS[0])
        messages.success(request, f"Welcome, {user.username}. Create a gallery to start.")
        return redirect("gallery_create")
    return render(request, "registration/signup.html", {"form": form})


@login_required
@require_http_methods(["GET", "POST"])
def gallery_create(request):
    form = GalleryForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        gallery = services.gallery_create(owner=request.user, **form.cleaned_data)
        messages.success(request, "Gallery created. Add some images.")
        return redirect(gallery)
    return render(request, "gallery/gallery_form.html", {"form": form})


@login_required
@require_http_methods(["GET", "POST"])
def gallery_edit(request, slug):
    gallery = selectors.gallery_for_owner(user=request.user, slug=slug)
    form = GalleryForm(request.POST or None, instance=gallery)
    if request.method == "POST" and form.is_valid():
        services.gallery_update(gallery=gallery, **form.cleaned_data)
        messages.success(request, "Gallery saved.")
        return redirect(gallery)
    return render(request, "gallery/gallery_form.html", {"form": form, "gallery": gallery})


@login_required
@require_http_methods(["GET", "POST"])
def gallery_delete(request, slug):
    gallery = selectors.gallery_for_owner(user=request.user, slug=slug)
    if request.method == "POST":
        services.gallery_delete(gallery=gallery)
        messages.success(request, f"Gallery “{gallery.title}” deleted.")
        return redirect("home")
    return render(request, "gallery/gallery_confirm_delete.html", {"gallery": gallery})


def gallery_detail(request, slug):
    gallery = selectors.gallery_for_view(user=request.user, slug=slug)
    images = gallery.images.visible_to(request.user).order_by("-created_at", "-id")
    page = Paginator(images, PAGE_SIZE).get_page(request.GET.get("page"))
    failed = gallery.images.filter(embedding_state=EmbeddingState.FAILED).order_by("-created_at")[:50]
    return render(
        request,
        "gallery/gallery_detail.html",
        {
            "gallery": gallery,
            "page": page,
            "can_edit": selectors.can_edit(request.user, gallery),
            "status": selectors.gallery_status(gallery=gallery),
            "failed": failed if selectors.can_edit(request.user, gallery) else [],
            "query_form": QueryImageForm(),
            "k_choices": K_CHOICES,
            "default_k": settings.IMAGESEARCH_DEFAULT_K,
            "max_upload_bytes": settings.IMAGESEARCH_MAX_UPLOAD_BYTES,
        },
    )


@login_required
@require_POST
def gallery_upload(request, slug):
    gallery = selectors.gallery_for_owner(user=request.user, slug=slug)
    files = request.FILES.getlist("images")
    results = services.images_upload(gallery=gallery, uploader=request.user, files=files) if files else []
    if wants_json(request):
        return JsonResponse({"results": [r.as_dict() for r in results]}, status=200 if results else 400)
    if not files:
        messages.error(request, "Choose one or more image files to upload.")
    added = sum(r.status == "added" for r in results)
    if added:
        messages.success(request, f"{added} image(s) added; they are being processed.")
    for r in results:
        if r.status != "added":
            level = messages.WARNING if r.status == "duplicate" else messages.ERROR
            messages.add_message(request, level, f"{r.name}: {r.message}")
    return redirect(gallery)


@login_required
@require_POST
def gallery_retry_failed(request, slug):
    gallery = selectors.gallery_for_owner(user=request.user, slug=slug)
    n = services.images_retry(images=gallery.images.all())
    messages.success(request, f"{n} image(s) queued again.")
    return redirect(gallery)


def gallery_status(request, slug):
    gallery = selectors.gallery_for_view(user=request.user, slug=slug)
    return JsonResponse(selectors.gallery_status(gallery=gallery))


@require_POST
def gallery_search(request, slug):
    """Search the gallery with an outside image (not stored)."""
    gallery = selectors.gallery_for_view(user=request.user, slug=slug)
    form = QueryImageForm(request.POST, request.FILES)
    # k may come from the search form itself (no-JS) or from the query string.
    (k, offset, max_distance, _page), _errors = SearchControlsForm.read(request.GET or request.POST)
    error, matches, preview = None, [], None
    if not form.is_valid():
        error = "Choose an image file to search with."
    else:
        try:
            vector = embed_query_file(form.cleaned_data["image"])
            preview = _preview_data_uri(form.cleaned_data["image"])
            matches = selectors.search_vector(
                user=request.user, gallery=gallery, vector=vector, k=k, offset=offset, max_distance=max_distance
            )
        except QueryImageError as exc:
            error = str(exc)
    return render(
        request,
        "gallery/results.html",
        {"gallery": gallery, "query": None, "query_name": request.FILES.get("image") and request.FILES["image"].name,
         "query_preview": preview, "matches": matches, "error": error, "k": k, "k_choices": K_CHOICES},
        status=400 if error else 200,
    )


def image_detail(request, pk):
    image = selectors.image_for_view(user=request.user, pk=pk)
    return render(
        request,
        "gallery/image_detail.html",
        {"image": image, "gallery": image.gallery, "can_edit": selectors.can_edit(request.user, image.gallery),
         "events": image.moderation_events.select_related("actor")[:20] if request.user.is_staff else [],
         "k_choices": K_CHOICES, "default_k": settings.IMAGESEARCH_DEFAULT_K},
    )


def image_similar(request, pk):
    image = selectors.image_for_view(user=request.user, pk=pk)
    (k, offset, max_distance, page), _errors = SearchControlsForm.read(request.GET)
    matches = selectors.similar_images(user=request.user, image=image, k=k, offset=offset, max_distance=max_distance)
    return render(
        request,
        "gallery/results.html",
        {
            "gallery": image.gallery,
            "query": image,
            "matches": matches,
            "k": k,
            "page": page,
            "max_distance": max_distance,
            "has_next": len(matches) == k,
            "k_choices": K_CHOICES,
        },
    )


@login_required
@require_POST
def image_delete(request, pk):
    image = selectors.image_for_view(user=request.user, pk=pk)
    if not selectors.can_edit(request.user, image.gallery):
        raise Http404("No such image.")
    gallery = image.gallery
    services.image_delete(image=image)
    messages.success(request, f"“{image.original_name}” deleted.")
    return redirect(gallery)
