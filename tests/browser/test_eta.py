"""The gallery page's time-left estimate (static/gallery/eta.js), run in the browser on
generated progress: what the page's polls would see (every 2 s, a little late now and then)
while workers finish images steadily, in lumps (a batch of 32 written every 8 s), after a
burst, after a slow start (the model loading before the first batch) and through a stall.

After its warm-up the estimate must be within 25 % of the true time left in the steady,
lumpy, burst and slow-start runs, and it must grow
while nothing finishes. The previous estimate (the status JSON's images over the last minute,
counted from the first claim) is computed on the same runs and printed beside it.
"""

import json
import random
import re

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from gallery import services
from tests import imagegen
from tests.browser.conftest import BROWSER, log_in, screenshot

pytestmark = BROWSER

POLL = 2.0
TOLERANCE = 0.25
# Below this many seconds left the relative error of any estimate explodes (one lump is 8 s).
JUDGED_FROM = 30.0


def batches(spec, start=0.0):
    """[(claimed_at, written_at, n)] from [(n, seconds)]: one worker, each batch claimed when the last was written."""
    out, t = [], start
    for n, seconds in spec:
        out.append((t, t + seconds, n))
        t += seconds
    return out


def runs():
    steady = batches([(1, 0.5)] * 600)  # 2 images/s, one at a time: 300 s
    lumpy = batches([(32, 8.0)] * 40)  # 4 images/s in lumps of 32: 320 s
    burst = batches([(50, 1.0)] * 3 + [(32, 10.0)] * 35)  # 150 quick ones, then 3.2 images/s
    slow_start = [(0.0, 38.0, 32)] + batches([(32, 8.0)] * 35, start=38.0)  # the model loads for 30 s
    stall = batches([(32, 8.0)] * 12) + batches([(32, 8.0)] * 12, start=96.0 + 90.0)  # nothing for 90 s
    return {"steady": steady, "lumpy": lumpy, "burst": burst, "slow-start": slow_start, "stall": stall}


def polls(work, rng):
    """What the page sees: (t, done, total, true seconds left, the old estimate) every ~2 s until the end."""
    total = sum(n for _, _, n in work)
    end = max(written for _, written, _ in work)
    samples, t = [], 0.0
    while t < end:
        done = sum(n for _, written, n in work if written <= t)
        samples.append((t, done, total, end - t, old_estimate(work, t, total - done)))
        t += POLL + (rng.random() * 0.6 if rng.random() < 0.2 else 0.0)  # a slow response now and then
    return samples


def old_estimate(work, now, remaining):
    """The status JSON's ETA (gallery.selectors.gallery_status): images written in the last minute
    over the time since the first of them was claimed (at most a minute)."""
    recent = [(claimed, n) for claimed, written, n in work if now - 60 <= written <= now]
    count = sum(n for _, n in recent)
    if not count or not remaining:
        return None
    elapsed = min(60.0, max(now - min(c for c, _ in recent), 1.0))
    return remaining / (count / elapsed)


def run_in_page(page, samples):
    return page.evaluate(
        """(samples) => {
            const eta = new window.ImagesearchEta();
            return samples.map(([t, done, total]) => {
                const left = eta.add(t, done, total);
                return [left, window.ImagesearchEta.format(left)];
            });
        }""",
        [list(s[:3]) for s in samples],
    )


def errors(samples, estimates):
    """Relative errors (estimate / truth - 1) once there is an estimate and enough time left to judge."""
    out = []
    for (_, _, _, truth, _), left in zip(samples, estimates, strict=True):
        if left is not None and truth >= JUDGED_FROM:
            out.append(left / truth - 1)
    return out


def summary(name, errs):
    if not errs:
        return f"{name}: no estimate"
    worst = max(errs, key=abs)
    mean = sum(abs(e) for e in errs) / len(errs)
    return f"{name}: mean |error| {mean:6.1%}, worst {worst:+7.1%} over {len(errs)} polls"


@pytest.fixture
def eta_page(page):
    page.goto(reverse("login"))  # every page carries eta.js
    assert page.evaluate("typeof window.ImagesearchEta") == "function"
    return page


def test_the_estimate_is_within_a_quarter_of_the_truth_and_grows_in_a_stall(eta_page):
    rng = random.Random(16)
    report, failures = [], []
    for name, work in runs().items():
        samples = polls(work, rng)
        result = run_in_page(eta_page, samples)
        estimates = [left for left, _ in result]
        first = next(i for i, left in enumerate(estimates) if left is not None)
        report.append(f"--- {name}: first estimate after {samples[first][0]:.0f} s ({first + 1} polls)")

        if name == "stall":
            stalled = [(s[0], left) for s, left in zip(samples, estimates, strict=True) if 96.0 <= s[0] <= 186.0]
            # The last lump before the stall was written at 96 s; the next is due by ~104 s.
            overdue = [left for t, left in stalled if t >= 110.0]
            report.append(
                "  during the stall: " + ", ".join(f"{t:.0f} s: {left:.0f}" for t, left in stalled[::5] if left)
            )
            old = [s[4] for s in samples if 110.0 <= s[0] <= 186.0]
            report.append("  old formula during the stall: " + ", ".join(f"{o:.0f}" if o else "none" for o in old[::5]))
            if not (overdue[-1] > overdue[0] * 1.3 and all(b >= a - 0.5 for a, b in zip(overdue, overdue[1:]))):
                failures.append(f"stall: the estimate did not grow while nothing finished: {overdue}")
            continue

        new = errors(samples, estimates)
        old = errors(samples, [s[4] for s in samples])
        report.append("  " + summary("smoothed", new))
        report.append("  " + summary("old formula", old))
        shown = sorted({words for _, words in result})
        report.append(f"  words shown: {shown}")
        bad = [e for e in new if abs(e) > TOLERANCE]
        if not new or bad:
            failures.append(
                f"{name}: {len(bad)} of {len(new)} estimates off by more than 25 % (worst {max(new, key=abs, default=0):+.0%})"
            )
    print("\n".join(report))
    screenshot(eta_page, "eta-page")
    assert not failures, "\n".join(failures)


def test_the_words_are_rounded(eta_page):
    words = eta_page.evaluate("[null, 12, 44, 70, 130, 185, 3000, 7000].map(s => window.ImagesearchEta.format(s))")
    assert words == [
        "Estimating time left…",
        "Less than a minute left",
        "Less than a minute left",
        "About a minute left",
        "About 2 min left",
        "About 3 min left",
        "About 50 min left",
        "About 2 h left",
    ]


def test_the_gallery_page_shows_the_estimate_from_its_polls(page, owner, queued):
    """The gallery page's own polling feeds the estimator: the status JSON is answered here, 10 more
    images done each poll (5 images/s of 1,000), and the words go from "Estimating…" to minutes."""
    gallery = services.gallery_create(owner=owner, title="Big import")
    services.image_create(gallery=gallery, uploader=owner, data=imagegen.jpeg(1), name="one.jpg")
    polls = {"n": 0}

    def status(route):
        done = 10 * polls["n"]
        polls["n"] += 1
        body = {
            "counts": {"pending": 1000 - done, "processing": 0, "ready": done, "failed": 0},
            "total": 1000,
            "done": done,
            "remaining": 1000 - done,
            "images_per_second": 0.0,
            "eta_seconds": None,
            "index": {"ready": False, "items": 0, "built_at": None, "stale": False, "label": "search not ready yet"},
        }
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    log_in(page, "owner", "pw-owner-123")
    page.route(f"**{reverse('gallery_status', args=[gallery.slug])}", status)
    page.goto(gallery.get_absolute_url())
    eta = page.locator("#status-eta")
    expect(eta).to_have_text("Estimating time left…")
    # 1,000 images at 10 a poll (a poll every 2 s and its fetch): 3 to 4 minutes once the page has seen a few.
    expect(eta).to_have_text(re.compile(r"^About [34] min left · [3-5]\.\d images/s$"), timeout=40_000)
    assert polls["n"] >= 4
    screenshot(page, "eta-gallery-page")
