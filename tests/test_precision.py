"""IMAGESEARCH_PRECISION: how it resolves against the CPU's flags, what it does to the
embedding version, its system check, and (marked `model`) how close bf16 vectors of
the real VGG16 are to fp32 ones."""

import numpy as np
import pytest
from django.core.exceptions import ImproperlyConfigured

from gallery import checks
from gallery.embedding import imaging
from gallery.embedding.backbones import precision
from gallery.embedding.backbones.vgg16 import VGG16
from tests import imagegen

NO_BF16 = {"fpu", "sse2", "avx2", "avx512f", "avx512_vnni"}


@pytest.fixture
def cpu(monkeypatch):
    """Set the flags the process sees in /proc/cpuinfo; the resolved value is read afresh."""

    def set_flags(flags):
        monkeypatch.setattr(precision, "cpu_flags", lambda path=precision.CPUINFO: frozenset(flags))
        monkeypatch.setattr(precision, "_cache", {})

    return set_flags


def test_cpuinfo_flags_are_read_from_the_flags_lines(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx512f avx512_bf16\n\n"
        "processor\t: 1\nflags\t\t: fpu sse2 avx512f avx512_bf16\nbugs\t\t: spectre_v1\n"
    )
    assert precision.cpu_flags(info) == {"fpu", "sse2", "avx512f", "avx512_bf16"}
    assert precision.cpu_flags(tmp_path / "missing") == frozenset()


@pytest.mark.parametrize(
    "value, flags, mode",
    [
        ("auto", {*NO_BF16, "avx512_bf16"}, "bf16"),
        ("auto", {*NO_BF16, "amx_bf16", "amx_tile"}, "bf16"),
        ("auto", NO_BF16, "fp32"),
        ("auto", set(), "fp32"),
        ("", NO_BF16, "fp32"),  # empty means the default
        ("fp32", {"avx512_bf16"}, "fp32"),
        ("bf16", {"avx512_bf16"}, "bf16"),
        ("bf16", NO_BF16, "fp32"),  # not emulated: fp32, and the check warns
        ("int8", NO_BF16, "int8"),
        ("int8", {"avx512_bf16"}, "int8"),
        ("BF16", {"avx512_bf16"}, "bf16"),
    ],
)
def test_each_setting_resolves_against_the_cpu_flags(value, flags, mode):
    resolved = precision.resolve(value, flags)
    assert resolved.mode == mode
    assert resolved.reason


def test_the_reason_names_the_flag_found_or_missing():
    assert "avx512_bf16" in precision.resolve("auto", {"avx512_bf16"}).reason
    missing = precision.resolve("bf16", NO_BF16)
    assert "avx512_bf16" in missing.reason and "fp32" in missing.reason
    assert str(missing) == "fp32 (bf16 asked for)"


@pytest.mark.parametrize("value", ["fp16", "float32", "int4", "yes"])
def test_a_bad_value_is_refused_with_the_choices(value):
    with pytest.raises(ImproperlyConfigured) as exc:
        precision.resolve(value, NO_BF16)
    message = str(exc.value)
    assert f"IMAGESEARCH_PRECISION={value!r}" in message
    assert "auto, fp32, bf16, int8" in message


def test_the_process_resolves_the_setting_it_runs_with(settings, cpu):
    cpu({"avx512_bf16"})
    settings.IMAGESEARCH_PRECISION = "auto"
    assert precision.configured().mode == "bf16"
    settings.IMAGESEARCH_PRECISION = "fp32"
    assert precision.configured().mode == "fp32"
    cpu(NO_BF16)
    settings.IMAGESEARCH_PRECISION = "auto"
    assert precision.configured().mode == "fp32"


def version_at(settings, value):
    settings.IMAGESEARCH_PRECISION = value
    backbone = VGG16(weights="none", seed=7)  # no model is built for the version
    return backbone.version_id(), backbone.precision.mode


def test_fp32_and_bf16_share_a_version_and_int8_has_its_own(settings, cpu):
    cpu({"avx512_bf16"})
    fp32, mode_fp32 = version_at(settings, "fp32")
    bf16, mode_bf16 = version_at(settings, "bf16")
    auto, _ = version_at(settings, "auto")
    int8, mode_int8 = version_at(settings, "int8")
    assert (mode_fp32, mode_bf16, mode_int8) == ("fp32", "bf16", "int8")
    assert fp32 == bf16 == auto == "vgg16-avgpool-l2/caffe-224-squash-bilinear/random-seed7"
    assert int8 == fp32 + "/int8"
    cpu(NO_BF16)
    assert version_at(settings, "auto")[0] == fp32  # a gallery is not split by the CPU it is embedded on


def test_a_version_says_which_precision_embeds_in_it(settings, cpu):
    cpu({"avx512_bf16"})
    assert precision.split_ident("random-seed7/int8") == ("random-seed7", True)
    assert precision.split_ident("imagenet") == ("imagenet", False)
    assert precision.for_version(True).mode == "int8"
    settings.IMAGESEARCH_PRECISION = "int8"
    # The previous, served vectors of a site turning int8 on are embedded as before: auto.
    assert precision.for_version(False).mode == "bf16"
    settings.IMAGESEARCH_PRECISION = "fp32"
    assert precision.for_version(False).mode == "fp32"


def test_a_backbone_built_for_a_version_runs_at_that_versions_precision(settings, cpu):
    from gallery.embedding import backbones

    cpu({"avx512_bf16"})
    settings.IMAGESEARCH_BACKBONE = "vgg16"  # built, not loaded: no TensorFlow here
    settings.IMAGESEARCH_VGG16_WEIGHTS = "none"
    settings.IMAGESEARCH_PRECISION = "int8"
    active = backbones.active()
    assert active.version_id().endswith("/int8")
    served = active.version_id().removesuffix("/int8")  # what galleries serve until their switch
    before = backbones.for_version(served)
    assert before.precision.mode == "bf16" and before.version_id() == served
    settings.IMAGESEARCH_PRECISION = "fp32"
    back = backbones.for_version(served + "/int8")
    assert back.precision.mode == "int8" and back.version_id() == served + "/int8"


def test_the_system_check_warns_when_bf16_cannot_run(settings, cpu):
    cpu(NO_BF16)
    settings.IMAGESEARCH_PRECISION = "bf16"
    (warning,) = checks.precision_supported(None)
    assert warning.id == "gallery.W005"
    assert "running fp32" in warning.msg and "avx512_bf16" in warning.msg
    settings.IMAGESEARCH_PRECISION = "auto"
    assert checks.precision_supported(None) == []
    cpu({"avx512_bf16"})
    settings.IMAGESEARCH_PRECISION = "bf16"
    assert checks.precision_supported(None) == []


def test_the_system_check_reports_a_bad_value_as_an_error(settings, cpu):
    cpu(NO_BF16)
    settings.IMAGESEARCH_PRECISION = "fp16"
    (error,) = checks.precision_supported(None)
    assert error.id == "gallery.E004"
    assert "auto, fp32, bf16, int8" in error.msg


# bf16 against fp32 through the real VGG16 (seeded random weights). Random
# weights map every picture close to every other (pairwise cosine about
# 0.9998), so neighbours are decided by small differences: a demanding test of
# rounding. Thresholds: each bf16 vector within cosine 1e-4 of its fp32 one
# (measured: 1 - cosine 5e-6, worst 6e-6), and >= 0.9 of each image's 5 nearest
# shared (measured 0.99 on these 24; bench/embed.py measures nn@10 on more).
COSINE_GAP = 1e-4
NN_SHARE = 0.9


def nearest(vectors, k):
    sims = vectors @ vectors.T  # (N, N)
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1)[:, :k]  # (N, k)


@pytest.mark.model
def test_bf16_vectors_of_the_real_vgg16_stay_close_to_fp32(settings):
    if not (precision.BF16_FLAGS & precision.cpu_flags()):
        pytest.skip("this CPU has no bfloat16 instructions: bf16 runs fp32 here")
    arrays = [imaging.model_input(size=224, data=imagegen.jpeg(s)) for s in range(24)]
    settings.IMAGESEARCH_EMBED_BATCH_SIZE = 8
    out = {}
    for value in ("fp32", "bf16"):
        settings.IMAGESEARCH_PRECISION = value
        backbone = VGG16(weights="none", seed=settings.IMAGESEARCH_RANDOM_SEED)
        assert backbone.precision.mode == value
        out[value] = backbone.embed_batch(arrays)  # (24, 512)
    fp32, bf16 = out["fp32"], out["bf16"]
    assert bf16.dtype == np.float32 and bf16.shape == (24, 512)
    assert np.allclose(np.linalg.norm(bf16, axis=1), 1.0, atol=1e-5)
    assert not np.array_equal(fp32, bf16)  # bf16 really ran
    gap = 1.0 - (fp32 * bf16).sum(axis=1)
    assert gap.max() < COSINE_GAP
    a, b = nearest(fp32, 5), nearest(bf16, 5)
    shared = np.mean([len(set(x) & set(y)) / 5 for x, y in zip(a, b, strict=True)])
    assert shared >= NN_SHARE
