"""``flask doctor``: a production install checked before it opens its doors."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask_migrate import upgrade

from app import clock, create_app
from app.certificate_keys import new_signing_key
from app.extensions import db
from app.models import JobRun
from app.scheduler import JOB_NAMES
from app.secrets import UnsafeConfiguration
from tests.conftest import _config_dict, production_config
from tests.helpers import PRODUCTION_SMS, fresh_keys

GOOD_KEYS = {
    **fresh_keys(),
    "CERTIFICATE_SIGNING_KEY": new_signing_key()[0],
    **PRODUCTION_SMS,
}


@pytest.fixture(scope="module")
def migrated(tmp_path_factory) -> Path:
    """An SQLite file upgraded by the migrations from zero, once for this module
    (each upgrade from zero takes seconds); every test gets a copy of its own."""
    path = tmp_path_factory.mktemp("migrated") / "template.sqlite"
    app = create_app({**_config_dict(), "SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}"})
    with app.app_context():
        upgrade()
        db.engine.dispose()
    return path


@pytest.fixture
def production(tmp_path, s3_config, migrated):
    """A production app on a migrated SQLite file whose jobs all ran just now,
    storing photos in a bucket of the fake S3 server."""
    path = tmp_path / "prod.sqlite"
    with closing(sqlite3.connect(migrated)) as source, closing(sqlite3.connect(path)) as copy:
        source.backup(copy)

    def build(**config):
        app = create_app(
            production_config(
                **{
                    **GOOD_KEYS,
                    **s3_config,
                    "SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}",
                    **config,
                }
            )
        )
        with app.app_context():
            upgrade()  # already at the head: checks it, as a deploy does
            for job in JOB_NAMES:
                app.test_cli_runner().invoke(args=["jobs", "run", job])
        return app

    yield build


def doctor(app):
    result = app.test_cli_runner().invoke(args=["doctor"])
    lines = dict(
        line.split(None, 2)[1:3] if len(line.split(None, 2)) == 3 else (line.split()[1], "")
        for line in result.output.strip().splitlines()
    )
    return result.exit_code, result.output, lines


def test_a_healthy_install_passes(production):
    code, output, _ = doctor(production())
    assert code == 0, output
    assert [line.split()[0] for line in output.strip().splitlines()] == ["ok"] * 10


def test_the_sms_settings_are_checked(app, make_app):
    """(Production refuses to start with them: a development install is told.)"""
    configured = make_app(**{**PRODUCTION_SMS, "SMS_SIGN_NAME": None, "SMS_ENDPOINT": "ftp://sms.example.cn"})
    code, output, lines = doctor(configured)
    assert code == 1
    assert "SMS_SIGN_NAME is not set" in lines["sms"] and "SMS_ENDPOINT must be an http(s) URL" in lines["sms"]


def test_production_refuses_a_code_in_the_log(tmp_path):
    with pytest.raises(UnsafeConfiguration, match="SMS_BACKEND=log is for development"):
        create_app(
            production_config(
                **{**GOOD_KEYS, "SMS_BACKEND": "log"}, SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'p.sqlite'}"
            )
        )


def test_a_stale_scheduler_a_missing_push_key_and_redis_fail(production):
    app = production(PUSH_BACKEND="fcm", FIREBASE_CREDENTIALS=None, RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0")
    with app.app_context():
        db.session.execute(sa.update(JobRun).values(last_finished_at=clock.utcnow() - timedelta(hours=1)))
        db.session.execute(sa.delete(JobRun).where(JobRun.job == "purge"))
        db.session.commit()
    code, output, lines = doctor(app)
    assert code == 1
    assert output.count("FAIL") == 3, output
    assert "FIREBASE_CREDENTIALS is not set" in lines["push"]
    assert "Redis" in lines["redis"]
    assert "purge never ran" in lines["scheduler"] and "dispatch_push last ran" in lines["scheduler"]


def test_a_missing_certificate_font_fails_and_names_its_package(production, tmp_path):
    code, output, lines = doctor(production(CERTIFICATE_FONT=str(tmp_path / "missing.ttc")))
    assert code == 1
    assert "fonts-wqy-microhei" in lines["font"] and "CERTIFICATE_FONT" in lines["font"]


def test_an_unmigrated_database_fails(tmp_path, s3_config):
    app = create_app(
        production_config(**GOOD_KEYS, **s3_config, SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'empty.sqlite'}")
    )
    code, output, lines = doctor(app)
    assert code == 1
    assert "flask db upgrade" in lines["migrations"]


def test_development_keys_are_not_a_production_install(app):
    code, output, lines = doctor(app)
    assert code == 1
    assert "development mode" in lines["keys"]


def test_a_bucket_that_is_not_there_fails(production, s3_config):
    code, output, lines = doctor(production(S3_BUCKET="yz-photos-nobody-made"))
    assert code == 1
    assert output.count("FAIL") == 1, output
    assert "bucket 'yz-photos-nobody-made' answers 404" in lines["storage"]


def test_storage_that_does_not_answer_fails(production):
    code, _output, lines = doctor(production(S3_ENDPOINT_URL="http://127.0.0.1:9"))  # nothing listens on port 9
    assert code == 1
    assert "does not answer" in lines["storage"]


def test_photos_on_one_disk_are_a_production_install_only_when_told(production, tmp_path):
    one_machine = {"STORAGE_BACKEND": "local", "STORAGE_LOCAL_PATH": str(tmp_path / "photos")}
    code, output, lines = doctor(
        production(**one_machine, STORAGE_LOCAL_OK=True, PUBLIC_BASE_URL="https://zhiyuan.example.cn")
    )
    assert code == 0, output
    assert lines["storage"] == ""


def test_a_shifted_clock_fails_in_any_mode(app, make_app):
    """CLOCK_SHIFT_DAYS (a test setting) runs the app's clock off the real time:
    doctor says so, whatever the mode."""
    code, output, lines = doctor(make_app(CLOCK_SHIFT_DAYS=365))
    assert code == 1
    assert "CLOCK_SHIFT_DAYS is 365" in lines["clock"], output
    assert lines["clock"].endswith("unset it")
