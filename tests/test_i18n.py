"""Languages: the catalogs are complete and compiled, the one negotiation
(user's locale, then Accept-Language, then zh-CN), every message a client can
see under zh-CN is Chinese, and pushes speak the recipient's language."""

from __future__ import annotations

import inspect
import re
import string
from pathlib import Path

import marshmallow.fields
import marshmallow.validate
import pytest
import sqlalchemy as sa
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_keywords, parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from app.errors import MESSAGES
from app.extensions import db
from app.i18n import API_LOCALES, in_locale, translate_message
from app.models import Notification, User
from tests.factories import make_posting, make_roles, make_user, make_volunteer, set_locale
from tests.helpers import register
from tests.moments import YEAR

ROOT = Path(__file__).resolve().parent.parent
CATALOGS = ROOT / "app" / "translations"
SOURCES = ("app", "mobile_api", "notifications")
CJK = re.compile(r"[\u4e00-\u9fff]")
# Chinese characters or Chinese punctuation (【】，：) — what a zh-CN translation holds.
CHINESE = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")
# Three English words in a row: a message left in English (codes, field names
# and lists of choices are not sentences).
ENGLISH = re.compile(r"\b[A-Za-z]{2,}\s+[A-Za-z]{2,}\s+[A-Za-z]{2,}\b")
ZH = {"Accept-Language": "zh-CN"}


def catalog(tag: str):
    with open(CATALOGS / API_LOCALES[tag] / "LC_MESSAGES" / "messages.po", "rb") as fh:
        return read_po(fh)


def extracted() -> set[tuple[str | None, str]]:
    """(context, msgid) of every text in the code, extracted the way `make messages` does."""
    makefile = (ROOT / "Makefile").read_text()
    extract_line = next(line for line in makefile.splitlines() if "pybabel extract" in line)
    keywords = dict(DEFAULT_KEYWORDS)
    keywords.update(parse_keywords(re.findall(r"-k (\S+)", extract_line)))
    with open(ROOT / "babel.cfg") as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    found = set()
    for source in SOURCES:
        for _file, _line, message, _comments, context in extract_from_dir(
            ROOT / source, method_map, options_map, keywords=keywords
        ):
            msgid = message[0] if isinstance(message, tuple) else message
            found.add((context, msgid))
    return found


def names(text: str) -> set[str]:
    """The placeholders of a text: ``%(name)s`` and ``{name}``."""
    percent = set(re.findall(r"%\((\w+)\)", text))
    braces = {name for _, name, _, _ in string.Formatter().parse(text.replace("%", "")) if name}
    return percent | braces


def strings(value) -> list[str]:
    if isinstance(value, dict):
        return [text for item in value.values() for text in strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in strings(item)]
    return [value] if isinstance(value, str) else []


def assert_chinese(resp, *codes: int) -> list[str]:
    """Every text a person reads in the error body is Chinese; returns them."""
    body = resp.get_json()
    assert resp.status_code in codes, (resp.status_code, body)
    texts = [body["message"], *strings(body.get("errors", {}))]
    for text in texts:
        assert CJK.search(text), (resp.request.path, text)
        assert not ENGLISH.search(text), (resp.request.path, text)
    return texts


# --- the catalogs ------------------------------------------------------------------------------


def test_every_text_in_the_code_has_a_chinese_translation():
    """Fails when a text was added or changed without `make messages` and a zh-CN translation."""
    zh = catalog("zh-CN")
    entries = {(m.context, m.id): m for m in zh if m.id}
    code = extracted()
    assert len(code) > 200
    missing = sorted(str(key) for key in code if key not in entries)
    assert not missing, f"not in the zh_Hans_CN catalog (run make messages): {missing}"
    for key in code:
        message = entries[key]
        assert message.string and not message.fuzzy, f"untranslated or fuzzy: {key}"
        assert CHINESE.search(message.string), key
        assert names(message.id) == names(message.string), f"placeholders differ: {key}"


def test_the_catalogs_hold_nothing_the_code_no_longer_says():
    code = extracted()
    for tag in API_LOCALES:
        stale = sorted(str((m.context, m.id)) for m in catalog(tag) if m.id and (m.context, m.id) not in code)
        assert not stale, (tag, stale)


@pytest.mark.parametrize("tag", list(API_LOCALES))
def test_compiled_catalog_matches_its_po(tag):
    """The committed .mo is what `pybabel compile` makes of the .po (make messages)."""
    directory = CATALOGS / API_LOCALES[tag] / "LC_MESSAGES"
    with open(directory / "messages.mo", "rb") as fh:
        compiled = {(_text(m.context), m.id): m.string for m in read_mo(fh) if m.id}
    source = {(m.context, m.id): m.string for m in catalog(tag) if m.id and m.string and not m.fuzzy}
    assert compiled == source


def _text(value: str | bytes | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def test_marshmallows_own_messages_are_all_translated(app):
    """Every default message of marshmallow's fields and validators (as a client would
    get it, values filled in) comes out Chinese: a marshmallow upgrade that adds one fails here."""
    samples = []
    for _, cls in inspect.getmembers(marshmallow.fields, inspect.isclass):
        for key, text in cls.__dict__.get("default_error_messages", {}).items():
            if key == "invalid_awareness":  # only NaiveDateTime and AwareDateTime use it
                samples += [text.format(awareness=aware, obj_type="datetime") for aware in ("naive", "aware")]
                continue
            for obj_type in ("date", "datetime", "time"):
                samples.append(text.format(input="x", obj_type=obj_type, choices="a, b"))
    samples += [marshmallow.Schema._default_error_messages[key] for key in ("type", "unknown")]
    v = marshmallow.validate
    failing = [
        (v.Range(1), 0),
        (v.Range(1, min_inclusive=False), 1),
        (v.Range(None, 9), 10),
        (v.Range(None, 9, max_inclusive=False), 9),
        (v.Range(1, 9), 10),
        (v.Range(1, 9, min_inclusive=False), 1),
        (v.Range(1, 9, max_inclusive=False), 9),
        (v.Range(1, 9, min_inclusive=False, max_inclusive=False), 9),
        (v.Length(min=2), "a"),
        (v.Length(max=1), "ab"),
        (v.Length(1, 3), ""),
        (v.Length(equal=2), "a"),
        (v.OneOf(["a", "b"]), "c"),
        (v.NoneOf(["a"]), "a"),
        (v.Regexp("x"), "y"),
        (v.Equal(1), 2),
        (v.ContainsOnly(["a"]), ["b"]),
        (v.ContainsNoneOf(["a"]), ["a"]),
        (v.URL(), "x"),
        (v.Email(), "x"),
        (v.Predicate("isdigit"), "x"),
    ]
    for validator, value in failing:
        with pytest.raises(marshmallow.ValidationError) as info:
            validator(value)
        samples += info.value.messages
    with app.app_context(), in_locale("zh-CN"):
        for sample in set(samples):
            translated = translate_message(sample)
            assert CJK.search(translated) and not ENGLISH.search(translated), (sample, translated)
    with app.app_context(), in_locale("en"):
        assert all(translate_message(sample) == sample for sample in samples)


def test_a_range_message_keeps_both_ends(app):
    with app.app_context(), in_locale("zh-CN"):
        assert translate_message("Must be greater than or equal to 1 and less than or equal to 100.") == (
            "须大于或等于 1 且小于或等于 100。"
        )


# --- error slugs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("slug", sorted(MESSAGES))
def test_every_error_slug_speaks_chinese_and_english(app, slug):
    with app.app_context():
        with in_locale("zh-CN"):
            chinese = str(MESSAGES[slug])
        with in_locale("en"):
            english = str(MESSAGES[slug])
    assert CJK.search(chinese), (slug, chinese)
    assert not CJK.search(english) and re.search(r"[A-Za-z]{3}", english), (slug, english)
    assert chinese != english


# --- negotiation ---------------------------------------------------------------------------------

ME = "/api/v1/me"
BAD_PROFILE = {"locale": "fr"}


def test_without_any_preference_the_language_is_chinese(app, client):
    assert client.get("/nope").get_json()["message"] == "不存在或无权查看"
    user = make_user(app)
    texts = assert_chinese(client.patch(ME, headers=user.headers, json=BAD_PROFILE), 422)
    assert "必须是以下之一：zh-CN, en。" in texts


@pytest.mark.parametrize(("header", "english"), [("en", True), ("en-GB,zh;q=0.5", True), ("fr", False), ("zh", False)])
def test_accept_language_beats_the_default(client, header, english):
    message = client.get("/nope", headers={"Accept-Language": header}).get_json()["message"]
    assert message == ("Not found." if english else "不存在或无权查看")


def test_the_users_locale_beats_accept_language(app, client):
    reader = make_user(app, locale="en")
    body = client.patch(ME, headers={**reader.headers, **ZH}, json=BAD_PROFILE).get_json()
    assert body["message"] == "The input is invalid."
    assert body["errors"] == {"json": {"locale": ["Must be one of: zh-CN, en."]}}
    chinese_reader = make_user(app)
    body = client.patch(ME, headers={**chinese_reader.headers, "Accept-Language": "en"}, json=BAD_PROFILE).get_json()
    assert body["message"] == "输入有误，请检查后重试"


def test_a_changed_locale_applies_from_the_next_request(app, client):
    user = make_user(app)
    set_locale(client, user, "en")
    assert client.patch(ME, headers=user.headers, json=BAD_PROFILE).get_json()["message"] == "The input is invalid."


def test_without_a_known_user_accept_language_decides(client):
    """A bad token names no user: the header decides, then the default."""
    bad = {"Authorization": "Bearer a.b.c"}
    assert client.get(ME, headers={**bad, "Accept-Language": "en"}).get_json()["message"] == "The token is invalid."
    assert client.get(ME, headers=bad).get_json()["message"] == "登录凭证无效"


@pytest.mark.parametrize(("header", "locale"), [(None, "zh-CN"), ("en-US,en;q=0.9", "en"), ("zh-CN", "zh-CN")])
def test_registration_keeps_the_phones_language(app, client, header, locale):
    headers = {"Accept-Language": header} if header else {}
    resp = register(app, client, headers=headers)
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["user"]["locale"] == locale


# --- every validation path a client can hit, in Chinese ---------------------------------------------


@pytest.fixture
def roles(app):
    return make_roles(app)


def test_account_validation_messages_are_chinese(app, client):
    register = "/api/v1/auth/register"
    cases = [
        {},  # missing fields
        {"phone": 13812345678, "password": 12345678, "display_name": ["x"], "email": "not-mail", "extra": 1},
        {"phone": "12345", "password": "short", "display_name": "x" * 41, "email": None},
        {"phone": "1381234\u0000", "password": "long-enough", "display_name": "小王"},
    ]
    for body in cases:
        assert_chinese(client.post(register, json=body, headers=ZH), 422)
    assert_chinese(client.post(register, json=[1, 2], headers=ZH), 422)
    assert_chinese(client.post(register, data=b'{"phone": "1', content_type="application/json", headers=ZH), 400)
    assert_chinese(client.post("/api/v1/auth/login", json={"password": "x"}, headers=ZH), 422)
    assert_chinese(client.post("/api/v1/auth/login", json={"phone": "13812345678", "password": "wrong!!"}), 401)

    user = make_user(app)
    profile = {"locale": "fr", "timezone": "Mars/Base", "quiet_hours": {"start": "25:00", "end": "x", "y": 1}}
    assert_chinese(client.patch(ME, headers=user.headers, json=profile), 422)
    same = {"quiet_hours": {"start": "22:00", "end": "22:00"}}
    assert_chinese(client.put(f"{ME}/notification-settings", headers=user.headers, json=same), 422)
    assert_chinese(
        client.post(
            f"{ME}/password", headers=user.headers, json={"old_password": "nope!!!!", "new_password": "n3w-pass!"}
        ),
        422,
    )
    volunteer = {
        "real_name": "",
        "id_number": "1" * 19,
        "district": "atlantis",
        "push_radius_km": 100,
        "birth_date": "not-a-date",
        "gender": "x",
        "skills": ["a", "a"],
        "home": {"lat": 200, "lng": "x"},
    }
    assert_chinese(client.put(f"{ME}/volunteer", headers=user.headers, json=volunteer), 422)
    for id_number in ("33020319900101123", "030203199001011230", "330203199002301233", "330203199001011237"):
        body = {"real_name": "王小", "id_number": id_number, "district": "haishu"}
        assert_chinese(client.put(f"{ME}/volunteer", headers=user.headers, json=body), 422)
    body = {"real_name": "王小", "id_number": "33020319900101123X", "district": "haishu", "skills": ["juggling"]}
    assert_chinese(client.put(f"{ME}/volunteer", headers=user.headers, json=body), 422)
    assert_chinese(client.get(f"{ME}/claims?status=bogus&limit=0", headers=user.headers), 422)
    assert_chinese(client.post(f"{ME}/devices", headers=user.headers, json={"token": "a b", "platform": "nokia"}), 422)


def posting(kind: str, org_id: int | None, **changes) -> dict:
    body = {"kind": kind, "title": "社区服务", "description": "一起来帮忙", "district": "haishu", "org_id": org_id}
    if kind in ("project", "charity"):
        body.update(starts_at="2100-12-01T10:00:00+08:00", ends_at="2100-12-01T12:00:00+08:00", capacity=5)
    if kind in ("service",):
        body.update(capacity=5)
    if kind == "energy":
        body.update(capacity=5, energy_cost=10)
    return {**body, **changes}


def test_posting_validation_messages_are_chinese_for_every_kind(app, client, roles):
    coordinator, org_id = roles["coordinator"].headers, roles["org_id"]
    url = "/api/v1/postings"
    shapes = [
        posting("bogus", org_id),
        {"kind": "wish", "title": " ", "description": "", "district": "atlantis", "tags": ["a", "a"], "x": 1},
        posting("wish", None, capacity=2),
        posting("wish", None, expires_at="2100-01-01T00:00:00+08:00"),
        posting("wish", None, starts_at=f"{YEAR}-12-01T10:00:00"),  # no offset
        posting("wish", None, location={"lat": 200, "lng": 0}),
        posting("wish", None, photo_ids=["x"], capacity="one", claim_ttl_hours=0),
        posting("project", org_id, starts_at=None),
        posting("project", org_id, ends_at="2100-11-30T10:00:00+08:00"),
        posting("project", org_id, beneficiary={"name": "王奶奶"}),
        posting("project", None),
        posting("charity", org_id, claim_ttl_hours=24),
        posting("charity", org_id, energy_cost=5),
        posting("energy", org_id, energy_cost=None),
        posting("energy", org_id, capacity=None),
        posting("service", org_id, starts_at=f"{YEAR}-13-45T99:00:00Z"),
    ]
    seen = set()
    for shape in shapes:
        texts = assert_chinese(client.post(url, headers=coordinator, json=shape), 400, 403, 422)
        seen.update(texts)
    assert len(seen) > 20
    # the kind's name inside a sentence is Chinese too
    assert any("微项目" in text for text in seen), seen
    for query in (
        "cursor=bad",
        "limit=0&near=abc&kind=nope&sort=xx",
        "sort=distance",
        "near=29.87,121.55&radius_km=999",
    ):
        assert_chinese(client.get(f"{url}?{query}", headers=ZH), 400, 422)
    assert_chinese(client.get(f"{url}?title=%00", headers=ZH), 400)
    volunteer = make_volunteer(app)
    assert_chinese(client.get(f"{url}?for_me=true&sort=newest", headers=volunteer.headers), 422)
    homeless = make_volunteer(app, home=None)
    assert_chinese(client.get(f"{url}?for_me=true", headers=homeless.headers), 422)


def test_claim_org_and_record_messages_are_chinese(app, client, roles):
    resident = make_user(app)
    wish = make_posting(app, resident, kind="wish")
    volunteer = roles["volunteer"]
    claims = f"/api/v1/postings/{wish}/claims"
    assert_chinese(client.post(claims, headers=volunteer.headers, json={"message": "x" * 501, "y": 1}), 422)
    assert_chinese(client.post(claims, headers=resident.headers, json={}), 403, 409)
    assert_chinese(
        client.post("/api/v1/orgs", headers=resident.headers, json={"name": "a", "kind": "x", "district": "nowhere"}),
        422,
    )
    org = f"/api/v1/orgs/{roles['org_id']}"
    coordinator = roles["coordinator"].headers
    assert_chinese(client.post(f"{org}/records", headers=coordinator, json={}), 422)
    assert_chinese(
        client.post(
            f"{org}/records", headers=coordinator, json={"user_id": resident.id, "minutes": 30, "activity": "帮忙"}
        ),
        422,
    )
    record = {"volunteer_id": volunteer.id, "minutes": 5000, "activity": "帮忙"}
    assert_chinese(client.post(f"{org}/records", headers=coordinator, json=record), 422)
    assert_chinese(client.get(f"{org}/stats?interval=decade", headers=coordinator), 422)
    assert_chinese(client.get(f"{org}/stats?from=2001-01-01&to=2100-01-01&interval=day", headers=coordinator), 422)
    assert_chinese(client.get(f"{org}/records.csv?from={YEAR}-01-02&to={YEAR}-01-01", headers=coordinator), 422)
    assert_chinese(client.post(f"{org}/members", headers=coordinator, json={"user_id": 0, "role": "boss"}), 422)
    certificate = {"org_id": roles["org_id"], "from": f"{YEAR}-01-01", "to": f"{YEAR - 1}-01-01"}
    assert_chinese(client.post(f"{ME}/certificates", headers=volunteer.headers, json=certificate), 422)


def test_idempotency_messages_are_chinese(app, client, roles):
    url = "/api/v1/postings"
    headers = {**roles["coordinator"].headers}
    assert_chinese(client.post(url, headers={**headers, "Idempotency-Key": "é" * 3}, json={}), 422)
    body = posting("project", roles["org_id"])
    first = client.post(url, headers={**headers, "Idempotency-Key": "k-1"}, json=body)
    assert first.status_code == 201, first.get_json()
    changed = {**body, "title": "另一个"}
    texts = assert_chinese(client.post(url, headers={**headers, "Idempotency-Key": "k-1"}, json=changed), 422)
    assert "该幂等键已用于另一个不同的请求。" in texts


# --- notifications: the recipient's language ------------------------------------------------------


def test_a_push_is_written_in_the_recipients_language_not_the_requests(app, client):
    resident = make_user(app, locale="en")
    wish = make_posting(app, resident, kind="wish", title="修水管")
    volunteer = make_volunteer(app, name="小陈")
    resp = client.post(f"/api/v1/postings/{wish}/claims", headers={**volunteer.headers, **ZH}, json={})
    assert resp.status_code == 201, resp.get_json()
    with app.app_context():
        row = db.session.scalars(sa.select(Notification).where(Notification.user_id == resident.id)).one()
        assert (row.title, row.body) == ("Your wish was claimed", "小陈 claimed “修水管”.")
        db.session.execute(sa.update(User).where(User.id == resident.id).values(locale="zh-CN"))
        db.session.commit()
    # the inbox follows the reader's language of today
    item = client.get("/api/v1/me/notifications", headers=resident.headers).get_json()["items"][0]
    assert (item["title"], item["body"]) == ("心愿被认领啦", "小陈认领了您的「修水管」。")
