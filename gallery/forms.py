from typing import NamedTuple

from django import forms
from django.conf import settings
from django.contrib.auth.forms import UserCreationForm

from gallery.models import Gallery
from gallery.search.bands import BANDS


class SignupForm(UserCreationForm):
    # Optional, and used for one thing: the "Forgot password?" link mails a reset link to it.
    email = forms.EmailField(
        required=False, help_text="Optional. Only used to send you a link if you forget your password."
    )

    class Meta(UserCreationForm.Meta):
        fields = ("username", "email")


class GalleryForm(forms.ModelForm):
    class Meta:
        model = Gallery
        fields = ("title", "description", "visibility")
        widgets = {"description": forms.Textarea(attrs={"rows": 3})}


class Controls(NamedTuple):
    k: int
    offset: int
    max_distance: float | None
    page: int
    band: str | None  # a key of gallery.search.bands.BANDS: that band or closer


class SearchControlsForm(forms.Form):
    """k, an optional band or maximum distance, and a page number, from the query string."""

    k = forms.IntegerField(min_value=1, max_value=settings.IMAGESEARCH_MAX_K, required=False)
    max_distance = forms.FloatField(min_value=0.0, max_value=2.0, required=False)
    band = forms.ChoiceField(choices=[("", "Any")] + [(key, label) for key, label, _ in BANDS], required=False)
    page = forms.IntegerField(min_value=1, max_value=1000, required=False)

    # Results reach no deeper than this rank: a deeper page would make one
    # request pull a large part of the index as candidates.
    MAX_DEPTH = 1000

    def clean(self):
        data = super().clean()
        k = data.get("k") or settings.IMAGESEARCH_DEFAULT_K
        if (data.get("page") or 1) * k > self.MAX_DEPTH:
            self.add_error("page", f"Results go no deeper than the {self.MAX_DEPTH}th; choose an earlier page.")
        return data

    def values(self):
        """Return the Controls with defaults filled in."""
        data = self.cleaned_data if self.is_valid() else {}
        k = data.get("k") or settings.IMAGESEARCH_DEFAULT_K
        page = data.get("page") or 1
        return Controls(k, (page - 1) * k, data.get("max_distance"), page, data.get("band") or None)

    @classmethod
    def read(cls, data):
        """Return (Controls, errors) from a query string.

        Invalid fields fall back to their defaults and are named in `errors`
        (empty when all is valid). No controls at all, the common case, builds
        no form.
        """
        if not data:
            return Controls(settings.IMAGESEARCH_DEFAULT_K, 0, None, 1, None), {}
        form = cls(data)
        return form.values(), form.errors


class QueryImageForm(forms.Form):
    image = forms.FileField()
