"""The attach time of a phone photo: read, checked, re-encoded and stored in the
request that first uses it.

    .venv/bin/python bench/photos.py                  # local storage (make run's), 10 runs
    .venv/bin/python bench/photos.py --storage s3     # boto3 against moto's S3 server on loopback
    .venv/bin/python bench/photos.py --mb 5 --runs 20

It builds a JPEG of about ``--mb`` megabytes as a phone writes one: 12
megapixels (4032 x 3024), sensor-like noise over a gradient (a photo's detail
is what makes it that large), EXIF with the camera, a GPS position and
orientation 6 (held sideways). Then, on an SQLite database of its own in a
temporary folder:

1. ``render``   ``app.images.render`` alone: decode at the scale the display
                size needs, turn upright, convert to sRGB, encode the display
                size (1,600 px) and the thumbnail (320 px);
2. ``attach``   ``POST /api/v1/claims/{id}/fulfil`` with one photo uploaded
                just before, through the app (Flask's test client): the whole
                request — read the upload from storage, check its size and
                type, render, write both files, delete the original, commit,
                answer the claim with its photo URLs;
3. ``attach9``  the same with nine photos, the most a fulfilment takes.

Each prints p50, p95 and max over ``--runs`` in milliseconds, and the median
CPU time the process spent (what the work costs, however busy the machine is;
with nine photos checked two at a time it may exceed the wall time). The uploads
themselves (the phone's PUT) are not timed: they never reach a web worker in
production.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from app import create_app, images  # noqa: E402
from app.config import TestConfig  # noqa: E402
from app.extensions import db  # noqa: E402
from app.policy import DISPLAY_LONGEST_SIDE, MAX_PHOTO_PIXELS, THUMB_LONGEST_SIDE  # noqa: E402
from tests.factories import (  # noqa: E402
    HOME_GPS,
    make_claim,
    make_posting,
    make_user,
    make_volunteer,
    put_bytes,
    request_upload,
)


def phone_photo(megabytes: float) -> bytes:
    """A 12-megapixel JPEG of about ``megabytes``, with a phone's EXIF."""
    width, height = 4032, 3024
    noise = Image.effect_noise((width, height), 48).convert("RGB")
    gradient = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    picture = Image.blend(noise, gradient, 0.55)
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = "YZ Phone", "YZ Phone 12", 6
    exif[0x8825] = dict(HOME_GPS)
    target = megabytes * 1_000_000
    best = b""
    for quality in range(98, 40, -1):
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=quality, exif=exif.tobytes())
        best = buffer.getvalue()
        if len(best) <= target:
            break
    return best


def summary(name: str, millis: list[float], cpu: list[float]) -> str:
    """Wall-clock p50/p95/max, and the median CPU time of this process (what the
    work costs, whatever else the machine is doing)."""
    ordered = sorted(millis)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"{name:<8} p50 {statistics.median(ordered):7.1f} ms   p95 {p95:7.1f} ms   max {ordered[-1]:7.1f} ms"
        f"   cpu p50 {statistics.median(cpu):7.1f} ms"
    )


class Timer:
    """Wall-clock and process CPU time of the block, in ms."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = (time.perf_counter() - self.wall) * 1000
        self.cpu = (time.process_time() - self.cpu) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=5.0, help="size of the photo (default 5)")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--storage", choices=("local", "s3"), default="local")
    args = parser.parse_args()

    data = phone_photo(args.mb)
    print(f"photo: 4032 x 3024 JPEG, {len(data):,} bytes, EXIF with GPS, orientation 6; storage {args.storage}")

    bounds = {"max_pixels": MAX_PHOTO_PIXELS, "display_side": DISPLAY_LONGEST_SIDE, "thumb_side": THUMB_LONGEST_SIDE}
    images.render(data, "image/jpeg", **bounds)  # warm up
    timings, cpu = [], []
    for _ in range(args.runs):
        with Timer() as timer:
            images.render(data, "image/jpeg", **bounds)
        timings.append(timer.wall)
        cpu.append(timer.cpu)
    print(summary("render", timings, cpu))

    with tempfile.TemporaryDirectory() as work:
        config = {k: getattr(TestConfig, k) for k in dir(TestConfig) if k.isupper()}
        config.update(SQLALCHEMY_DATABASE_URI=f"sqlite:///{work}/bench.sqlite", STORAGE_LOCAL_PATH=f"{work}/photos")
        fake = None
        if args.storage == "s3":
            from tests.fake_s3 import FakeS3

            fake = FakeS3()
            config.update(fake.config(fake.new_bucket()))
        app = create_app(config)
        with app.app_context():
            db.create_all()
        client = app.test_client()
        poster, volunteer = make_user(app), make_volunteer(app)
        try:
            for name, count in (("attach", 1), ("attach9", 9)):
                timings, cpu = [], []
                for _ in range(args.runs):
                    claim_id = make_claim(app, make_posting(app, poster, kind="wish"), volunteer)
                    ids = []
                    for _ in range(count):
                        ticket = request_upload(client, volunteer, "fulfil", "image/jpeg", len(data)).get_json()
                        put_bytes(client, ticket["upload"], data)
                        ids.append(ticket["photo_id"])
                    body = {"note": "菜已送到", "minutes": 60, "photo_ids": ids}
                    with Timer() as timer:
                        resp = client.post(f"/api/v1/claims/{claim_id}/fulfil", json=body, headers=volunteer.headers)
                    timings.append(timer.wall)
                    cpu.append(timer.cpu)
                    assert resp.status_code == 200, resp.get_json()
                    assert len(resp.get_json()["photos"]) == count
                print(summary(name, timings, cpu))
        finally:
            with app.app_context():
                db.engine.dispose()
            if fake is not None:
                fake.stop()


if __name__ == "__main__":
    main()
