"""A short load run in CI: 4 clients for ~30 s against gunicorn and a real worker.

Asserts what must hold under load, never speed: no request fails, and every
uploaded image ends ready and findable (its own bytes find it first).
The long run is `bench/load.py` (docs/benchmarks.md, "Load").
"""

import time

import pytest

from bench import load
from gallery import services
from tests import live

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_four_clients_for_thirty_seconds_get_no_errors_and_every_upload_ends_ready_and_findable(owner, tmp_path):
    live.require_redis()
    live.flush_broker()
    slugs = [services.gallery_create(owner=owner, title=f"Load {i}").slug for i in range(2)]
    with live.Web(tmp_path) as web, live.Worker(tmp_path) as worker:
        report = load.run(
            base_url=web.url,
            username="owner",
            password="pw-owner-123",
            slugs=slugs,
            clients=4,
            duration=30,
            max_images=40,
            seed=1,
        )
        summary = report.summary()
        print(summary)
        assert summary["errors"] == 0, summary["error_samples"]
        assert all(summary["kinds"][kind]["requests"] > 0 for kind in load.KINDS), summary["kinds"]
        assert report.uploaded, "the run uploaded images"

        ready, waited = load.wait_until_ready(report.uploaded, timeout=300)
        print(f"ready {waited:.0f} s after the run")
        assert ready == len(report.uploaded), worker.output()[-3000:]
        assert load.wait_until_indexed(slugs, timeout=120), worker.output()[-3000:]
        started = time.monotonic()
        missing = load.verify_findable(
            base_url=web.url, username="owner", password="pw-owner-123", uploaded=report.uploaded, workers=4
        )
        print(f"verified {len(report.uploaded)} searches in {time.monotonic() - started:.0f} s")
        assert missing == []
