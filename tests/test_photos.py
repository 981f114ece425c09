"""Photos: uploads straight to storage, checked and stripped when first used, shown
to whom what they belong to allows, and nothing left behind.

The journeys run twice: on the local storage ``make run`` uses, and on S3 through
the real boto3 against a local S3-compatible server (tests/fake_s3.py)."""

from __future__ import annotations

import io
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from PIL import Image

from app import clock
from app.extensions import db
from app.models import Claim, Photo, Posting, User
from app.policy import MAX_PHOTO_BYTES, MAX_UNUSED_UPLOADS
from app.services import photos as photo_service
from app.services.permissions import Actor
from tests.database import recorded
from tests.factories import (
    fetch,
    make_claim,
    make_posting,
    make_volunteer,
    photo_bytes,
    put_bytes,
    request_upload,
    upload_photo,
)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.slow)])
def storage_app(request, app, make_app):
    """The test app (local storage), or an app on the same database storing in S3
    (slow: the fake S3 server; test_when_the_storage_is_down… keeps S3 in the fast set)."""
    if request.param == "local":
        return app
    return make_app(**request.getfixturevalue("s3_config"))


def stored_keys(app) -> set[str]:
    """Every object the app's storage holds."""
    backend = app.extensions["storage"]
    if backend.name == "s3":
        pages = backend.client.get_paginator("list_objects_v2").paginate(Bucket=backend.bucket)
        return {item["Key"] for page in pages for item in page.get("Contents", [])}
    import os

    found = set()
    for folder, _dirs, names in os.walk(backend.root):
        for name in names:
            if not name.startswith(".partial-"):
                found.add(os.path.relpath(os.path.join(folder, name), backend.root).replace(os.sep, "/"))
    return found


def photo_row(app, photo_id) -> Photo | None:
    with app.app_context():
        row = db.session.get(Photo, photo_id)
        if row is not None:
            db.session.expunge(row)
        return row


def keys_of(app, photo_id) -> set[str]:
    with app.app_context():
        return set(photo_service.all_keys(db.session.get(Photo, photo_id)))


def fulfil(client, account, claim_id, **body):
    body = {"note": "菜已送到", "minutes": 60, **body}
    return client.post(f"/api/v1/claims/{claim_id}/fulfil", json=body, headers=account.headers)


def confirm(client, account, claim_id, **body):
    return client.post(f"/api/v1/claims/{claim_id}/confirm", json={"rating": 5, **body}, headers=account.headers)


def assert_no_metadata(data: bytes) -> Image.Image:
    """A picture that carries nothing but its pixels: no EXIF (no GPS), no XMP, no profile."""
    picture = Image.open(io.BytesIO(data))
    assert not picture.getexif(), dict(picture.getexif())
    assert not {"exif", "xmp", "XML:com.adobe.xmp", "icc_profile", "comment"} & set(picture.info), picture.info
    assert b"Exif\x00\x00" not in data and b"YZ Phone" not in data
    return picture


def run_purge(app, **options) -> dict:
    from app.jobs import purge_photos

    with app.app_context():
        return purge_photos(**options)


# --- the journey -------------------------------------------------------------------------------------------------


def test_a_fulfilment_photo_from_the_phone_to_the_public_story(storage_app, people):
    """Done when: a phone uploads a photo, attaches it to a fulfil, and the poster sees it
    with its thumbnail; the display file carries no EXIF; a stranger sees it only once the
    wish is confirmed and public."""
    app, client = storage_app, storage_app.test_client()
    clock.freeze(clock.utcnow())
    wish = make_posting(app, people["resident"], kind="wish", title="帮王阿姨换灯泡")
    claim_id = make_claim(app, wish, people["volunteer"])
    # a phone held sideways: 2400 x 1800 stored, EXIF says "turn 90° clockwise", GPS of the home
    original = photo_bytes(size=(2400, 1800), orientation=6)
    asked = request_upload(client, people["volunteer"], "fulfil", "image/jpeg", len(original))
    assert asked.status_code == 201, asked.get_json()
    ticket = asked.get_json()
    assert ticket["upload"]["method"] == "PUT"
    assert ticket["upload"]["headers"] == {"Content-Type": "image/jpeg"}
    assert ticket["expires_at"] == clock.isoformat(clock.utcnow() + timedelta(minutes=10))
    if app.extensions["storage"].name == "s3":
        query = parse_qs(urlsplit(ticket["upload"]["url"]).query)
        assert query["X-Amz-Expires"] == ["600"]
        assert "content-type" in query["X-Amz-SignedHeaders"][0].split(";")
    assert put_bytes(client, ticket["upload"], original).status_code == 200
    photo_id = ticket["photo_id"]
    assert keys_of(app, photo_id) & stored_keys(app) == {f"uploads/{photo_row(app, photo_id).key}"}

    resp = fulfil(client, people["volunteer"], claim_id, photo_ids=[photo_id])
    assert resp.status_code == 200, resp.get_json()
    [photo] = resp.get_json()["photos"]
    assert (photo["id"], photo["width"], photo["height"]) == (photo_id, 1200, 1600)  # upright, longest side 1600

    # the poster sees it, with its thumbnail
    seen = client.get(f"/api/v1/claims/{claim_id}", headers=people["resident"].headers).get_json()
    [shown] = seen["photos"]
    display, thumb = fetch(client, shown["url"]), fetch(client, shown["thumb_url"])
    assert (display.status_code, thumb.status_code) == (200, 200)
    picture = assert_no_metadata(display.content)
    assert (picture.format, picture.size) == ("JPEG", (1200, 1600))
    # the dark top edge of the stored picture, turned with the phone: now its right edge
    assert picture.getpixel((1150, 800))[0] < 60 < picture.getpixel((50, 800))[0]
    small = assert_no_metadata(thumb.content)
    assert small.size == (240, 320)
    # the original, GPS and all, is gone from the storage
    row = photo_row(app, photo_id)
    assert stored_keys(app) >= {f"photos/{row.key}.jpg", f"photos/{row.key}-thumb.jpg"}
    assert f"uploads/{row.key}" not in stored_keys(app)
    assert (row.status, row.claim_id) == ("used", claim_id)

    # a stranger: no claim to see, no story before the confirmation
    assert client.get(f"/api/v1/claims/{claim_id}", headers=people["stranger"].headers).status_code == 404
    assert client.get(f"/api/v1/postings/{wish}", headers=people["stranger"].headers).get_json()["story"] is None

    confirmed = confirm(client, people["resident"], claim_id)
    assert confirmed.status_code == 200, confirmed.get_json()
    assert confirmed.get_json()["private_photos"] is False
    for headers in (people["stranger"].headers, {}):
        story = client.get(f"/api/v1/postings/{wish}", headers=headers).get_json()["story"]
        assert story["note"] == "菜已送到"
        assert [p["id"] for p in story["photos"]] == [photo_id]
        assert fetch(client, story["photos"][0]["thumb_url"]).status_code == 200
    finished = client.get("/api/v1/postings?status=closed&kind=wish").get_json()["items"]
    assert [p["story"]["photos"][0]["id"] for p in finished if p["id"] == wish] == [photo_id]


def test_private_photos_keep_the_story_off_the_posting(app, client, people):
    wish = make_posting(app, people["resident"], kind="wish")
    claim_id = make_claim(app, wish, people["volunteer"])
    photo_id = upload_photo(client, people["volunteer"])
    assert fulfil(client, people["volunteer"], claim_id, photo_ids=[photo_id]).status_code == 200
    resp = confirm(client, people["resident"], claim_id, private_photos=True)
    assert resp.status_code == 200
    assert resp.get_json()["private_photos"] is True
    assert client.get(f"/api/v1/postings/{wish}").get_json()["story"] is None
    # ... while whoever may see the claim still sees them
    for account in (people["resident"], people["volunteer"]):
        seen = client.get(f"/api/v1/claims/{claim_id}", headers=account.headers).get_json()
        assert [p["id"] for p in seen["photos"]] == [photo_id]


def test_an_auto_confirmed_wish_keeps_its_photos_private(app, client, people):
    """Nobody who may publish them said so: the scheduler does not either."""
    wish = make_posting(app, people["resident"], kind="wish")
    claim_id = make_claim(app, wish, people["volunteer"])
    photo_id = upload_photo(client, people["volunteer"])
    assert fulfil(client, people["volunteer"], claim_id, photo_ids=[photo_id]).status_code == 200
    clock.advance(timedelta(days=8))
    app.test_cli_runner().invoke(args=["jobs", "run", "release_overdue_claims"])
    seen = client.get(f"/api/v1/claims/{claim_id}", headers=people["resident"].headers).get_json()
    assert (seen["status"], seen["auto_confirmed"], seen["private_photos"]) == ("confirmed", True, True)
    assert len(seen["photos"]) == 1
    assert client.get(f"/api/v1/postings/{wish}").get_json()["story"] is None


def test_a_service_fulfilment_has_no_story(app, client, people):
    service = make_posting(app, people["volunteer"], kind="service", org_id=None)
    booking = make_claim(app, service, people["resident"])
    photo_id = upload_photo(client, people["volunteer"])
    assert fulfil(client, people["volunteer"], booking, photo_ids=[photo_id]).status_code == 200
    resp = confirm(client, people["resident"], booking)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["private_photos"] is None
    assert client.get(f"/api/v1/postings/{service}").get_json()["story"] is None


# --- what is refused ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"purpose": "fulfil", "content_type": "image/jpeg", "size": 0},
        {"purpose": "fulfil", "content_type": "image/jpeg", "size": MAX_PHOTO_BYTES + 1},
        {"purpose": "fulfil", "content_type": "image/jpeg", "size": "1000"},
        {"purpose": "fulfil", "content_type": "image/gif", "size": 1000},
        {"purpose": "album", "content_type": "image/jpeg", "size": 1000},
        {"purpose": "fulfil", "content_type": "image/jpeg"},
        {"purpose": "fulfil", "content_type": "image/jpeg", "size": 1000, "name": "x.jpg"},
    ],
)
def test_an_upload_request_out_of_bounds_is_422(app, client, people, body):
    resp = client.post("/api/v1/uploads", json=body, headers=people["volunteer"].headers)
    assert resp.status_code == 422, resp.get_json()
    assert resp.get_json()["error"] == "validation_error"
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Photo)) == 0


def test_uploads_need_a_token_and_the_largest_is_10_mib(app, client, people):
    body = {"purpose": "avatar", "content_type": "image/webp", "size": MAX_PHOTO_BYTES}
    assert client.post("/api/v1/uploads", json=body).status_code == 401
    assert client.post("/api/v1/uploads", json=body, headers=people["stranger"].headers).status_code == 201


def test_unused_uploads_are_capped(app, client, people):
    for _ in range(MAX_UNUSED_UPLOADS):
        assert request_upload(client, people["volunteer"]).status_code == 201
    resp = request_upload(client, people["volunteer"])
    assert resp.status_code == 409
    assert resp.get_json()["error"] == "upload_limit"
    assert request_upload(client, people["resident"]).status_code == 201  # the cap is each user's
    clock.advance(timedelta(hours=25))  # the unused ones expire: room again
    assert request_upload(client, people["volunteer"]).status_code == 201


def test_a_photo_not_uploaded_yet_is_422_and_can_be_used_once_it_is(app, client, people):
    wish = make_posting(app, people["resident"], kind="wish")
    claim_id = make_claim(app, wish, people["volunteer"])
    data = photo_bytes()
    ticket = request_upload(client, people["volunteer"], size=len(data)).get_json()
    resp = fulfil(client, people["volunteer"], claim_id, photo_ids=[ticket["photo_id"]])
    assert resp.status_code == 422
    body = resp.get_json()
    assert body["error"] == "photo_not_uploaded"
    assert str(ticket["photo_id"]) in body["errors"]["json"]["photo_ids"][0]
    with app.app_context():
        assert db.session.get(Claim, claim_id).status == "active"
    put_bytes(client, ticket["upload"], data)
    assert fulfil(client, people["volunteer"], claim_id, photo_ids=[ticket["photo_id"]]).status_code == 200


def _png_bomb() -> bytes:
    """9,000 x 9,000 pixels (81 megapixels) in a few kilobytes."""
    buffer = io.BytesIO()
    Image.new("1", (9000, 9000)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("content_type", "data", "declared"),
    [
        ("image/jpeg", b"this is not a picture at all", None),
        ("image/jpeg", photo_bytes("image/png"), None),  # a PNG declared as JPEG
        ("image/webp", photo_bytes("image/jpeg"), None),
        ("image/jpeg", photo_bytes()[:-600], None),  # cut off in transit
        ("image/png", _png_bomb(), None),
        ("image/jpeg", photo_bytes(), 999),  # not the size declared
    ],
    ids=["not-an-image", "png-as-jpeg", "jpeg-as-webp", "truncated", "decompression-bomb", "wrong-size"],
)
def test_what_is_not_a_photo_of_its_declared_type_and_size_is_refused(
    app, client, people, content_type, data, declared
):
    wish = make_posting(app, people["resident"], kind="wish")
    claim_id = make_claim(app, wish, people["volunteer"])
    good = upload_photo(client, people["volunteer"])
    ticket = request_upload(client, people["volunteer"], "fulfil", content_type, declared or len(data)).get_json()
    put_bytes(client, ticket["upload"], data)
    resp = fulfil(client, people["volunteer"], claim_id, photo_ids=[good, ticket["photo_id"]])
    assert resp.status_code == 422, resp.get_json()
    assert resp.get_json()["error"] == "invalid_photo"
    # nothing attached, the claim unchanged; the bad upload is gone, the good one usable
    with app.app_context():
        assert db.session.get(Claim, claim_id).status == "active"
    assert (photo_row(app, good).status, photo_row(app, good).claim_id) == ("ready", None)
    bad = photo_row(app, ticket["photo_id"])
    assert bad.status == "discarded"
    assert f"uploads/{bad.key}" not in stored_keys(app)
    again = fulfil(client, people["volunteer"], claim_id, photo_ids=[ticket["photo_id"]])
    assert again.get_json()["error"] == "invalid_photo"
    assert fulfil(client, people["volunteer"], claim_id, photo_ids=[good]).status_code == 200


def test_only_ones_own_unused_photo_of_the_right_purpose(app, client, people):
    wish = make_posting(app, people["resident"], kind="wish")
    claim_id = make_claim(app, wish, people["volunteer"])
    someone_elses = upload_photo(client, people["stranger"])
    an_avatar = upload_photo(client, people["volunteer"], "avatar")
    for photo_ids in ([someone_elses], [an_avatar], [2**31 - 1]):
        resp = fulfil(client, people["volunteer"], claim_id, photo_ids=photo_ids)
        assert resp.status_code == 422, photo_ids
        assert resp.get_json()["error"] == "invalid_photo"
    used = upload_photo(client, people["volunteer"])
    assert fulfil(client, people["volunteer"], claim_id, photo_ids=[used]).status_code == 200
    # used once: not again, anywhere
    posting_photo = {"kind": "wish", "title": "再来一次", "description": "d", "district": "haishu", "photo_ids": [used]}
    resp = client.post("/api/v1/postings", json=posting_photo, headers=people["volunteer"].headers)
    assert resp.get_json()["error"] == "invalid_photo"
    other_claim = make_claim(app, make_posting(app, people["resident"], kind="wish"), people["volunteer"])
    assert fulfil(client, people["volunteer"], other_claim, photo_ids=[used]).get_json()["error"] == "invalid_photo"


def test_a_stale_upload_cannot_be_used(app, client, people):
    claim_id = make_claim(app, make_posting(app, people["resident"], kind="wish"), people["volunteer"])
    photo_id = upload_photo(client, people["volunteer"])
    clock.advance(timedelta(hours=24, minutes=1))
    assert fulfil(client, people["volunteer"], claim_id, photo_ids=[photo_id]).get_json()["error"] == "invalid_photo"


def test_when_the_storage_is_down_a_fulfil_is_503_and_changes_nothing(app, client, make_app, people, s3_config):
    s3 = make_app(**s3_config)
    s3_client = s3.test_client()
    claim_id = make_claim(app, make_posting(app, people["resident"], kind="wish"), people["volunteer"])
    photo_id = upload_photo(s3_client, people["volunteer"])
    down = make_app(**{**s3_config, "S3_ENDPOINT_URL": "http://127.0.0.1:9"})  # nothing listens on port 9
    resp = fulfil(down.test_client(), people["volunteer"], claim_id, photo_ids=[photo_id])
    assert resp.status_code == 503, resp.get_json()
    assert resp.get_json()["error"] == "service_unavailable"
    assert resp.headers["Retry-After"]
    with app.app_context():
        assert db.session.get(Claim, claim_id).status == "active"
    assert photo_row(app, photo_id).status == "pending"
    assert fulfil(s3_client, people["volunteer"], claim_id, photo_ids=[photo_id]).status_code == 200


# --- postings and avatars ----------------------------------------------------------------------------------------


def _wish_body(**fields) -> dict:
    return {"kind": "wish", "title": "帮忙修门锁", "description": "门锁坏了", "district": "haishu", **fields}


def test_posting_photos_are_public_like_the_posting(app, client, people):
    ids = [upload_photo(client, people["resident"], "posting") for _ in range(2)]
    resp = client.post("/api/v1/postings", json=_wish_body(photo_ids=ids[::-1]), headers=people["resident"].headers)
    assert resp.status_code == 201, resp.get_json()
    posting = resp.get_json()
    assert [p["id"] for p in posting["photos"]] == ids[::-1]  # in the order given
    # under review: only its managers see it, photos and all
    assert client.get(f"/api/v1/postings/{posting['id']}").status_code == 404
    client.post(f"/api/v1/postings/{posting['id']}/approve", headers=people["coordinator"].headers)
    public = client.get(f"/api/v1/postings/{posting['id']}").get_json()
    assert [p["id"] for p in public["photos"]] == ids[::-1]
    assert all(fetch(client, p["url"]).status_code == 200 for p in public["photos"])
    listed = client.get("/api/v1/postings").get_json()["items"]
    assert [len(p["photos"]) for p in listed if p["id"] == posting["id"]] == [2]


def test_a_page_of_postings_loads_its_photos_in_one_query(app, client, people):
    for _ in range(3):
        ids = [upload_photo(client, people["coordinator"], "posting") for _ in range(2)]
        body = _wish_body(photo_ids=ids, org_id=people["org_id"])
        assert client.post("/api/v1/postings", json=body, headers=people["coordinator"].headers).status_code == 201
    with recorded(app) as seen:
        page = client.get("/api/v1/postings").get_json()["items"]
    assert [len(p["photos"]) for p in page] == [2, 2, 2]
    # the page's own statement says which postings have photos; one more reads them all
    assert sum(statement.lstrip().startswith("SELECT photos.") for statement, _ in seen) == 1


def test_editing_a_postings_photos_replaces_them_and_sends_it_back_to_review(app, client, people):
    first, second = (upload_photo(client, people["resident"], "posting") for _ in range(2))
    posting = client.post("/api/v1/postings", json=_wish_body(photo_ids=[first]), headers=people["resident"].headers)
    posting_id = posting.get_json()["id"]
    client.post(f"/api/v1/postings/{posting_id}/approve", headers=people["coordinator"].headers)
    resp = client.patch(
        f"/api/v1/postings/{posting_id}", json={"photo_ids": [second]}, headers=people["resident"].headers
    )
    assert resp.status_code == 200, resp.get_json()
    assert ([p["id"] for p in resp.get_json()["photos"]], resp.get_json()["status"]) == ([second], "pending_review")
    assert photo_row(app, first).posting_id is None  # off the posting: the purge job's now
    # the coordinator keeps the resident's photo and adds one of their own
    mine = upload_photo(client, people["coordinator"], "posting")
    resp = client.patch(
        f"/api/v1/postings/{posting_id}", json={"photo_ids": [mine, second]}, headers=people["coordinator"].headers
    )
    assert [p["id"] for p in resp.get_json()["photos"]] == [mine, second]
    # the same list again changes nothing
    again = client.patch(
        f"/api/v1/postings/{posting_id}", json={"photo_ids": [mine, second]}, headers=people["coordinator"].headers
    )
    assert again.get_json()["updated_at"] == resp.get_json()["updated_at"]
    clock.advance(timedelta(minutes=16))
    assert run_purge(app)["photos_deleted"] == 1
    assert photo_row(app, first) is None


def test_the_avatar(app, client, people):
    account = people["volunteer"]
    assert client.get("/api/v1/me", headers=account.headers).get_json()["avatar"] is None
    first = upload_photo(client, account, "avatar", photo_bytes("image/png", (800, 800)), "image/png")
    resp = client.patch("/api/v1/me", json={"avatar_photo_id": first}, headers=account.headers)
    assert resp.status_code == 200, resp.get_json()
    avatar = resp.get_json()["avatar"]
    assert (avatar["id"], avatar["width"], avatar["height"]) == (first, 800, 800)
    assert_no_metadata(fetch(client, avatar["thumb_url"]).content)
    second = upload_photo(client, account, "avatar")
    resp = client.patch("/api/v1/me", json={"avatar_photo_id": second}, headers=account.headers)
    assert resp.get_json()["avatar"]["id"] == second
    assert photo_row(app, first).avatar_user_id is None
    # the app sending the profile back whole, the same avatar in it, changes nothing
    again = client.patch("/api/v1/me", json={"avatar_photo_id": second, "locale": "zh-CN"}, headers=account.headers)
    assert (again.status_code, again.get_json()["avatar"]["id"]) == (200, second)
    fulfil_photo = upload_photo(client, account, "fulfil")
    resp = client.patch("/api/v1/me", json={"avatar_photo_id": fulfil_photo}, headers=account.headers)
    assert (resp.status_code, resp.get_json()["error"]) == (422, "invalid_photo")
    assert "avatar_photo_id" in resp.get_json()["errors"]["json"]
    resp = client.patch("/api/v1/me", json={"avatar_photo_id": None}, headers=account.headers)
    assert resp.get_json()["avatar"] is None


# --- nothing left behind ------------------------------------------------------------------------------------------


def test_the_purge_removes_unused_uploads_after_a_day_and_keeps_what_is_used(storage_app, people):
    app, client = storage_app, storage_app.test_client()
    claim_id = make_claim(app, make_posting(app, people["resident"], kind="wish"), people["volunteer"])
    used = upload_photo(client, people["volunteer"])
    assert fulfil(client, people["volunteer"], claim_id, photo_ids=[used]).status_code == 200
    unused = upload_photo(client, people["volunteer"])
    checked_not_used = upload_photo(client, people["resident"], "posting")
    with app.app_context():
        resident = Actor(db.session.get(User, people["resident"].id))
        photo_service.usable_photos(resident, [checked_not_used], "posting")
    never_sent = request_upload(client, people["volunteer"]).get_json()["photo_id"]
    kept = keys_of(app, used) - {f"uploads/{photo_row(app, used).key}"}

    clock.advance(timedelta(hours=23))
    result = run_purge(app)
    assert (result["photos_deleted"], result["uploads_closed"]) == (0, 2)
    assert all(photo_row(app, i) is not None for i in (used, unused, checked_not_used, never_sent))
    clock.advance(timedelta(hours=1, minutes=1))
    assert run_purge(app, batch_size=1)["photos_deleted"] == 3  # in batches of one
    assert [photo_row(app, i) is None for i in (used, unused, checked_not_used, never_sent)] == [
        False,
        True,
        True,
        True,
    ]
    assert stored_keys(app) == kept


def test_an_original_put_again_after_the_check_is_deleted_once_its_url_expires(app, client, people):
    claim_id = make_claim(app, make_posting(app, people["resident"], kind="wish"), people["volunteer"])
    data = photo_bytes()
    ticket = request_upload(client, people["volunteer"], size=len(data)).get_json()
    put_bytes(client, ticket["upload"], data)
    assert fulfil(client, people["volunteer"], claim_id, photo_ids=[ticket["photo_id"]]).status_code == 200
    original = f"uploads/{photo_row(app, ticket['photo_id']).key}"
    assert put_bytes(client, ticket["upload"], data).status_code == 200  # the URL still works for a while
    assert original in stored_keys(app)
    clock.advance(timedelta(minutes=16))
    assert run_purge(app)["uploads_closed"] == 1
    assert original not in stored_keys(app)
    assert photo_row(app, ticket["photo_id"]).upload_closed
    assert put_bytes(client, ticket["upload"], data).status_code == 403  # expired


def test_an_erased_account_takes_its_photos_along(app, client, people):
    account = people["volunteer"]
    claim_id = make_claim(app, make_posting(app, people["resident"], kind="wish"), account)
    fulfilled = upload_photo(client, account)
    assert fulfil(client, account, claim_id, photo_ids=[fulfilled]).status_code == 200
    avatar = upload_photo(client, account, "avatar")
    client.patch("/api/v1/me", json={"avatar_photo_id": avatar}, headers=account.headers)
    theirs = upload_photo(client, people["resident"], "posting")
    with app.app_context():
        assert photo_service.delete_user_photos(account.id) == 2
        db.session.commit()
    assert client.get("/api/v1/me", headers=account.headers).get_json()["avatar"] is None
    assert client.get(f"/api/v1/claims/{claim_id}", headers=account.headers).get_json()["photos"] == []
    clock.advance(timedelta(minutes=16))
    assert run_purge(app)["photos_deleted"] == 2
    assert stored_keys(app) == keys_of(app, theirs) & stored_keys(app)


def test_a_photo_goes_with_its_posting(app, client, people):
    photo_id = upload_photo(client, people["resident"], "posting")
    posting = client.post("/api/v1/postings", json=_wish_body(photo_ids=[photo_id]), headers=people["resident"].headers)
    with app.app_context():
        db.session.execute(sa.delete(Posting).where(Posting.id == posting.get_json()["id"]))
        db.session.commit()
    clock.advance(timedelta(minutes=16))
    assert run_purge(app)["photos_deleted"] == 1
    assert stored_keys(app) == set()


# --- the local storage's own URLs -------------------------------------------------------------------------------


def test_local_upload_urls_are_signed_bound_to_their_type_and_expire(app, client, people):
    data = photo_bytes()
    ticket = request_upload(client, people["volunteer"], size=len(data)).get_json()
    upload = ticket["upload"]
    assert urlsplit(upload["url"]).netloc == "localhost"  # the host the request came to (no PUBLIC_BASE_URL)
    wrong_type = put_bytes(client, upload, data, **{"Content-Type": "image/png"})
    assert (wrong_type.status_code, wrong_type.get_json()["error"]) == (403, "forbidden")
    forged = {**upload, "url": upload["url"][:-3] + "abc"}
    assert put_bytes(client, forged, data).status_code == 403
    too_big = put_bytes(client, upload, b"\xff" * (MAX_PHOTO_BYTES + 1))
    assert (too_big.status_code, too_big.get_json()["error"]) == (413, "payload_too_large")
    # a download URL is no upload URL, and the reverse
    assert fetch(client, upload["url"]).status_code == 403
    clock.advance(timedelta(minutes=10))
    assert put_bytes(client, upload, data).status_code == 403


def test_local_photo_urls_live_an_hour(app, client, people, make_app):
    claim_id = make_claim(app, make_posting(app, people["resident"], kind="wish"), people["volunteer"])
    fulfil(client, people["volunteer"], claim_id, photo_ids=[upload_photo(client, people["volunteer"])])
    [photo] = client.get(f"/api/v1/claims/{claim_id}", headers=people["resident"].headers).get_json()["photos"]
    served = fetch(client, photo["url"])
    assert served.status_code == 200 and served.mimetype == "image/jpeg"
    assert served.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert "private" in served.headers["Cache-Control"]
    clock.advance(timedelta(hours=1))
    assert fetch(client, photo["url"]).status_code == 403
    fresh = client.get(f"/api/v1/claims/{claim_id}", headers=people["resident"].headers).get_json()["photos"][0]
    assert fresh["url"] != photo["url"] and fetch(client, fresh["url"]).status_code == 200
    # built on PUBLIC_BASE_URL when it is set, never on the request's Host
    public = make_app(PUBLIC_BASE_URL="https://zhiyuan.example.cn")
    shown = public.test_client().get(
        f"/api/v1/claims/{claim_id}", headers={**people["resident"].headers, "Host": "evil.example.com"}
    )
    assert shown.get_json()["photos"][0]["url"].startswith("https://zhiyuan.example.cn/files/")


# --- races (PostgreSQL) ---------------------------------------------------------------------------------------------


def test_a_photo_raced_into_two_fulfilments_lands_in_one(app, people, postgres_only):
    """Both requests check the same upload at the same moment; the conditional
    attach lets exactly one have it."""
    from tests.test_races import at_once

    client = app.test_client()
    other = make_volunteer(app, name="小陈")
    photo_id = upload_photo(client, people["volunteer"])
    wishes = [make_posting(app, people["resident"], kind="wish") for _ in range(2)]
    claims = [make_claim(app, wish, people["volunteer"]) for wish in wishes]
    body = {"note": "做完了", "minutes": 30, "photo_ids": [photo_id]}
    results = at_once(
        app, [("POST", f"/api/v1/claims/{claim_id}/fulfil", people["volunteer"].headers, body) for claim_id in claims]
    )
    assert sorted(status for status, _ in results) == [200, 422], results
    [refused] = [body for status, body in results if status == 422]
    assert refused["error"] == "invalid_photo"
    with app.app_context():
        statuses = dict(db.session.execute(sa.select(Claim.id, Claim.status).where(Claim.id.in_(claims))).all())
    assert sorted(statuses.values()) == ["active", "fulfilled"]
    assert photo_row(app, photo_id).claim_id == next(c for c, s in statuses.items() if s == "fulfilled")
    # ... and a user's avatars raced: one avatar at the end, the other photo free
    first, second = (upload_photo(client, other, "avatar") for _ in range(2))
    results = at_once(
        app, [("PATCH", "/api/v1/me", other.headers, {"avatar_photo_id": photo}) for photo in (first, second)]
    )
    assert [status for status, _ in results] == [200, 200], results
    with app.app_context():
        holders = db.session.scalars(sa.select(Photo.id).where(Photo.avatar_user_id == other.id)).all()
    assert len(holders) == 1
