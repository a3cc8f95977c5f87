"""HTML pages: parse input, call one service or selector, respond."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from gallery import access, selectors, services
from gallery.forms import GalleryForm, QueryImageForm, SignupForm
from gallery.models import EmbeddingState
from gallery.views.common import K_CHOICES, wants_json

PAGE_SIZE = 48


def home(request):
    mine, public = selectors.home_galleries(user=request.user)
    return render(request, "gallery/home.html", {"mine": mine, "public": public})


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
    owner = access.can_edit(request.user, gallery)
    # Read once: the staff's health panel shows the same (detailed) status.
    status = selectors.gallery_status(gallery=gallery, detailed=request.user.is_staff)
    return render(
        request,
        "gallery/gallery_detail.html",
        {
            "gallery": gallery,
            "page": page,
            "can_edit": owner,
            "status": status,
            "failed": failed if owner else [],
            "duplicate_groups": selectors.open_groups(gallery=gallery).count() if owner else 0,
            "trash_count": gallery.trash.count() if owner else 0,
            "query_form": QueryImageForm(),
            "k_choices": K_CHOICES,
            "default_k": settings.IMAGESEARCH_DEFAULT_K,
            "max_upload_bytes": settings.IMAGESEARCH_MAX_UPLOAD_BYTES,
            # Staff's health panel (coverage, index age, recall, failures, repair).
            "health": selectors.gallery_health(gallery=gallery, status=status) if request.user.is_staff else None,
            "zip_max_images": settings.IMAGESEARCH_ZIP_MAX_IMAGES,
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


@login_required
@require_POST
def gallery_repair(request, slug):
    """Staff only (404 for everyone else, as for a gallery they cannot see): queue every repair at once."""
    if not request.user.is_staff:
        raise Http404("No such gallery.")
    gallery = selectors.gallery_for_view(user=request.user, slug=slug)
    report = services.gallery_repair(gallery=gallery)
    if wants_json(request):
        return JsonResponse(
            {
                "retried": report.retried,
                "requeued": report.requeued,
                "rebuild": report.rebuild,
                "grouping": report.grouping,
                "map": report.map,
                "message": report.message,
            }
        )
    messages.success(request, report.message)
    return redirect(gallery.get_absolute_url() + "#health")


def gallery_status(request, slug):
    gallery = selectors.gallery_for_view(user=request.user, slug=slug)
    return JsonResponse(selectors.gallery_status(gallery=gallery, detailed=request.user.is_staff))


def image_detail(request, pk):
    image = selectors.image_for_view(user=request.user, pk=pk)
    return render(
        request,
        "gallery/image_detail.html",
        {
            "image": image,
            "gallery": image.gallery,
            "can_edit": access.can_edit(request.user, image.gallery),
            "events": image.moderation_events.select_related("actor")[:20] if request.user.is_staff else [],
            "duplicate_group": selectors.duplicate_group_of(image=image)
            if access.can_edit(request.user, image.gallery)
            else None,
            "k_choices": K_CHOICES,
            "default_k": settings.IMAGESEARCH_DEFAULT_K,
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def image_delete(request, pk):
    """GET: a page that asks first (so a click never deletes without scripts); POST: move it to the trash."""
    image = selectors.image_for_view(user=request.user, pk=pk)
    if not access.can_edit(request.user, image.gallery):
        raise Http404("No such image.")
    gallery = image.gallery
    days = settings.IMAGESEARCH_TRASH_DAYS
    if request.method == "GET":
        return render(request, "gallery/image_confirm_delete.html", {"image": image, "gallery": gallery, "days": days})
    name = image.original_name
    (item,) = services.images_trash(images=[image], actor=request.user)
    if wants_json(request):
        undo = reverse("gallery_trash_undo", args=[gallery.slug])
        return JsonResponse(
            {"trashed": [item.pk], "count": 1, "message": f"“{name}” moved to the trash.", "undo": undo}
        )
    messages.success(request, f"“{name}” moved to the trash; it can be restored there for {days} days.")
    return redirect(gallery)
