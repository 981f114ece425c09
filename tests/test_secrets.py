"""Production refuses unsafe keys; development generates its own, once."""

from __future__ import annotations

import json
import os
import secrets
import stat

import pytest

from app import create_app
from app.certificate_keys import new_signing_key
from app.secrets import KEYS, UnsafeConfiguration, published_in_repo
from tests.conftest import _config_dict, production_config
from tests.helpers import PRODUCTION_SMS, fresh_keys

GOOD = {
    **fresh_keys(),
    "CERTIFICATE_SIGNING_KEY": new_signing_key()[0],
    **PRODUCTION_SMS,
}


# Photos on this machine's disk, as a single-machine install may keep them.
ONE_MACHINE = {"STORAGE_LOCAL_OK": True, "PUBLIC_BASE_URL": "https://zhiyuan.example.cn"}


def production(tmp_path, **keys):
    config = production_config(**{**dict.fromkeys(KEYS), **ONE_MACHINE, **keys})
    config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / 'p.sqlite'}"
    return create_app(config)


def test_production_starts_with_three_good_keys(tmp_path):
    app = production(tmp_path, **GOOD)
    assert app.config["JWT_SECRET_KEY"] == GOOD["JWT_SECRET_KEY"]


@pytest.mark.parametrize(
    ("keys", "says"),
    [
        ({}, ["SECRET_KEY is not set", "JWT_SECRET_KEY is not set", "ID_HASH_KEY is not set"]),
        ({**GOOD, "JWT_SECRET_KEY": None}, ["JWT_SECRET_KEY is not set"]),
        ({**GOOD, "SECRET_KEY": "dev-only-change-me"}, ["SECRET_KEY is a published default value"]),
        ({**GOOD, "ID_HASH_KEY": "short"}, ["ID_HASH_KEY is shorter than 32 bytes"]),
        ({**GOOD, "SECRET_KEY": "change-me-to-a-long-random-string"}, ["SECRET_KEY is a published default"]),
        ({**GOOD, "CERTIFICATE_SIGNING_KEY": None}, ["CERTIFICATE_SIGNING_KEY is not set"]),
        ({**GOOD, "PUBLIC_BASE_URL": None}, ["PUBLIC_BASE_URL is not set"]),
        ({**GOOD, "PUBLIC_BASE_URL": "zhiyuan.example.cn"}, ["PUBLIC_BASE_URL must be an absolute http(s) URL"]),
        ({**GOOD, "METRICS_ADDRESS": "9100"}, ["METRICS_ADDRESS must be host:port"]),
        # what the JWT key of the tests used to be, written in the code
        ({**GOOD, "JWT_SECRET_KEY": "test-jwt-key-that-is-long-enough-for-hs256"}, ["JWT_SECRET_KEY is a published"]),
        ({**GOOD, "SECRET_KEY": "dev-only-change-me "}, ["SECRET_KEY is a published default value"]),
        ({**GOOD, "ID_HASH_KEY": GOOD["ID_HASH_KEY"] + "\n"}, ["ID_HASH_KEY contains whitespace"]),
        ({**GOOD, "SECRET_KEY": "a" * 32}, ["SECRET_KEY has too little variety"]),
        ({**GOOD, "SECRET_KEY": "ab" * 32}, ["SECRET_KEY has too little variety"]),
        (
            {**GOOD, "JWT_SECRET_KEY": GOOD["SECRET_KEY"], "ID_HASH_KEY": GOOD["SECRET_KEY"]},
            ["JWT_SECRET_KEY is the same value as SECRET_KEY", "ID_HASH_KEY is the same value as SECRET_KEY"],
        ),
        # a value that appears in the repository (tests/test_tokens.py's forger)
        (
            {**GOOD, "JWT_SECRET_KEY": "not-the-server-key-but-long-enough-for-hs256"},
            ["JWT_SECRET_KEY is a value published in this repository"],
        ),
        ({**GOOD, "CLOCK_SHIFT_DAYS": 365}, ["CLOCK_SHIFT_DAYS is 365: the clock runs 365 days off the real time"]),
    ],
)
def test_production_refuses_unsafe_keys_and_says_which(tmp_path, keys, says):
    with pytest.raises(UnsafeConfiguration) as refused:
        production(tmp_path, **keys)
    for text in says:
        assert text in str(refused.value)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_a_token_forged_with_the_old_published_default_is_refused(tmp_path):
    from flask_jwt_extended import create_access_token

    forger = create_app({**_config_dict(), "JWT_SECRET_KEY": "dev-only-change-me"})
    with forger.app_context():
        forged = create_access_token(identity="1", additional_claims={"fam": "x"})
    app = production(tmp_path, **GOOD)
    resp = app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {forged}"})
    assert (resp.status_code, resp.get_json()["error"]) == (401, "invalid_token")


def test_development_generates_keys_once_and_keeps_them_private(tmp_path):
    config = {**_config_dict(), "TESTING": False, "APP_ENV": "development", **dict.fromkeys(KEYS)}
    config.update(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'd.sqlite'}", INSTANCE_PATH=str(tmp_path / "inst"))
    first = create_app(config)
    keys = {name: first.config[name] for name in KEYS}
    assert len(set(keys.values())) == 3 and all(len(v) >= 32 for v in keys.values())
    path = tmp_path / "inst" / "dev-keys.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(path.read_text()) == keys
    again = create_app(config)
    assert {name: again.config[name] for name in KEYS} == keys


def test_a_push_lease_shorter_than_the_longest_send_is_refused(tmp_path):
    """Another dispatcher would take over rows whose send is still in flight and
    send them again."""
    with pytest.raises(UnsafeConfiguration) as refused:
        production(tmp_path, **GOOD, PUSH_BACKEND="fcm", FCM_TIMEOUT_SECONDS=60, PUSH_LEASE_SECONDS=300)
    assert "PUSH_LEASE_SECONDS (300) must exceed the longest time a claimed FCM push can take" in str(refused.value)
    # 427.5 s a send at worst, and two batches of 500 may share the 500 threads: 855 s
    production(tmp_path, **GOOD, PUSH_BACKEND="fcm", FCM_TIMEOUT_SECONDS=60, PUSH_LEASE_SECONDS=900)
    # each enabled provider checks its own settings
    with pytest.raises(UnsafeConfiguration) as refused:
        production(tmp_path, **GOOD, PUSH_BACKEND="fcm,jpush", JPUSH_CONCURRENCY=10, PUSH_LEASE_SECONDS=900)
    assert "a claimed JPush push can take (20 s per call" in str(refused.value)
    assert "FCM" not in str(refused.value)


@pytest.mark.parametrize(
    ("storage", "says"),
    [
        ({"STORAGE_LOCAL_OK": False}, "production needs STORAGE_BACKEND=s3"),
        ({"PUBLIC_BASE_URL": None}, "builds photo URLs on PUBLIC_BASE_URL"),
    ],
)
def test_production_keeps_photos_on_one_disk_only_when_told(tmp_path, storage, says):
    with pytest.raises(UnsafeConfiguration) as refused:
        production(tmp_path, **GOOD, **storage)
    assert says in str(refused.value)


def test_production_starts_with_s3(tmp_path):
    """The bucket is not asked at start (flask doctor does): only the settings are checked."""
    s3 = {"STORAGE_BACKEND": "s3", "S3_BUCKET": "yz-photos", "S3_REGION": "oss-cn-hangzhou"}
    app = production(tmp_path, **GOOD, **s3, STORAGE_LOCAL_OK=False)
    assert app.extensions["storage"].bucket == "yz-photos"


@pytest.mark.parametrize(
    ("storage", "says"),
    [
        ({"STORAGE_BACKEND": "ftp"}, "unknown STORAGE_BACKEND 'ftp' (one of local, s3)"),
        ({"STORAGE_BACKEND": "s3"}, "STORAGE_BACKEND=s3 needs S3_BUCKET"),
        ({"STORAGE_BACKEND": "s3", "S3_BUCKET": "b", "S3_ADDRESSING_STYLE": "dns"}, "S3_ADDRESSING_STYLE must be"),
        ({"STORAGE_BACKEND": "s3", "S3_BUCKET": "b", "S3_ACCESS_KEY_ID": "AKIA"}, "set both S3_ACCESS_KEY_ID"),
    ],
)
def test_storage_settings_that_cannot_work_stop_the_app_in_every_mode(storage, says):
    with pytest.raises(ValueError) as refused:
        create_app({**_config_dict(), **storage})
    assert says in str(refused.value)


def test_a_value_anywhere_in_the_checkout_is_published(tmp_path):
    value = secrets.token_urlsafe(48)
    assert not published_in_repo(value, str(tmp_path))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "example.md").write_text(f"JWT_SECRET_KEY={value}\n")
    published_in_repo.cache_clear()
    assert published_in_repo(value, str(tmp_path))
    # an operator's own .env and the generated development keys are not the repository's
    other = secrets.token_urlsafe(48)
    (tmp_path / ".env").write_text(f"JWT_SECRET_KEY={other}\n")
    (tmp_path / "instance").mkdir()
    (tmp_path / "instance" / "dev-keys.json").write_text(other)
    assert not published_in_repo(other, str(tmp_path))


def test_flask_doctor_names_the_same_key_problems(tmp_path):
    from app.doctor import check_keys

    app = production(tmp_path, **GOOD)
    app.config["JWT_SECRET_KEY"] = "a" * 40
    app.config["ID_HASH_KEY"] = app.config["SECRET_KEY"]
    said = check_keys(app)
    assert "JWT_SECRET_KEY has too little variety" in said
    assert "ID_HASH_KEY is the same value as SECRET_KEY" in said


def test_a_token_whose_family_is_another_users_is_refused(app, client):
    """A family is bound to its user: the key alone does not let one user's
    session stand in for another's (an admin's, say)."""
    import jwt as pyjwt

    from tests.factories import make_user

    admin = make_user(app, admin=True)
    user = make_user(app)
    with app.app_context():
        key = app.config["JWT_SECRET_KEY"]
    payload = pyjwt.decode(user.access_token, key, algorithms=["HS256"])
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {user.access_token}"}).status_code == 200
    payload["sub"] = str(admin.id)
    forged = pyjwt.encode(payload, key, algorithm="HS256")
    resp = client.get("/api/v1/me", headers={"Authorization": f"Bearer {forged}"})
    assert resp.status_code == 401
    assert resp.get_json()["error"] in {"invalid_token", "token_revoked"}
    # the same with a refresh token: it neither refreshes nor names the admin
    refresh = pyjwt.decode(user.refresh_token, key, algorithms=["HS256"])
    refresh["sub"] = str(admin.id)
    forged = pyjwt.encode(refresh, key, algorithm="HS256")
    resp = client.post("/api/v1/auth/refresh", headers={"Authorization": f"Bearer {forged}"})
    assert resp.status_code == 401
