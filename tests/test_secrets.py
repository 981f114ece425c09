"""Production refuses unsafe keys; development generates its own, once."""

from __future__ import annotations

import json
import os
import stat

import pytest

from app import create_app
from app.secrets import KEYS, UnsafeConfiguration
from app.services.certificates import new_signing_key
from tests.conftest import _config_dict, production_config
from tests.helpers import PRODUCTION_SMS

GOOD = {
    **{name: f"{name.lower()}-" + "k" * 40 for name in KEYS},
    "CERTIFICATE_SIGNING_KEY": new_signing_key()[0],
    **PRODUCTION_SMS,
}


def production(tmp_path, **keys):
    config = production_config(**{**dict.fromkeys(KEYS), **keys})
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
    assert "PUSH_LEASE_SECONDS (300) must exceed the longest send" in str(refused.value)
    production(tmp_path, **GOOD, PUSH_BACKEND="fcm", FCM_TIMEOUT_SECONDS=60, PUSH_LEASE_SECONDS=600)
